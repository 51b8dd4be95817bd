"""Shared fixtures: the sample graph, a real Oxigraph SPARQL server, and a scriptable faulty endpoint."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from loopback import LoopbackHandler, LoopbackServer, wait_until_serving

ROOT = Path(__file__).resolve().parent.parent

# One persistent JAX compilation cache for the whole session, set before anything imports jax, so
# in-process compiles (every evaluation loads a checkpoint) and the training subprocesses share it.
_OWN_CACHE = not os.environ.get("ENTITYNET_TEST_JAX_CACHE")
JAX_CACHE = os.environ.get("ENTITYNET_TEST_JAX_CACHE") or tempfile.mkdtemp(prefix="entitynet-test-jax-")
os.environ["JAX_COMPILATION_CACHE_DIR"] = JAX_CACHE
os.environ["ENTITYNET_TEST_JAX_CACHE"] = JAX_CACHE  # pytest-xdist workers started after this share it
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
if _OWN_CACHE:
    atexit.register(shutil.rmtree, JAX_CACHE, ignore_errors=True)
# The hostile-input suite's tally (tests/hostile.py), shared with the xdist workers the same way.
if not os.environ.get("ENTITYNET_TEST_HOSTILE_DIR"):
    os.environ["ENTITYNET_TEST_HOSTILE_DIR"] = tempfile.mkdtemp(prefix="entitynet-test-hostile-")
    atexit.register(shutil.rmtree, os.environ["ENTITYNET_TEST_HOSTILE_DIR"], ignore_errors=True)
SAMPLE_KG = ROOT / "entitynet" / "data" / "sample_kg.ttl"
SAMPLE_ROOTS = ("Q729", "Q756", "Q764")


def pytest_sessionfinish(session, exitstatus):
    # "no tests ran" (exit 5) must never be mistaken for a result: make it a plain failure.
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    from hostile import tally

    counts = tally(os.environ["ENTITYNET_TEST_HOSTILE_DIR"])
    if counts:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
        terminalreporter.write_line(f"hostile-input suite: {sum(counts.values())} cases tried ({kinds})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def oxigraph_binary() -> str:
    here = Path(sys.executable).parent / "oxigraph"
    found = str(here) if here.exists() else shutil.which("oxigraph")
    if not found:
        raise RuntimeError(
            "the oxigraph server binary is missing: install the test extra (pip install -e '.[test]')"
        )
    return found


@pytest.fixture(scope="session")
def sample_kg() -> Path:
    return SAMPLE_KG


@pytest.fixture(scope="session")
def oxigraph_server(tmp_path_factory):
    """`oxigraph load` the sample graph, then `oxigraph serve-read-only` it on 127.0.0.1; yields the query URL."""
    binary = oxigraph_binary()
    db = tmp_path_factory.mktemp("oxigraph") / "db"
    subprocess.run(
        [binary, "load", "--location", str(db), "--file", str(SAMPLE_KG)], check=True, capture_output=True
    )
    port = free_port()
    proc = subprocess.Popen(
        [binary, "serve-read-only", "--location", str(db), "--bind", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/query"
    ask = urllib.parse.urlencode({"query": "ASK {}"})
    wait_until_serving(f"{url}?{ask}", proc, "oxigraph server", lambda: proc.stderr.read().decode(), 30)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


class FaultyEndpoint:
    """A loopback SPARQL endpoint that plays a script of behaviours, one per request, then answers
    for real from the sample graph. Behaviours: ok, 429 (Retry-After: 1), 500, 503, slow, malformed,
    html200, 400. `when(query)` may name a behaviour for a kind of query instead (None: the script)."""

    def __init__(self):
        from entitynet.kg.embedded import load_store

        self.store = load_store([str(SAMPLE_KG)])
        self.script: list[str] = []
        self.requests: list[dict] = []
        self.slow_seconds = 3.0
        self.when = lambda query: None
        endpoint = self

        class Handler(LoopbackHandler):
            def do_POST(self):
                body = self.read_body().decode()
                query = urllib.parse.parse_qs(body).get("query", [""])[0]
                endpoint.requests.append(
                    {
                        "method": "POST",
                        "headers": dict(self.headers),
                        "query": query,
                        "time": time.monotonic(),
                    }
                )
                behaviour = endpoint.when(query) or (endpoint.script.pop(0) if endpoint.script else "ok")
                self.respond(behaviour, query)

            def do_GET(self):
                endpoint.requests.append(
                    {"method": "GET", "headers": dict(self.headers), "time": time.monotonic()}
                )
                self.send(405, b"use POST", "text/plain")

            def respond(self, behaviour, query):
                import pyoxigraph as ox

                if behaviour == "429":
                    return self.send(429, b"too many requests", "text/plain", headers=[("Retry-After", "1")])
                if behaviour in ("500", "503", "400"):
                    return self.send(int(behaviour), f"error {behaviour}\nline two".encode(), "text/plain")
                if behaviour == "slow":
                    time.sleep(endpoint.slow_seconds)
                if behaviour == "malformed":
                    return self.send(200, b'{"head": {"vars": []}, "results": {"bind', "application/json")
                if behaviour == "html200":
                    return self.send(200, b"<html>java.util.concurrent.TimeoutException</html>", "text/html")
                payload = endpoint.store.query(query).serialize(format=ox.QueryResultsFormat.JSON)
                self.send(200, payload, "application/sparql-results+json")

        self.server = LoopbackServer(Handler)
        self.url = f"{self.server.base}/sparql"

    def close(self):
        self.server.close()


@pytest.fixture
def loopback():
    """`loopback(Handler, host=..., port=...)` starts a `LoopbackServer`; all close after the test."""
    servers: list[LoopbackServer] = []

    def start(handler, **kw) -> LoopbackServer:
        servers.append(LoopbackServer(handler, **kw))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def faulty_endpoint():
    ep = FaultyEndpoint()
    yield ep
    ep.close()


@pytest.fixture(scope="session")
def sample_entities_dir(tmp_path_factory):
    """The sample graph expanded once through the embedded store (shared by many tests)."""
    from beam_pipelines import expand_kg
    from entitynet.kg.client import KGSource
    from entitynet.kg.expand import ExpandConfig

    out = tmp_path_factory.mktemp("expanded")
    stats = expand_kg.run(
        KGSource(kg_files=(str(SAMPLE_KG),)), ExpandConfig(roots=SAMPLE_ROOTS, max_depth=10), str(out)
    )
    return out, stats


@pytest.fixture(scope="session")
def sample_entities(sample_entities_dir):
    from entitynet.records import Entity, read_jsonl

    return list(read_jsonl(sample_entities_dir[0] / "entities.jsonl", Entity))


@pytest.fixture(scope="session")
def jax_cache():
    """The session's persistent compilation cache directory (set up at import, above)."""
    return JAX_CACHE


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, sample_entities):
    """A small harvest-format dataset of sample-web renders: 12 entities x 12 images (64x48),
    alt texts naming the entity, a SentencePiece tokenizer and the entities file next to it."""
    import numpy as np
    from factories import rendered

    from entitynet import shards
    from entitynet.records import encode_image, write_jsonl
    from entitynet.text import tokenizer as tokenizers

    out = tmp_path_factory.mktemp("tiny-dataset")
    entities = [e for e in sample_entities if e.depth > 0][:12]
    recs = [rendered(e, k) for e in entities for k in range(12)]
    splits = {"train": 0.75, "validation": 0.25}
    by = {}
    for r in recs:
        by.setdefault(shards.split_of(r.key, splits), []).append(r)
    for split, group in by.items():
        shards.write_shard(
            out / shards.shard_filename(split, 0, 1),
            (encode_image(r) for r in sorted(group, key=lambda r: r.key)),
        )
    shards.write_metadata(out, {s: [len(by.get(s, []))] for s in splits}, {})
    write_jsonl(out / "entities.jsonl", entities)
    texts = [t for r in recs for t in r.alt_texts] + [e.label for e in entities] * 3
    tokenizers.save(tokenizers.SentencePieceTokenizer.train(texts, vocab_size=300), out)
    return out, entities, recs, np.asarray([len(by.get(s, [])) for s in splits])


