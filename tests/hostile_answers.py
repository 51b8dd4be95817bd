"""Servers that answer too slowly or too much, shared by the tests of every blocking HTTP client
(SPARQL, search APIs, LLM). The first path segment picks the behaviour, for GET and POST alike:

- `/trickle-body/...`: headers at once, then the body a byte every half second (25 s in all);
- `/trickle-headers/...`: the status line, then a header line every 0.3 s (30 s in all);
- `/endless/...`: a chunked body of 256 MiB of whitespace after a JSON start;
- `/announced/...`: `Content-Length` of 300 MiB, a few bytes, then nothing.

`sent` counts the body bytes `/endless` managed to write; `done` is set when an `/endless` handler
returns (after the client hung up). One server serves a whole test module (`hostile_answers`:
starting and stopping one costs half a second); `reset` clears the counters between tests."""

from __future__ import annotations

import contextlib
import threading
import time

from loopback import LoopbackHandler, LoopbackServer

ANSWER = b'{"head":{"vars":["e"]},"results":{"bindings":[]}}'


class HostileAnswers(LoopbackHandler):
    sent: list = []
    done: threading.Event = threading.Event()

    @classmethod
    def fresh(cls) -> type[HostileAnswers]:
        """A subclass with its own counters, for one server."""
        return type("Hostile", (cls,), {"sent": [], "done": threading.Event()})

    def do_GET(self):
        self.answer()

    def do_POST(self):
        self.read_body()
        self.answer()

    def answer(self):
        kind = self.url_path.strip("/").split("/")[0].replace("-", "_")
        try:
            getattr(self, "answer_" + kind)()
        except OSError:
            pass  # the client hung up: what it is meant to do
        finally:
            if kind == "endless":
                type(self).done.set()

    def answer_trickle_body(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(ANSWER)))
        self.end_headers()
        for b in ANSWER:
            self.wfile.write(bytes([b]))
            self.wfile.flush()
            time.sleep(0.5)

    def answer_trickle_headers(self):
        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(100):
            self.wfile.write(f"X-Slow-{i}: a\r\n".encode())
            self.wfile.flush()
            time.sleep(0.3)

    def answer_endless(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        start, chunk = ANSWER[:-3], b" " * (64 << 10)
        self.wfile.write(b"%x\r\n%s\r\n" % (len(start), start))
        for _ in range(4096):
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            type(self).sent.append(len(chunk))
        self.wfile.write(b"0\r\n\r\n")

    def answer_announced(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(300 << 20))
        self.end_headers()
        self.wfile.write(ANSWER[:10])
        self.wfile.flush()
        time.sleep(2)


@contextlib.contextmanager
def hostile_answers():
    """A HostileAnswers server on 127.0.0.1; `.handler` has its counters."""
    handler = HostileAnswers.fresh()
    with LoopbackServer(handler) as server:
        server.handler = handler  # type: ignore[attr-defined]
        yield server


def reset(server) -> None:
    server.handler.sent.clear()
    server.handler.done.clear()
