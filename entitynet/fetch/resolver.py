"""Host name -> addresses, cached per worker.

A harvest asks for thousands of URLs on the same few thousand hosts; resolving each one again
costs a round trip to the resolver every time (img2dataset's users report DNS as the bottleneck of
large crawls). `Resolver` keeps each answer for `ttl` seconds (the system resolver does not say
an answer's own TTL, so one ceiling applies to all), a failure for `negative_ttl` seconds (a dead
host is not asked again for every one of its URLs), and lets one lookup per host run at a time:
threads asking for a host already being resolved wait for that answer instead of asking too.

The address guard checks whatever this returns, on every connection, so a cached answer is held
to the same rules as a fresh one.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import cast


class Resolver:
    def __init__(
        self,
        ttl: float = 300.0,
        negative_ttl: float = 30.0,
        max_hosts: int = 100_000,
        lookup: Callable | None = None,  # default: socket.getaddrinfo, looked up at each call
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ttl, self.negative_ttl, self.max_hosts = ttl, negative_ttl, max_hosts
        self._lookup, self._clock = lookup, clock
        # (host, port) -> (expiry, addresses or the gaierror)
        self._cache: OrderedDict[tuple[str, int], tuple[float, list[str] | socket.gaierror]] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, int], threading.Event] = {}
        self.lookups = 0  # answers asked of the system resolver (for tests and stats)

    def cached(self, host: str, port: int) -> list[str] | None:
        """The cached answer without waiting (None when there is none): what an event loop asks
        before it hands a lookup to a thread."""
        key = (host.lower(), int(port))
        with self._lock:
            hit = self._cache.get(key)
            if hit is None or hit[0] <= self._clock():
                return None
            self._cache.move_to_end(key)
            return _answer(hit[1])

    def resolve(self, host: str, port: int) -> list[str]:
        """The host's addresses (in the resolver's order, without repeats); socket.gaierror as the
        system resolver raises it, also when the failure is cached."""
        key = (host.lower(), int(port))
        while True:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None and hit[0] > self._clock():
                    self._cache.move_to_end(key)
                    return _answer(hit[1])
                waiting = self._pending.get(key)
                if waiting is None:
                    self._pending[key] = threading.Event()
                    break
            waiting.wait()  # someone else is asking: take their answer (or ask again if it expired)
        try:
            try:
                infos = (self._lookup or socket.getaddrinfo)(host, port, type=socket.SOCK_STREAM)
                # SOCK_STREAM answers are AF_INET/AF_INET6: the sockaddr's first item is the address string
                found: list[str] | socket.gaierror = list(
                    dict.fromkeys(cast(str, info[4][0]) for info in infos)
                )
                expiry = self._clock() + self.ttl
            except socket.gaierror as e:
                found, expiry = e, self._clock() + self.negative_ttl
            with self._lock:
                self.lookups += 1
                self._cache[key] = (expiry, found)
                self._cache.move_to_end(key)
                while len(self._cache) > self.max_hosts:
                    self._cache.popitem(last=False)
            return _answer(found)
        finally:
            with self._lock:
                self._pending.pop(key).set()


def _answer(found: list[str] | socket.gaierror) -> list[str]:
    if isinstance(found, socket.gaierror):
        raise socket.gaierror(*found.args)  # a fresh one: the cached error is shared by threads
    return list(found)
