"""A real S3 server on loopback for the tests: moto's server mode (its own process), reached through a
small proxy that can play the faults of a real object store — a 503 on a write, a 403 on a read, a
listing that lags the writes. Clients find it the way they find AWS: `AWS_ENDPOINT_URL` and the
other AWS_* variables (`ObjectStore.env`), which s3fs/botocore read in this process and in every
process the tests start."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from loopback import LoopbackHandler, LoopbackServer, wait_until_serving

_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


@dataclass
class Fault:
    """Answer `status` (instead of forwarding) to the next `times` requests of `method` whose path
    matches `path` (a regex over the URL path, e.g. `/bucket/run/.*\\.json`)."""

    method: str
    path: str
    status: int
    times: int = 1


@dataclass
class ObjectStore:
    endpoint: str
    env: dict[str, str]
    faults: list[Fault] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # key regexes a listing leaves out (lagging)
    requests: list[tuple[str, str, int]] = field(default_factory=list)

    def bucket(self, name: str) -> str:
        """A new empty bucket; its URL prefix `s3://name`."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, **_credentials())
        client.create_bucket(Bucket=name)
        return f"s3://{name}"

    def reset(self) -> None:
        self.faults.clear()
        self.hidden.clear()
        self.requests.clear()

    def keys(self, prefix: str) -> list[str]:
        """The object keys under an `s3://bucket/prefix`, straight from the server (no proxy)."""
        import boto3

        bucket, _, key = prefix.removeprefix("s3://").partition("/")
        client = boto3.client("s3", endpoint_url=self.env["ENTITYNET_TEST_S3_DIRECT"], **_credentials())
        out, token = [], None
        while True:
            kw = {"Bucket": bucket, "Prefix": key}
            if token:
                kw["ContinuationToken"] = token
            page = client.list_objects_v2(**kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return out


def _credentials() -> dict:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proxy(store_ref: list, upstream_port: int) -> LoopbackServer:
    class Proxy(LoopbackHandler):
        def _forward(self):
            store: ObjectStore = store_ref[0]
            body = self.read_body() if self.headers.get("Content-Length") else b""
            path = self.url_path
            for f in store.faults:
                if f.times > 0 and f.method == self.command and re.fullmatch(f.path, path):
                    f.times -= 1
                    store.requests.append((self.command, path, f.status))
                    code = {403: "AccessDenied", 503: "SlowDown", 500: "InternalError"}.get(f.status, "Error")
                    xml = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{code}</Message></Error>"
                    self.send(f.status, b"" if self.command == "HEAD" else xml.encode(), "application/xml")
                    return
            conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if store.hidden and self.command == "GET" and "list-type=2" in self.path:
                for pattern in store.hidden:  # a listing that has not caught up with these writes
                    data = re.sub(
                        rb"<Contents>(?:(?!</Contents>).)*?<Key>"
                        + pattern.encode()
                        + rb"</Key>.*?</Contents>",
                        b"",
                        data,
                        flags=re.S,
                    )
            store.requests.append((self.command, path, resp.status))
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                    self.send_header(k, v)
            if self.command != "HEAD":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return LoopbackServer(Proxy)


@contextlib.contextmanager
def object_store(tmp: Path):
    """moto's S3 server and the fault proxy on 127.0.0.1; the AWS_* variables set in os.environ
    (and restored after)."""
    port = _free_port()
    moto = Path(sys.executable).parent / "moto_server"
    log = open(tmp / "moto.log", "wb")
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    wait_until_serving(f"http://127.0.0.1:{port}/", proc, "moto_server", (tmp / "moto.log").read_text)
    ref: list = []
    proxy = _proxy(ref, port)
    endpoint = f"http://127.0.0.1:{proxy.port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_RETRY_MODE": "standard",
        "AWS_MAX_ATTEMPTS": "3",
        "AWS_EC2_METADATA_DISABLED": "true",
        "ENTITYNET_TEST_S3_DIRECT": f"http://127.0.0.1:{port}",
    }
    ref.append(ObjectStore(endpoint, env))
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield ref[0]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proxy.close()
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
