"""A TCP proxy that delays every byte by a fixed one-way latency, to benchmark over a
"network" on one machine (this VM has no `tc netem`). Bytes pass through untouched, so TLS
is verified end to end as usual.

Each direction has a reader that stamps each chunk with its arrival time and a sender that
forwards it at arrival + delay: a burst of chunks is delayed once, not once per chunk.
"""

from __future__ import annotations

import collections
import socket
import threading
import time


class LatencyProxy:
    def __init__(self, target_host: str, target_port: int, one_way_seconds: float):
        self.target = (target_host, target_port)
        self.delay = one_way_seconds
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._closed = False

    def __enter__(self) -> LatencyProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed = True
        self.listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pipe(client, server)
            self._pipe(server, client)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        queue: collections.deque[tuple[float, bytes]] = collections.deque()
        ready = threading.Condition()

        def read() -> None:
            while True:
                try:
                    chunk = source.recv(65536)
                except OSError:
                    chunk = b""
                with ready:
                    queue.append((time.perf_counter() + self.delay, chunk))
                    ready.notify()
                if not chunk:
                    return

        def send() -> None:
            while True:
                with ready:
                    while not queue:
                        ready.wait()
                    due, chunk = queue.popleft()
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                try:
                    if not chunk:
                        sink.shutdown(socket.SHUT_WR)
                        return
                    sink.sendall(chunk)
                except OSError:
                    return

        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=send, daemon=True).start()
