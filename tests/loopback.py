"""The one loopback HTTP server of the tests: a test writes only what its server answers (a
`LoopbackHandler` subclass with `do_GET` / `do_POST`); starting, serving on a daemon thread,
quiet logs, dropped connections and shutdown are here. The `loopback` fixture (conftest.py) starts
servers and closes them after the test."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, no request log, and the replies tests write over and over."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send(
        self, status: int, body: bytes = b"", ctype: str = "image/jpeg", headers=(), length: int | None = None
    ):
        """A whole reply; `length` announces another Content-Length than the body's (truncation tests)."""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in headers.items() if isinstance(headers, dict) else headers:
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def send_json(self, status: int, doc, headers=()):
        """`doc` as JSON (bytes and str are sent as they are: malformed answers)."""
        body = doc if isinstance(doc, bytes) else (doc if isinstance(doc, str) else json.dumps(doc)).encode()
        self.send(status, body, "application/json", headers)

    def read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    @property
    def url_path(self) -> str:
        return urllib.parse.urlsplit(self.path).path

    @property
    def params(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        pass  # clients hanging up on purpose (size caps, deadlines, resets) are not errors here


class LoopbackServer:
    """`handler` served on `host`:`port` (0: a free port) from a daemon thread until `close()`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1", port: int = 0):
        self.server = _Server((host, port), handler)
        self.host, self.port = host, self.server.server_address[1]
        self.base = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wait_until_serving(url: str, proc, what: str, log=lambda: "", seconds: float = 60.0) -> None:
    """Poll `url` until it answers 200, while the server process `proc` lives; a RuntimeError with
    the start of its log (`log()`) when it exits or does not answer within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: {log()[:500]}")
        time.sleep(0.05)
