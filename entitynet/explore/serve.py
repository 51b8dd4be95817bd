"""`entitynet explore --serve`: the site over HTTP on the loopback interface (the site also opens
from disk; a server helps where a browser is on another machine behind an SSH tunnel)."""

from __future__ import annotations

import functools
import http.server
import threading


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line per request would bury the command's own output
        pass


def server(site: str, port: int = 0, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """A server of `site` on `host`:`port` (0: any free port), not yet serving."""
    handler = functools.partial(_Quiet, directory=site)
    return http.server.ThreadingHTTPServer((host, port), handler)


def serve_in_thread(site: str, port: int = 0) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve `site` from a daemon thread; returns the server (call shutdown()) and its base URL."""
    srv = server(site, port)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"