# ---------------------------------------------------------------- tiny training runs


def tiny_overrides(data_dir, **extra):
    base = {
        "model.overrides": "{}",
        "data.shards": str(data_dir),
        "data.entities": str(data_dir / "entities.jsonl"),
        "data.tokenizer": str(data_dir / "tokenizer.json"),
        "data.image_size": "32",
        "data.context_length": "16",
        "batch_size": "16",
        "log_every": "1",
        "eval_every": "0",
        "progress": "False",
        "checkpoint.every_steps": "4",
        "optim.warmup_steps": "2",
        "optim.decay_steps": "12",  # the schedule does not depend on where a run stops
    }
    base.update({k: str(v) for k, v in extra.items()})
    return [f"--config.{k}={v}" for k, v in base.items()]


def load_cfg(data_dir, **extra):
    from train import config as config_lib

    return config_lib.load(str(ROOT / "configs" / "tiny_cpu.py"), tiny_overrides(data_dir, **extra))


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, jax_cache, tmp_path_factory):
    """A 3-step training run on `tiny_dataset` (its workdir), shared by the export and
    evaluation tests; they only read it."""
    from train.train import train

    workdir = tmp_path_factory.mktemp("tiny-run") / "run"
    train(load_cfg(tiny_dataset[0], total_steps=3), workdir)
    return workdir


@pytest.fixture(scope="session")
def hostile_answers_server():
    """The loopback server of trickling, endless and oversized answers (tests/hostile_answers.py)."""
    from hostile_answers import hostile_answers

    with hostile_answers() as server:
        yield server


@pytest.fixture
def hostile(hostile_answers_server):
    """That server, its counters reset for the test."""
    from hostile_answers import reset

    reset(hostile_answers_server)
    return hostile_answers_server


@pytest.fixture(scope="session")
def object_store_server(tmp_path_factory):
    """A real S3 server (moto's server mode) behind the fault proxy of tests/objectstore.py; the
    AWS_* variables that lead clients to it are set for the session."""
    from objectstore import object_store

    with object_store(tmp_path_factory.mktemp("s3")) as store:
        yield store


@pytest.fixture
def bucket(object_store_server, request):
    """A fresh bucket on that server (`s3://<name>`), with no faults scripted."""
    object_store_server.reset()
    name = (
        "t-"
        + re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
        + f"-{time.time_ns() % 10**9}"
    )
    return object_store_server.bucket(name)
