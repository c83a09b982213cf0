"""Quickstart: deploy a function on the local target, call it, and see where it
ran and why. Needs no Docker and no AWS.

    python examples/quickstart.py
"""

import straightline_sdk as straightline


# The sample is one representative call: it runs here once to profile the function
# (time, memory, request and result sizes) before anything is deployed.
@straightline.deploy(sample=([1.0, 2.0, 3.0],), targets=["local"])
def mean_and_spread(values):
    n = len(values)
    mean = sum(values) / n
    spread = (sum((v - mean) ** 2 for v in values) / n) ** 0.5
    return {"mean": mean, "spread": spread}


def main():
    result = mean_and_spread([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])
    print("result:", result)

    placement = mean_and_spread.placement
    print(f"placement: {placement.target}, because")
    for reason in placement.reasons:
        print(f"  - {reason}")

    batches = [[float(i), float(i + 1), float(i + 2)] for i in range(100)]
    results = mean_and_spread.map(batches)
    print(f"map: {len(results)} results, the first {results[0]}")

    print()
    print(mean_and_spread.summary())
    mean_and_spread.undeploy()


if __name__ == "__main__":
    main()
