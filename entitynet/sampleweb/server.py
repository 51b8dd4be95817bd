"""The sample web on 127.0.0.1: a SearXNG-compatible search endpoint and the image host.

with SampleWeb(entities) as web:      # picks a free port
    web.base_url                      # http://127.0.0.1:PORT
    # GET /search?q=red+fox&format=json&categories=images&pageno=1
    # GET /img/<id>.jpg   (rendered on demand; some are dead, faulty or opted out)
    # the open archives, in their APIs' shapes (entitynet.sampleweb.archives):
    # GET /w/api.php?action=query&list=categorymembers|prop=imageinfo, action=wbgetentities
    # GET /v1/occurrence/search?taxonKey=K&mediaType=StillImage   (GBIF)
    # GET /v1/observations?taxon_id=T&quality_grade=research&id_above=N   (iNaturalist)
    # GET /photos/<id>/<size>.jpg   (iNaturalist's photo URLs)
"""

from __future__ import annotations

import functools
import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from entitynet.records import Entity
from entitynet.sampleweb import archives
from entitynet.sampleweb.corpus import SearchIndex, WebImage, build_corpus
from entitynet.sampleweb.render import jpeg_bytes, render

PAGE_SIZE = 20
ROBOTS = b"User-agent: *\nDisallow: /private/\n"


class SampleWeb:
    def __init__(
        self,
        entities: Iterable[Entity],
        seed: int = 0,
        port: int = 0,
        delay: float = 0.0,
        archive_photos: int = 3,
        api_page: int = 500,
        **corpus,
    ):
        entities = list(entities)
        self.entities = {e.id: e for e in entities}
        self.lineage = {e.id: e.lineage_ids for e in entities}
        self.labels = {e.id: e.label for e in entities}
        self.corpus = build_corpus(entities, seed=seed, **corpus)
        self.by_id = {im.id: im for im in self.corpus}
        # photos per source and identifier; api_page caps every API page (tests force paging)
        self.archives = archives.build_archives(entities, seed=seed, per_entity=archive_photos)
        self.by_id.update(
            (p.image.id, p.image) for ps in self.archives.values() for x in ps.values() for p in x
        )
        self.api_page = api_page
        self.api_requests: Counter = Counter()  # per API: gbif, inaturalist, commons
        self.index = SearchIndex(self.corpus)
        self.requests = 0
        self.image_requests = 0
        self.searches = 0
        self.delay = delay
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def send(self, status: int, body: bytes, ctype: str, headers=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                web.requests += 1
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/robots.txt":
                    return self.send(200, ROBOTS, "text/plain")
                if url.path == "/search":
                    web.searches += 1
                    params = dict(urllib.parse.parse_qsl(url.query))
                    return self.send(
                        200, web.search_json(params, self.headers.get("Host", "")), "application/json"
                    )
                if url.path.startswith("/img/") and url.path.endswith(".jpg"):
                    return self.image(url.path[5:-4])
                api = {
                    "/w/api.php": "commons",
                    "/v1/occurrence/search": "gbif",
                    "/v1/observations": "inaturalist",
                }
                if url.path in api:
                    name = api[url.path]
                    web.api_requests[name] += 1
                    params = dict(urllib.parse.parse_qsl(url.query))
                    return self.send(
                        200, web.api_json(name, params, self.headers.get("Host", "")), "application/json"
                    )
                if url.path.startswith("/photos/") and url.path.endswith(".jpg") and url.path.count("/") == 3:
                    return self.image(url.path.split("/")[2])
                if url.path.startswith("/page/"):
                    im = web.by_id.get(url.path[6:])
                    if im:
                        return self.send(
                            200, f"<html><body><p>{im.page_text}</p></body></html>".encode(), "text/html"
                        )
                return self.send(404, b"not found", "text/plain")

            def image(self, image_id: str):
                web.image_requests += 1
                if web.delay:
                    time.sleep(web.delay)  # a slow web, for tests that interrupt a harvest
                im = web.by_id.get(image_id)
                if im is None or im.fault == "dead":
                    return self.send(404, b"not found", "text/html")
                if im.fault == "error500":
                    return self.send(500, b"internal error", "text/html")
                if im.fault == "html":
                    return self.send(200, b"<html><body>Image moved</body></html>", "image/jpeg")
                data = web.jpeg(image_id)
                if im.fault == "truncated":
                    data = data[: len(data) // 2]
                headers = [("X-Robots-Tag", "noai")] if im.fault == "noai" else []
                return self.send(200, data, "image/jpeg", headers)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

            def handle_error(self, request, client_address):
                pass  # clients that hang up (size caps, deadlines) are expected

        self.server = Server(("127.0.0.1", port), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (one SampleWeb per process; the cache dies with it)
    def jpeg(self, image_id: str) -> bytes:
        im = self.by_id[image_id]
        lineage = self.lineage.get(im.entity_id, ()) if im.entity_id else ()
        entity = im.entity_id or f"distractor-{im.seed}"
        return jpeg_bytes(render(lineage, entity, im.seed, (im.width, im.height)))

    def search_json(self, params: dict, host: str) -> bytes:
        if params.get("format") != "json":
            return json.dumps({"error": "format=json required"}).encode()
        page = max(1, int(params.get("pageno", "1") or 1))
        hits = self.index.search(params.get("q", ""))
        chunk = hits[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        base = f"http://{host}" if host else self.base_url
        return json.dumps(
            {
                "query": params.get("q", ""),
                "number_of_results": len(hits),
                "results": [self._result(im, base) for im in chunk],
            }
        ).encode()

    def api_json(self, name: str, params: dict, host: str) -> bytes:
        base = f"http://{host}" if host else self.base_url
        answer = {
            "commons": archives.commons_answer,
            "gbif": archives.gbif_answer,
            "inaturalist": archives.inaturalist_answer,
        }[name]
        try:
            doc = answer(self.archives[name], self.entities, params, base, self.api_page)
        except ValueError as e:  # a malformed number in the request: the APIs answer 400 JSON
            doc = {"error": {"code": "badvalue", "info": str(e)}}
        return json.dumps(doc).encode()

    @staticmethod
    def _result(im: WebImage, base: str) -> dict:
        return {
            "url": f"{base}/page/{im.id}",
            "img_src": f"{base}/img/{im.id}.jpg",
            "title": im.alt,
            "content": "",
            "resolution": f"{im.width}x{im.height}",
            "engine": "sampleweb",
            "template": "images.html",
        }

    def __enter__(self) -> SampleWeb:
        self._thread.start()
        return self

    start = __enter__

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()
