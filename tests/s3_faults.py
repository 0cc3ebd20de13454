"""A fault-injecting HTTP proxy in front of an S3 server (moto), standard library only.

Each request, drawn from one seeded generator, is either passed through or meets one fault:

    throttle   503 SlowDown (S3's XML error body), the request never reaches the server
    reset      the connection is reset (RST) before the request is forwarded
    short      the response is forwarded with its full Content-Length but only part of its body,
               then the connection is closed (only responses with a body of 2+ bytes)
    delay      the request waits `delay_s` before it is forwarded

    deny       a write (PUT/POST) whose path matches the regex `deny` gets 403 AccessDenied, always

`FaultProxy(upstream, throttle=0.25, reset=0.05, short=0.03, seed=0)` starts on a free
127.0.0.1 port; `url` is its endpoint; `injected` counts the faults per kind; `close()` stops it.
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)
SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class FaultProxy:
    """See the module docstring. Rates are probabilities per request, drawn in this order."""

    def __init__(
        self,
        upstream: str,
        *,
        throttle: float = 0.0,
        reset: float = 0.0,
        short: float = 0.0,
        delay: float = 0.0,
        delay_s: float = 0.2,
        seed: int = 0,
    ):
        self.upstream = urlsplit(upstream).netloc
        self.rates = {"throttle": throttle, "reset": reset, "short": short, "delay": delay}
        self.delay_s = delay_s
        self.deny: str | None = None  # a regex of paths no write may reach
        self.injected: Counter = Counter()
        self.requests = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def set_rates(self, **rates: float) -> None:
        """Change some rates (e.g. all to 0 while a test sets up)."""
        with self._lock:
            self.rates.update(rates)

    def _draw(self) -> str | None:
        with self._lock:
            self.requests += 1
            roll = self._random.random()
            for kind, rate in self.rates.items():
                if roll < rate:
                    self.injected[kind] += 1
                    return kind
                roll -= rate
        return None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reset(self) -> None:
                # SO_LINGER with a zero timeout: close() sends an RST instead of a FIN.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True

            def _error(self, status: int, reason: str, body: bytes) -> None:
                self.send_response(status, reason)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _relay(self) -> None:
                body = self._body()
                if (
                    proxy.deny
                    and self.command in ("PUT", "POST")
                    and re.search(proxy.deny, self.path)
                ):
                    self._error(403, "Forbidden", ACCESS_DENIED)
                    return
                fault = proxy._draw()
                if fault == "reset":
                    self._reset()
                    return
                if fault == "throttle":
                    self._error(503, "Slow Down", SLOW_DOWN)
                    return
                if fault == "delay":
                    time.sleep(proxy.delay_s)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Content-Length"] = str(len(body))
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    self.send_response(response.status, response.reason)
                    for key, value in response.getheaders():
                        if key.lower() not in HOP_BY_HOP | {"content-length", "date", "server"}:
                            self.send_header(key, value)
                    declared = (
                        response.getheader("Content-Length") if self.command == "HEAD" else None
                    )
                    self.send_header("Content-Length", declared or str(len(payload)))
                    if fault == "short" and self.command != "HEAD" and len(payload) >= 2:
                        self.end_headers()
                        self.wfile.write(payload[: len(payload) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    if fault == "short":  # nothing to cut: it passes
                        with proxy._lock:
                            proxy.injected["short"] -= 1
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

        return Handler
