"""``h.endpoint``: the door for programs that are not this SDK.

A deployed function is also a small REST service (the paper's REST server):
``POST /json`` with ``{"args": [...], "kwargs": {...}}``. Outside clients get a
bearer token of their own that opens ``/json``, ``/health`` and
``/openapi.json`` and nothing else; it is derived one way from the deployment's
key (runtime/auth.py), which never leaves this process and its workers.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from .errors import TargetUnavailable
from .runtime import auth

#: the kinds whose workers serve the JSON door, most reachable first
DOOR_KINDS = ("docker", "local")


@dataclass(frozen=True)
class Endpoint:
    """Where and how an outside program calls the function.

    ``url`` is the JSON endpoint, ``token`` its bearer token (a secret: it runs
    the function), ``curl`` a ready command line with the token in it; the repr
    shows neither."""

    url: str
    target: str
    token: str = field(repr=False)

    @property
    def base_url(self) -> str:
        return self.url.rsplit("/", 1)[0]

    @property
    def openapi_url(self) -> str:
        return f"{self.base_url}/openapi.json"

    @property
    def health_url(self) -> str:
        return f"{self.base_url}/health"

    def curl(self, *args, **kwargs) -> str:
        """A curl command that calls the function with these (JSON) arguments."""
        import json
        body = json.dumps({"args": list(args), "kwargs": kwargs} if kwargs else {"args": list(args)})
        return (f"curl -s -H {shlex.quote('Authorization: Bearer ' + self.token)} "
                f"-H 'Content-Type: application/json' -d {shlex.quote(body)} {self.url}")

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def __str__(self):
        return (f"{self.url} (bearer token: h.endpoint.token; OpenAPI: {self.openapi_url}; "
                f"a ready command: h.endpoint.curl(...))")


def endpoint_of(dep) -> Endpoint:
    """The JSON door of a deployment's worker: one already deployed (Docker first:
    its published port), else the local worker, deployed now."""
    targets = dep.deployed_targets
    for kind in DOOR_KINDS:
        target = targets.get(kind)
        if target is not None and getattr(target, "door_address", None):
            return _endpoint(dep, kind, target.door_address())
    for kind in reversed(DOOR_KINDS):
        if kind in dep.allowed:
            target = dep.router.ensure_deployed(kind)
            return _endpoint(dep, kind, target.door_address())
    raise TargetUnavailable(
        f"{dep.name!r} has no HTTP worker to serve JSON calls (its targets are "
        f"{list(dep.allowed)})", hint="allow the local or docker target: deploy(..., targets=[..., 'local'])")


def _endpoint(dep, kind: str, address: tuple[str, int]) -> Endpoint:
    host, port = address
    if ":" in host:
        host = f"[{host}]"
    return Endpoint(f"http://{host}:{port}/json", kind, auth.json_token(dep.spec.token.encode()))
