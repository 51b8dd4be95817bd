"""Loopback hosts for politeness tests: one HTTP server per address of 127.0.0.0/8."""

import io
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


class CountingHosts:
    """One HTTP server per address (127.0.0.1, .2, ...: distinct hosts to the fetcher) that counts,
    on the server side, the requests in flight per host and the most at once."""

    def __init__(self, hosts: int, delay: float):
        self.peak: Counter = Counter()
        self.now: Counter = Counter()
        self.served = 0
        lock = threading.Lock()
        counting = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/robots.txt":
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                host = self.server.server_address[0]
                with lock:
                    counting.now[host] += 1
                    counting.peak[host] = max(counting.peak[host], counting.now[host])
                time.sleep(delay)
                buf = io.BytesIO()
                i = int(self.path.rsplit("/", 1)[1].split(".")[0])
                pixels = np.random.default_rng(i).integers(0, 255, (10, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels).resize((96, 80)).save(buf, "JPEG")  # distinct content per URL
                body = buf.getvalue()
                with lock:
                    counting.now[host] -= 1
                    counting.served += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.servers = []
        for k in range(1, hosts + 1):
            server = ThreadingHTTPServer((f"127.0.0.{k}", self.port), Handler)
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers.append(server)

    def url(self, host: int, i: int) -> str:
        return f"http://127.0.0.{host}:{self.port}/img/{i}.jpg"

    def close(self):
        for s in self.servers:
            s.shutdown()
            s.server_close()
