"""The Docker target kind (tier: container).

- target.py     DockerTarget: build (or find) the images, start or adopt the container, calls
- engine.py     finding and talking to the engine, what it offers (probe, capacity)
- records.py    the labels on what the SDK makes, the per-container token record
- inventory.py  what `straightline ls` / `gc` see, and removing orphans
- options.py    DockerOptions: the options it takes, typed, with their defaults

The image build context itself is packaging/docker_context.py (shared with the
benchmarks); the far side is the runtime's HTTP worker (runtime/worker.py).
"""

from .options import DockerOptions, Options
from .target import (KIND, LABEL_CONFIG, LABEL_DEPS, LABEL_HASH, LABEL_KEEP, LABEL_NAME, LABEL_OWNER,
                     LABEL_ROLE, LABEL_SDK, DockerTarget, engine_address, remote_host)

__all__ = ["KIND", "DockerOptions", "DockerTarget", "Options", "engine_address", "remote_host",
           "LABEL_CONFIG", "LABEL_DEPS", "LABEL_HASH", "LABEL_KEEP", "LABEL_NAME", "LABEL_OWNER",
           "LABEL_ROLE", "LABEL_SDK"]
