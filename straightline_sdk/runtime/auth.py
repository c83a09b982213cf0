"""Mutual authentication between the SDK and a worker; the key never travels.

Each deployment has a secret key (``DeploySpec.token``) that only the client
and its workers hold. When a connection opens, the client sends a fresh nonce
and the worker answers with its own nonce and a proof that it holds the key:

    client -> worker   POST /auth   X-Straightline-Nonce: cn
    worker -> client   200          X-Straightline-Nonce: sn
                                    X-Straightline-Proof: HMAC(key, "worker" cn sn)

The client checks the proof before it sends any argument on that connection;
a peer that cannot prove the key (an impostor on a dead worker's port) gets
nothing. Every later request on the connection carries the client's proof,
HMAC(key, "client" cn sn), which the worker checks before it reads a body. A
captured request cannot be replayed on another connection: the worker's nonce
is new each time.

A connection that leaves this machine's loopback (a container's bridge address,
a remote engine) also signs every message (``X-Straightline-Sign: 1`` in the
handshake, bound into both proofs so a relay cannot strip it), with a MAC under
a session key bound to both nonces and to a counter:

    X-Straightline-MAC: blake2b(session, direction | counter | method path status | signed prefix)

so a message cannot be replayed or reordered within the connection (the
counter) or changed by someone relaying it (the MAC). The signed prefix of a
frame is its header and pickle stream, the part that is unpickled; large
out-of-band buffers (raw array data, never code) are not hashed, which keeps a
10 MB call from paying ~20 ms of hashing. Neither side unpickles anything whose
MAC did not verify. On loopback, where no other user can relay or alter a
connection between two processes, the MAC is left out: it would cost a warm call
~4 hashes of a few microseconds each, a tenth of its time.

Outside programs use a separate bearer token, derived from the key with a
one-way function, that the worker accepts for ``/json``, ``/health`` and
``/openapi.json`` only: it cannot run ``/invoke`` (which unpickles), and it does
not reveal the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct

NONCE_HEADER = "x-straightline-nonce"
SIGN_HEADER = "x-straightline-sign"
PROOF_HEADER = "x-straightline-proof"
MAC_HEADER = "x-straightline-mac"
AUTH_PATH = "/auth"
SCHEME = "StraightLine"        # Authorization: StraightLine <client proof>

_NONCE_BYTES = 16
_COUNTER = struct.Struct("<Q")
_FRAME_MAGIC = b"SLF1"


def new_nonce() -> bytes:
    return os.urandom(_NONCE_BYTES)


def parse_nonce(text: str) -> bytes | None:
    try:
        nonce = bytes.fromhex(text)
    except ValueError:
        return None
    return nonce if len(nonce) == _NONCE_BYTES else None


def _proof(key: bytes, role: bytes, client_nonce: bytes, server_nonce: bytes, sign: bool) -> bytes:
    return hmac.digest(key, role + (b"+sign\0" if sign else b"\0") + client_nonce + server_nonce,
                       "sha256")


def worker_proof(key: bytes, client_nonce: bytes, server_nonce: bytes, sign: bool = False) -> str:
    return _proof(key, b"straightline-worker", client_nonce, server_nonce, sign).hex()


def client_proof(key: bytes, client_nonce: bytes, server_nonce: bytes, sign: bool = False) -> str:
    return _proof(key, b"straightline-client", client_nonce, server_nonce, sign).hex()


def session_key(key: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return _proof(key, b"straightline-session", client_nonce, server_nonce, True)


def is_loopback(host: str) -> bool:
    return host == "localhost" or host.startswith("127.") or host in ("::1", "[::1]")


def json_token(key: bytes) -> str:
    """The bearer token of the JSON door: derived one way from the key, so it
    opens ``/json`` and tells nothing about the key."""
    digest = hmac.digest(key, b"straightline-json-door", "sha256")
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def signed_length(body) -> int:
    """How much of a body the MAC covers: a frame's header and pickle stream
    (segment 0, what gets unpickled), or the whole of anything else."""
    view = memoryview(body)
    size = view.nbytes
    if size < 16 or view[:4] != _FRAME_MAGIC:
        return size
    n = struct.unpack_from("<I", view, 4)[0]
    header = 8 + 8 * n
    header += -header % 64
    if n < 1 or header > size:
        return size
    first = struct.unpack_from("<Q", view, 8)[0]
    return min(size, header + first)


def signed_length_of_segments(segments, total: int) -> int:
    """signed_length for a frame about to be sent as segments (header first)."""
    if not segments:
        return 0
    head = memoryview(segments[0]).cast("B")
    if head.nbytes >= 16 and head[:4] == _FRAME_MAGIC:
        n = struct.unpack_from("<I", head, 4)[0]
        first = struct.unpack_from("<Q", head, 8)[0]
        return min(total, head.nbytes + first) if n >= 1 else total
    return total


def mac(session: bytes, direction: bytes, counter: int, what: bytes, parts) -> str:
    """The MAC of one message: ``direction`` b"req"/b"rsp", its counter on the
    connection, ``what`` (method and path, or the status), and the signed bytes
    given as buffers."""
    h = hashlib.blake2b(key=session, digest_size=16)
    h.update(direction + _COUNTER.pack(counter) + what + b"\0")
    for part in parts:
        h.update(part)
    return h.hexdigest()


def prefix_parts(segments, limit: int) -> list:
    """The first ``limit`` bytes of a list of buffers, as views (no copy)."""
    parts = []
    for segment in segments:
        if limit <= 0:
            break
        view = memoryview(segment).cast("B")
        if view.nbytes > limit:
            view = view[:limit]
        parts.append(view)
        limit -= view.nbytes
    return parts


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("latin-1", "replace"), b.encode("latin-1", "replace"))
