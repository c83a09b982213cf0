"""What the SDK marks its containers and images with (labels, nothing secret),
and the per-container record kept on this machine: the worker's token and the
process now using the container (0600 files in a 0700 folder)."""

from __future__ import annotations

import json
import os
import time

from ...local_state import cache_dir, owner_tag, write_private

# Labels on everything the SDK creates. Containers: role=worker; images: role=dependencies
# (one per dependency set; role=function: per-function images of earlier SDK versions,
# listed and removable, never made now). Nothing in them is secret.
LABEL_ROLE = "straightline.role"
LABEL_NAME = "straightline.name"        # the deployment's name
LABEL_HASH = "straightline.hash"        # the image's content hash (containers: their function's)
LABEL_DEPS = "straightline.deps"        # the dependencies image's content hash
LABEL_CONFIG = "straightline.config"    # hash of content + name + resources + keep: adoptable?
LABEL_OWNER = "straightline.owner"      # user@host:pid:start of the process that made it
LABEL_KEEP = "straightline.keep"        # "true": outlives its owner on purpose
LABEL_SDK = "straightline.sdk-version"
ROLES = ("worker", "function", "dependencies")


def record_path(container_id: str) -> str:
    return os.path.join(cache_dir("docker", "workers"), f"{container_id}.json")


def read_record(container_id: str) -> dict | None:
    return read_json(record_path(container_id)) if container_id else None


def write_record(container_id: str, token: str) -> None:
    write_private(record_path(container_id),
                  json.dumps({"token": token, "owner": owner_tag()}).encode())


def forget_record(container_id: str) -> None:
    try:
        os.unlink(record_path(container_id))
    except OSError:
        pass


def _used_path(image: str) -> str:
    import hashlib
    return os.path.join(cache_dir("docker", "used"), hashlib.sha256(image.encode()).hexdigest()[:32])


def note_used(image_id: str, tag: str) -> None:
    """Note that a deployment started on (or reused) this image: ``straightline ls``
    shows the last use, as the engine records none."""
    for key in (image_id, tag):
        if key:
            try:
                write_private(_used_path(key), str(time.time()).encode())
            except OSError:
                pass


def last_used(keys, created: str) -> str:
    """When a deployment last started on or reused the image (its id or a tag),
    else when it was made."""
    times = []
    for key in keys:
        try:
            times.append(os.path.getmtime(_used_path(key)))
        except OSError:
            pass
    if times:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(max(times)))
    return (created or "")[:16].replace("T", " ")


def deployment_path(key: str) -> str:
    return os.path.join(cache_dir("docker", "deployments"), f"{key[:32]}.json")


def read_json(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def owners(labels: dict, record: dict | None) -> list[str]:
    return [o for o in (labels.get(LABEL_OWNER), (record or {}).get("owner")) if o]
