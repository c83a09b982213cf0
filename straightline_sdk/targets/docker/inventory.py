"""What ``straightline ls`` and ``gc`` see on a Docker engine: the SDK's
containers and images, and which are orphans.

Images are one per dependency set (role ``dependencies``, shared by every
function with that set); ``used by`` names the deployments whose containers
run one. Images of role ``function`` were made by earlier SDK versions (one
per function version): no deployment of this version starts one, so they are
unused once no container runs them, and ``gc --unused`` removes them."""

from __future__ import annotations

from ...errors import TargetUnavailable
from ...local_state import owner_alive
from .engine import KIND, client as _client, docker_sdk as _docker_sdk
from .options import DockerOptions
from .records import (LABEL_DEPS, LABEL_HASH, LABEL_KEEP, LABEL_NAME, LABEL_OWNER, LABEL_ROLE,
                      forget_record as _forget_record, last_used, owners as _owners,
                      read_record as _read_record)


def inventory(options) -> list[dict]:
    """SDK-labelled containers and images on the engine. Orphan: no live
    process owns it (a container: neither its starter nor its current user
    runs, and it is not keep=True; an image: no owned container or image
    needs it, and the process that built it is gone). Owners on other
    machines cannot be checked: their things never count as orphans."""
    docker = _client(DockerOptions.parse(options), timeout=60)
    items: list[dict] = []
    needed_images: set[str] = set()
    needed_deps: set[str] = set()
    users: dict[str, set[str]] = {}     # dependencies hash -> deployments whose containers use it
    for c in docker.containers.list(all=True, filters={"label": LABEL_ROLE}):
        labels = c.labels
        if labels.get(LABEL_ROLE) != "worker":
            continue
        record = _read_record(c.id)
        owners = _owners(labels, record)
        keep = labels.get(LABEL_KEEP) == "true"
        orphan = not keep and all(owner_alive(o) is False for o in owners)
        if not orphan:
            needed_images.add(c.attrs.get("Image", ""))
            needed_deps.add(labels.get(LABEL_DEPS, ""))
            users.setdefault(labels.get(LABEL_DEPS, ""), set()).add(labels.get(LABEL_NAME, ""))
        items.append({"kind": KIND, "type": "container", "id": c.short_id,
                      "name": labels.get(LABEL_NAME, ""), "owner": owners[-1] if owners else "",
                      "orphan": orphan, "unused": orphan, "keep": keep, "state": c.status,
                      "deployment": labels.get(LABEL_NAME, ""),
                      "last_used": last_used([c.attrs.get("Image", "")], c.attrs.get("Created", "")),
                      "hash": labels.get(LABEL_HASH, "")[:12], "remove_order": 0})
    used_deps = set(needed_deps)   # gc --unused: what a container runs, not merely its builder's
    images = [i for i in docker.images.list(filters={"label": LABEL_ROLE})
              if i.labels.get(LABEL_ROLE) in ("function", "dependencies")]
    for image in sorted(images, key=lambda i: i.labels.get(LABEL_ROLE) != "function"):
        labels = image.labels
        owner = labels.get(LABEL_OWNER, "")
        role = labels.get(LABEL_ROLE)
        if role == "function":
            needed = used = image.id in needed_images
        else:
            needed = labels.get(LABEL_HASH) in needed_deps
            used = labels.get(LABEL_HASH) in used_deps
        orphan = not needed and owner_alive(owner) is False
        if role == "function" and not orphan:
            needed_deps.add(labels.get(LABEL_DEPS, ""))
        if role == "function" and used:   # an old version's container still runs on it
            used_deps.add(labels.get(LABEL_DEPS, ""))
        used_by = sorted(n for n in users.get(labels.get(LABEL_HASH, ""), ()) if n) \
            if role == "dependencies" else []
        items.append({"kind": KIND, "type": f"{role} image" if role == "dependencies"
                      else "function image (old SDK)", "id": image.short_id.split(":")[-1],
                      "name": ", ".join(image.tags) or labels.get(LABEL_NAME, ""),
                      "used_by": ", ".join(used_by),
                      "owner": owner, "orphan": orphan, "keep": False, "state": "",
                      # no live or kept deployment's container runs it (gc --unused)
                      "unused": not used, "deployment": labels.get(LABEL_NAME, ""),
                      "size": image.attrs.get("Size"),
                      "last_used": last_used([image.id, *image.tags], image.attrs.get("Created", "")),
                      "hash": labels.get(LABEL_HASH, "")[:12], "tags": list(image.tags),
                      "remove_order": 1 if role == "function" else 2})
    return items


def remove(item: dict, options) -> None:
    docker = _client(DockerOptions.parse(options), timeout=60)
    sdk = _docker_sdk()
    try:
        if item["type"] == "container":
            container = docker.containers.get(item["id"])
            container.remove(force=True)
            _forget_record(container.id)
        else:
            for tag in item.get("tags") or [item["id"]]:
                docker.images.remove(tag)
    except sdk.errors.NotFound:
        pass
    except sdk.errors.APIError as exc:
        raise TargetUnavailable(f"the engine refused to remove {item['type']} {item['id']}: "
                                f"{exc.explanation or exc}", target=KIND) from None
