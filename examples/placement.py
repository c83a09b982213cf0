"""The StraightLine story: one deployment, a stream of requests whose rate and
size change, and where each phase's requests went and why.

    python examples/placement.py

Runs with the local target alone; with a Docker engine the large requests go to
a container (the first one builds and starts it). Lambda and Ray are not allowed
here, so the frequent small requests, which the paper sends to serverless, stay
on the local worker and the reasons say so.
"""

import os
import time
import zlib
from collections import Counter

import straightline_sdk as straightline

KB = 1024
MB = 1024 * KB


@straightline.deploy(sample=(b"x" * KB,), targets=["local", "docker"])
def checksum(payload: bytes) -> dict:
    return {"bytes": len(payload), "crc32": zlib.crc32(payload)}


def phase(name: str, payloads, gap_s: float = 0.0) -> Counter:
    """Send the payloads one by one, ``gap_s`` apart; print where they went and why."""
    started = time.time()
    for payload in payloads:
        assert checksum(payload)["bytes"] == len(payload)
        if gap_s:
            time.sleep(gap_s)  # the traffic's pace, not a wait for something
    records = [r for r in checksum.calls if r.time >= started]
    went = Counter(f"{r.target} ({r.branch})" for r in records)
    print(f"{name}: {dict(went)}")
    print(f"  last decision: {checksum.placement}")
    return Counter(r.target for r in records)


def main():
    print(checksum.summary(), end="\n\n")
    for kind, info in checksum.target_overview().items():
        print(f"{kind}: {info['state']} {info['reason']}")
    docker_usable = checksum.target_overview()["docker"]["state"] != "down"
    print()

    slow = phase("slow, small (5 req/s, 1 KB)", [os.urandom(KB) for _ in range(8)], gap_s=0.2)
    fast = phase("fast, small (back to back, 1 KB)", [os.urandom(KB) for _ in range(300)])
    large = phase("large (6 MB each)", [os.urandom(6 * MB) for _ in range(3)])

    assert set(slow) == {"local"} and set(fast) == {"local"}
    assert set(large) == ({"docker"} if docker_usable else {"local"})
    print()
    print(checksum.summary())
    checksum.undeploy()


if __name__ == "__main__":
    main()
