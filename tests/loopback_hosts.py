"""Loopback hosts for politeness tests: one HTTP server per address of 127.0.0.0/8."""

import io
import socket
import threading
import time
from collections import Counter

import numpy as np
from loopback import LoopbackHandler, LoopbackServer
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

        class Handler(LoopbackHandler):
            def do_GET(self):
                if self.path == "/robots.txt":
                    return self.send(404, b"", "text/plain")
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
                return self.send(200, body)

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.servers = [LoopbackServer(Handler, f"127.0.0.{k}", self.port) for k in range(1, hosts + 1)]

    def url(self, host: int, i: int) -> str:
        return f"http://127.0.0.{host}:{self.port}/img/{i}.jpg"

    def close(self):
        for s in self.servers:
            s.close()
