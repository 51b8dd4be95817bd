"""`entitynet explore --serve`: the site over HTTP on the loopback interface (the site also opens
from disk; a server helps where a browser is on another machine behind an SSH tunnel).

A server on 127.0.0.1 is still reachable by any web page the user's browser opens: a page on
another site can point a name it controls at 127.0.0.1 (DNS rebinding) and read our answers as its
own. So the server answers only requests whose Host header names the loopback address it listens
on (`127.0.0.1`, `localhost` or `[::1]`, with its port), serves only regular files whose real
path (symbolic links resolved) lies inside the site, lists no directories, and answers every
malformed request (a NUL byte, a path that does not decode, `..` out of the site) with a status,
never with a traceback.
"""

from __future__ import annotations

import http.server
import logging
import os
import posixpath
import sys
import threading
import urllib.parse

log = logging.getLogger("entitynet.explore")

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Static files of one site, under the rules in the module docstring."""

    site = ""  # the real path of the site (set per server by `server`)

    def log_message(self, *args):  # one line per request would bury the command's own output
        pass

    def end_headers(self):
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        super().end_headers()

    def _host_allowed(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        port = self.server.server_address[1]  # type: ignore[index]  # an AF_INET (host, port) pair
        allowed = {f"{name}:{port}" for name in LOOPBACK_NAMES}
        if port == 80:
            allowed.update(LOOPBACK_NAMES)
        return host in allowed

    def send_head(self):
        if not self._host_allowed():
            self.send_error(
                421, "Misdirected Request", "this server answers only for 127.0.0.1 and localhost"
            )
            return None
        path = self.file_path(self.path)
        if path is None:
            self.send_error(404, "Not Found")
            return None
        try:
            f = open(path, "rb")  # the base class copies it to the socket and closes it
        except OSError:
            self.send_error(404, "Not Found")
            return None
        try:
            size = os.fstat(f.fileno()).st_size
            self.send_response(200)
            self.send_header("Content-Type", self.guess_type(path))
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
        except BaseException:
            f.close()
            raise
        return f

    def file_path(self, url_path: str) -> str | None:
        """The real path of the regular file inside the site that `url_path` names, or None: a
        directory gives its index.html; anything else (outside the site by `..` or a symbolic
        link, a NUL byte, undecodable, not a regular file) gives None."""
        path = urllib.parse.urlsplit(url_path).path
        try:
            path = urllib.parse.unquote(path, errors="strict")
        except UnicodeDecodeError:
            return None
        if "\x00" in path or "\\" in path:
            return None
        parts = [p for p in posixpath.normpath(path).split("/") if p not in ("", ".")]
        if ".." in parts:
            return None
        candidate = os.path.join(self.site, *parts)
        try:
            real = os.path.realpath(candidate)
            if os.path.isdir(real):
                real = os.path.realpath(os.path.join(real, "index.html"))
            inside = os.path.commonpath([real, self.site]) == self.site
            if not inside or not os.path.isfile(real):
                return None
        except (OSError, ValueError):
            return None
        return real

    def list_directory(self, path):  # never reached (send_head serves files only); no listings
        self.send_error(404, "Not Found")
        return None


class SiteServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # a client that hangs up mid-answer is not our error; anything else is one line, not a traceback
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | TimeoutError):
            log.warning(
                "explore --serve: a request from %s failed (%s: %s)",
                client_address[0],
                type(error).__name__,
                error,
            )


def server(site: str, port: int = 0, host: str = "127.0.0.1") -> SiteServer:
    """A server of `site` on `host`:`port` (0: any free port), not yet serving."""
    handler = type("Handler", (SiteHandler,), {"site": os.path.realpath(site)})
    return SiteServer((host, port), handler)


def serve_in_thread(site: str, port: int = 0) -> tuple[SiteServer, str]:
    """Serve `site` from a daemon thread; returns the server (call shutdown()) and its base URL."""
    srv = server(site, port)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"
