"""A real local HTTP receiver for webhook tests: records every request, answers as told."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from crm.relay import verify


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


class Receiver:
    """``behaviour(n, event) -> (status, delay_seconds)``; n counts requests from 1."""

    def __init__(self, secret: str | None = None,
                 behaviour: Callable[[int, dict[str, Any]], tuple[int, float]] | None = None) -> None:
        self.secret = secret
        self.behaviour = behaviour or (lambda n, e: (200, 0.0))
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver._lock:
                    n = len(receiver.requests) + 1
                    status, delay = receiver.behaviour(n, json.loads(body))
                    record = Received(dict(self.headers.items()), body, status, time.time())
                    receiver.requests.append(record)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 512  # the default 5 drops SYNs under parallel deliveries (1 s retransmits)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def accepted_ids(self) -> set[str]:
        return {r.headers["X-Event-Id"] for r in self.accepted()}

    def signatures_valid(self) -> bool:
        assert self.secret
        return all(
            verify(self.secret, r.headers["X-Signature-Timestamp"], r.body, r.headers["X-Signature"])
            for r in self.requests
        )
