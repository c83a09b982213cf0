"""Frequent small requests on AWS Lambda (the story of notebooks/lambda.ipynb as
a script).

    python examples/aws_lambda.py                      # your AWS account (credentials, region)
    AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_ACCESS_KEY_ID=testing \\
    AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 python examples/aws_lambda.py
                                                       # a local moto server instead

With real AWS it creates two functions in your account and deletes them at the end.
"""

import os

import straightline_sdk as straightline


@straightline.deploy(target="lambda", sample=(3,))
def fizzbuzz(n: int) -> str:
    return "fizz" * (n % 3 == 0) + "buzz" * (n % 5 == 0) or str(n)


# Declared frequent (50 requests/s > F = 20) and small: the policy chooses serverless.
@straightline.deploy(targets=["local", "lambda"], rate=50, sample=(7,), name="fizzbuzz_placed")
def fizzbuzz_placed(n: int) -> str:
    return "fizz" * (n % 3 == 0) + "buzz" * (n % 5 == 0) or str(n)


def main():
    where = os.environ.get("AWS_ENDPOINT_URL") or "AWS"
    print(f"AWS API: {where}")
    print("fizzbuzz(15) =", fizzbuzz(15))
    print("map:", fizzbuzz.map(range(1, 16), chunksize=5))
    print(fizzbuzz_placed.placement)
    print("fizzbuzz_placed(5) =", fizzbuzz_placed(5), "on", fizzbuzz_placed.calls[-1].target)
    fizzbuzz.undeploy()
    fizzbuzz_placed.undeploy()


if __name__ == "__main__":
    main()
