"""An impostor: a real process that binds a given port (a dead worker's) and
answers like a worker would if it did not know the key. It records every byte
it receives to a file and answers each request with HTTP 200, a made-up
handshake and a frame whose unpickling would create a marker file: if the
client ever sends it arguments or unpickles its answer, the files show it.

    python tests/support/impostor.py HOST PORT RECORD_PATH MARKER_PATH
Prints "LISTENING" once bound.
"""

from __future__ import annotations

import os
import pickle
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from straightline_sdk.runtime import wire  # noqa: E402


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        # what runs in whoever unpickles the answer
        return (open, (self.marker, "w"))


def main() -> None:
    host, port, record, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    evil = pickle.dumps([(True, _Payload(marker))], protocol=5)
    frame = wire.MAGIC + (1).to_bytes(4, "little") + len(evil).to_bytes(8, "little")
    frame += bytes(-len(frame) % wire.ALIGN) + evil  # a frame whose segment 0 is the evil pickle
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(64)
    print("LISTENING", flush=True)
    lock = threading.Lock()

    def serve(conn):
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                with lock, open(record, "ab") as f:
                    f.write(data)
                answer = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-straightline-frame\r\n"
                          b"x-straightline-nonce: " + os.urandom(16).hex().encode() + b"\r\n"
                          b"x-straightline-proof: " + os.urandom(32).hex().encode() + b"\r\n"
                          b"x-straightline-mac: " + os.urandom(16).hex().encode() + b"\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(frame)) + frame
                conn.sendall(answer)

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
