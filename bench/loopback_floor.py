"""The raw loopback floor's server, run by bench/overhead.py as its own process.

A stdlib ThreadingHTTPServer with TCP_NODELAY: POST / with an ASCII integer
answers the integer + 1; with a larger body (float64 values) answers them + 1.
No auth, no framing, no pickling: the cheapest HTTP round trip Python offers,
against which the SDK's local target is compared. Prints "PORT <n>" when ready.
"""

from __future__ import annotations

import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Without it, headers and body in two writes stall ~40 ms (Nagle vs delayed ACK).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if len(body) <= 32:
            reply = str(int(body) + 1).encode()
        else:
            import numpy
            reply = (numpy.frombuffer(body, dtype=numpy.float64) + 1).tobytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
