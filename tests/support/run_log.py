"""Counting what ran inside containers: a TCP listener on the Docker bridge's
gateway (a container reaches it, and so does a local worker). Each run of a
function under test sends a line ``i`` there; a test or a benchmark reads back
which items ran, and how often. Used by tests/test_docker_faults.py and
bench/faults.py."""

from __future__ import annotations

import socket
import threading
import time


class RunLog:
    def __init__(self, engine=None):
        if engine is None:
            import docker
            engine = docker.from_env()
        gateway = engine.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
        self.server = socket.create_server((gateway, 0))
        self.address = self.server.getsockname()
        self._lines: list[tuple[int, float]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        with conn, conn.makefile("rb") as f:
            for line in f:
                with self._lock:
                    self._lines.append((int(line), time.time()))

    def runs(self) -> list[tuple[int, float]]:
        """(item, arrival time) of every run so far."""
        with self._lock:
            return list(self._lines)

    def items(self) -> list[int]:
        return [i for i, _ in self.runs()]

    def close(self):
        self.server.close()
