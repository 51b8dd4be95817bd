"""`entitynet explore --serve` against hostile requests: other Host headers (DNS rebinding), paths
out of the site (`..`, encoded, symbolic links), NUL bytes and undecodable paths, directories. Every
request gets a status; nothing outside the site is ever sent, and no traceback is printed."""

from __future__ import annotations

import http.client
import os
import socket

import pytest
from hostile import tried

from entitynet.explore.serve import serve_in_thread

SECRET = b"secret outside the site"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    (root / "outside.txt").write_bytes(SECRET)
    (root / "outside").mkdir()
    (root / "outside" / "index.html").write_bytes(SECRET)
    s = root / "site"
    (s / "data").mkdir(parents=True)
    (s / "index.html").write_text("<h1>EntityNet explorer</h1>")
    (s / "data" / "index.js").write_text("EXPLORER.data('index', {})")
    (s / "data" / "nested").mkdir()  # a directory without index.html: no listing
    (s / "link-out.txt").symlink_to(root / "outside.txt")
    (s / "dir-out").symlink_to(root / "outside")
    (s / "link-in.js").symlink_to(s / "data" / "index.js")  # a link that stays inside is fine
    os.mkfifo(s / "fifo")  # not a regular file: opening it would block the server
    srv, base = serve_in_thread(str(s))
    yield srv, srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _get(port, path, host=None, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not False:
            conn.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _raw(port, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def test_the_site_is_served_to_loopback_host_names(site):
    srv, port = site
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        tried("explore serve")
        status, body = _get(port, "/", host)
        assert (status, body) == (200, b"<h1>EntityNet explorer</h1>"), host
    assert _get(port, "/data/index.js")[0] == 200
    assert _get(port, "/link-in.js") == (200, b"EXPLORER.data('index', {})")
    assert _get(port, "/index.html", method="HEAD") == (200, b"")


HOSTS = [
    "evil.example",
    "evil.example:{port}",
    "127.0.0.1",
    "127.0.0.1:1",
    "127.0.0.1.evil.example:{port}",
    "",
    False,
]


@pytest.mark.parametrize("host", HOSTS, ids=[str(h) or "empty" for h in HOSTS])
def test_other_host_headers_are_refused(site, host):
    tried("explore serve")
    srv, port = site
    status, body = _get(port, "/index.html", host.format(port=port) if isinstance(host, str) else host)
    assert status == 421 and b"explorer" not in body


PATHS = [
    "/../outside.txt",
    "/%2e%2e/outside.txt",
    "/data/%2e%2e/%2e%2e/outside.txt",
    "/..%2foutside.txt",
    "/link-out.txt",
    "/dir-out/",
    "/dir-out/index.html",
    "/index.html%00.js",
    "/%00",
    "/%ff%fe",
    "/..\\outside.txt",
    "/data/nested/",
    "/fifo",
    "/no-such-file",
    "/" + "a" * 5000,
]


@pytest.mark.parametrize("path", PATHS)
def test_paths_out_of_the_site_and_malformed_paths_get_a_status_and_nothing_outside(site, path, capfd):
    tried("explore serve")
    srv, port = site
    status, body = _get(port, path)
    assert status == 404 and SECRET not in body
    assert "Traceback" not in capfd.readouterr().err


def test_malformed_request_lines_get_a_status_not_a_traceback(site, capfd):
    srv, port = site
    for request in (
        b"GET /\x00 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port,
        b"GET /index.html HTTP/9.9\r\n\r\n",
        b"BREW /index.html HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port,
        b"\xff\xfe\r\n\r\n",
    ):
        tried("explore serve")
        answer = _raw(port, request)
        # an error page (a request line the server cannot read gets one without a status line)
        assert b"Error code" in answer and b"EntityNet explorer" not in answer, answer[:80]
    assert "Traceback" not in capfd.readouterr().err
