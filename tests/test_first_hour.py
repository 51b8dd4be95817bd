"""What a new user meets in their first hour: stages that end with nothing say why and what to
change (and exit non-zero), long runs show progress and survive Ctrl-C with one line, summaries
end with the next command, and configs and data are found by name and by one flag."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest

from beam_pipelines.common import run_pipeline
from entitynet.errors import ConfigError
from entitynet.harvest import empty_harvest
from entitynet.progress import Progress, duration
from entitynet.records import Entity, write_jsonl
from entitynet_cli import common
from entitynet_cli.harvest import harvest_summary
from entitynet_cli.main import main
from train import config as config_lib
from train.train import validation_too_small

TTL = """@prefix wd: <http://www.wikidata.org/entity/> .
@prefix wdt: <http://www.wikidata.org/prop/direct/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
wd:Q22671 rdfs:label "beetle"@en .
wd:Q900001 rdfs:label "ladybird"@en ; wdt:P171 wd:Q22671 .
wd:Q900002 rdfs:label "stag beetle"@en ; wdt:P171 wd:Q22671 .
"""


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def last_line(err: str) -> str:
    return [x for x in err.strip().splitlines() if x.strip()][-1]


def _ladybird(tmp_path) -> Path:
    """entities.jsonl of one entity."""
    path = tmp_path / "entities.jsonl"
    write_jsonl(
        path, [Entity(id="Q900001", label="ladybird", kind="taxon", root="Q900001", natural_type="Q900001")]
    )
    return path


@pytest.fixture
def beetles(tmp_path) -> Path:
    path = tmp_path / "beetles.ttl"
    path.write_text(TTL)
    return path


# ---------------------------------------------------------------- no quiet empties


def test_a_graph_without_sitelinks_names_the_flag_and_writes_nothing(capsys, beetles, tmp_path):
    out = tmp_path / "kg"
    code, _, err = run(
        capsys, "kg", "expand", "--kg-file", str(beetles), "--root", "Q22671", "--out", str(out)
    )
    assert code == 2
    line = last_line(err)
    assert line.startswith("entitynet: error: all 3 entities under Q22671")
    assert "fewer than 5 sitelinks (the most is 0); re-run with --min-sitelinks 0" in line
    assert not (out / "entities.jsonl").exists()
    code, stdout, _ = run(
        capsys,
        "kg",
        "expand",
        "--kg-file",
        str(beetles),
        "--root",
        "Q22671",
        "--min-sitelinks",
        "0",
        "--out",
        str(out),
    )
    assert code == 0 and "expanded 3 entities" in stdout
    assert stdout.rstrip().endswith(
        f"next: entitynet kg classify --entities {out}/entities.jsonl --kg-file {beetles} "
        f"--out {tmp_path}/kg-classified"
    )


def test_a_graph_without_the_default_roots_asks_for_root(capsys, beetles, tmp_path):
    code, _, err = run(capsys, "kg", "expand", "--kg-file", str(beetles), "--out", str(tmp_path / "kg"))
    assert code == 2
    assert "holds none of living mode's default roots (Q729, Q756" in last_line(err)
    assert "give your graph's top entity with --root QID" in last_line(err)
    # a root the user names and the graph lacks is still named as such
    code, _, err = run(
        capsys, "kg", "expand", "--kg-file", str(beetles), "--root", "Q5", "--out", str(tmp_path / "k")
    )
    assert code == 2 and "root Q5 not found in" in last_line(err)


def test_an_empty_entities_file_names_its_cause(capsys, tmp_path):
    (tmp_path / "entities.jsonl").write_text("")
    code, _, err = run(
        capsys, "queries", "--entities", str(tmp_path / "entities.jsonl"), "--out", str(tmp_path / "q")
    )
    assert code == 2
    assert "give the entities.jsonl that `entitynet kg expand` wrote" in last_line(err)
    assert "run `entitynet kg expand` first" not in err


@pytest.mark.parametrize(
    ("per_outcome", "cause"),
    [
        ({"blocked_address": 36}, "all 36 candidates ended as blocked_address: their addresses are loopback"),
        ({"robots_disallowed": 5}, "add --ignore-robots-txt"),
        ({"too_small": 3, "not_an_image": 1}, "3 of the 4 candidates ended as too_small"),
        ({"strange_new_reason": 2}, "see OUT/outcomes/ for each URL's detail"),
    ],
)
def test_an_empty_harvest_names_the_policy_that_stopped_it(per_outcome, cause):
    stats = {"written": 0, "candidates": sum(per_outcome.values()), "per_outcome": per_outcome}
    assert cause in empty_harvest(stats, "OUT")
    assert empty_harvest({"written": 1, "candidates": 1, "per_outcome": {"written": 1}}, "OUT") is None
    assert "found no candidate image" in empty_harvest(
        {"written": 0, "candidates": 0, "per_outcome": {}}, "OUT"
    )


def test_a_harvest_of_loopback_urls_without_the_flag_fails_and_curation_refuses_it(capsys, tmp_path):
    """End to end: loopback URLs are refused before any connection (no server needed); the harvest
    exits 2 naming --allow-loopback, and curating what it wrote says it holds no records."""
    entities = _ladybird(tmp_path)
    code, _, _ = run(capsys, "queries", "--entities", str(entities), "--out", str(tmp_path / "q"))
    assert code == 0
    pool = tmp_path / "pool.jsonl"
    pool.write_text(
        "".join(
            json.dumps({"url": f"http://127.0.0.1:9/{i}.jpg", "text": "a ladybird"}) + "\n" for i in range(3)
        )
    )
    shards = tmp_path / "shards"
    code, out, err = run(
        capsys, "harvest", "--queries", str(tmp_path / "q" / "queries.jsonl"), "--backend", "pool",
        "--pool", str(pool), "--out", str(shards),
    )  # fmt: skip
    assert code == 2, err
    line = last_line(err)
    assert "wrote no image: all 3 candidates ended as blocked_address" in line and "--allow-loopback" in line
    assert "3 candidate images: downloaded 3; 0 written" in out
    code, _, err = run(
        capsys, "curate", "--shards", str(shards), "--entities", str(entities), "--out", str(tmp_path / "cur")
    )
    assert code == 2 and "holds no records" in last_line(err)
    assert not (tmp_path / "cur").exists()


def test_the_harvest_summary_tells_downloads_from_reuse():
    stats = {
        "candidates": 600, "fetched": 600, "written": 590, "success_rate": 0.983, "seconds": 3.0,
        "per_outcome": {"written": 590, "timeout": 10}, "per_split": {"train": 590},
        "reused_from_earlier_run": 150,
    }  # fmt: skip
    assert (
        "600 candidate images: downloaded 450, reused 150 from an earlier run; 590 written"
        in harvest_summary(stats, "OUT")
    )
    stats["reused_from_earlier_run"] = 0
    assert "600 candidate images: downloaded 600; 590 written" in harvest_summary(stats, "OUT")


def test_a_validation_split_smaller_than_a_batch_is_said():
    line = validation_too_small("validation", 2, 8)
    assert "has 2 records, fewer than one batch of 8" in line and "--config.batch_size" in line
    assert "--config.eval_every=0" in line


# ---------------------------------------------------------------- progress and Ctrl-C


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_rewrites_one_line_with_rate_and_eta():
    clock, stream = _Clock(), _Tty()
    p = Progress("harvest", total=100, unit="candidates", stream=stream, clock=clock)
    p.add(reused=20)  # reused work counts as done, not in the rate
    clock.t = 10.0
    p.add(done=40, made=30)
    shown = stream.getvalue()
    assert shown.startswith("\r") and "\n" not in shown
    assert "harvest: 60 of 100 candidates (60.0%), 30 images, 20 reused, 4.0 candidates/s, ETA 10s" in shown
    p.close()
    assert stream.getvalue().endswith("\n")


def test_progress_elsewhere_logs_a_line_now_and_then(caplog):
    clock = _Clock()
    p = Progress("harvest (this worker)", unit="candidates", stream=io.StringIO(), every=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="entitynet.progress"):
        p.add(done=5)
        clock.t = 31.0
        p.add(done=5, made=4)
        clock.t = 40.0
        p.add(done=1)  # within 30 s of the last line: not logged
    assert [r.getMessage() for r in caplog.records] == [
        "harvest (this worker): 10 candidates, 4 images, 0.3 candidates/s"
    ]
    assert [duration(s) for s in (42, 185, 7620)] == ["42s", "3m 05s", "2h 07m"]


class _Interrupt(beam.DoFn):
    def process(self, x):
        raise KeyboardInterrupt


def test_ctrl_c_inside_a_pipeline_step_is_an_interrupt_again():
    """The runner wraps a step's KeyboardInterrupt in a RuntimeError; the command must see Ctrl-C."""
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(lambda p: p | beam.Create([1]) | beam.ParDo(_Interrupt()), [])


def test_the_interrupt_line_says_what_was_kept_and_how_to_go_on():
    common.on_interrupt("the images fetched so far are saved in out")
    line = common.interrupted_line(["harvest", "--out", "my dir"])
    assert line == (
        "entitynet: interrupted; the images fetched so far are saved in out; to go on, run again: "
        "entitynet harvest --out 'my dir'"
    )
    common.on_interrupt(lambda: "step 7 is kept")
    assert "interrupted; step 7 is kept;" in common.interrupted_line(["train"])
    common.on_interrupt("nothing of it was written")


# Serves an image in 0.5 s; after the first 40, holds each request until the file named by argv[1]
# exists (at most 30 s), so a loaded machine cannot finish the harvest before the test's Ctrl-C lands.
SLOW_SERVER = """
import http.server, io, itertools, os, sys, threading, time
from PIL import Image
served, lock = itertools.count(), threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/robots.txt":
            self.send_response(404); self.end_headers(); return
        time.sleep(0.5)
        with lock:
            n = next(served)
        waited = 0.0
        while n >= 40 and not os.path.exists(sys.argv[1]) and waited < 30:
            time.sleep(0.1); waited += 0.1
        sys.stdout.write("G"); sys.stdout.flush()
        i = int(self.path.strip("/").split(".")[0])
        b = io.BytesIO(); Image.new("RGB", (160, 120), (i % 256, i // 256 * 40, 90)).save(b, "PNG")
        self.send_response(200); self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(b.getvalue()))); self.end_headers(); self.wfile.write(b.getvalue())
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


@pytest.mark.slow
def test_ctrl_c_in_a_harvest_keeps_what_was_fetched_and_says_how_to_resume(tmp_path):
    """A real command line and a real SIGINT: one line on stderr after the progress, no traceback,
    and the same command downloads only the rest."""
    go = tmp_path / "go"
    server = subprocess.Popen([sys.executable, "-c", SLOW_SERVER, str(go)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        entities = _ladybird(tmp_path)
        assert main(["queries", "--entities", str(entities), "--out", str(tmp_path / "q")]) == 0
        pool = tmp_path / "pool.jsonl"
        rows = [{"url": f"http://127.0.0.1:{port}/{i}.png", "text": f"ladybird {i}"} for i in range(200)]
        pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
        argv = [
            str(Path(sys.executable).parent / "entitynet"), "harvest", "--queries", str(tmp_path / "q" / "queries.jsonl"),
            "--backend", "pool", "--pool", str(pool), "--allow-loopback", "--out", str(tmp_path / "shards"),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # as in a terminal: a shell runs background jobs with SIGINT ignored, which a child inherits
        # (and Python then installs no KeyboardInterrupt handler), so a CI launched with `&` would
        # test nothing; the harvest gets the default disposition back
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        for _ in range(40):  # 40 images asked for: interrupt a harvest well under way
            assert server.stdout.read(1) == "G"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-2000:]
        lines = [x for x in err.splitlines() if x.strip()]
        assert len(lines) <= 6, err[-3000:]  # no traceback, no event-loop noise
        assert "Traceback" not in err and "Task was destroyed" not in err
        assert lines[-1].startswith("entitynet: interrupted; the images fetched so far are saved in ")
        assert lines[-1].endswith(" ".join(["to go on, run again: entitynet", *argv[1:]]))
        go.touch()  # the rest is served at the normal pace
        again = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
        assert again.returncode == 0, again.stderr[-2000:]
        summary = next(x for x in again.stdout.splitlines() if x.startswith("200 candidate images"))
        reused = int(summary.split("reused ")[1].split()[0])
        assert 0 < reused < 200
        assert f"downloaded {200 - reused}, reused {reused} from an earlier run; 200 written" in summary
    finally:
        server.terminate()
        server.wait(timeout=10)


# ---------------------------------------------------------------- configs by name, --data


def test_shipped_configs_are_found_by_name():
    assert config_lib.find("tiny_cpu").name == "tiny_cpu.py"
    assert config_lib.find("configs/small_data.py").name == "small_data.py"
    assert set(config_lib.shipped()) >= {
        "tiny_cpu",
        "small_data",
        "vit_b32_entitynet",
        "vit_b16_livingthings",
    }
    with pytest.raises(
        ConfigError, match=r"does not exist .*; did you mean tiny_cpu\? shipped: small_data, tiny_cpu"
    ):
        config_lib.find("tiny_cpuu")
    cfg = config_lib.load("tiny_cpu:siglip", ["--config.total_steps=7"])
    assert cfg.loss == "siglip" and cfg.total_steps == 7


def test_the_wheel_carries_the_configs():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert "configs" in project["tool"]["setuptools"]["packages"]["find"]["include"]


def _curated(tmp_path, tokenizer=True, entities="E.jsonl") -> Path:
    d = tmp_path / "curated"
    d.mkdir()
    (d / "dataset_info.json").write_text("{}")
    if tokenizer:
        (d / "tokenizer.json").write_text("{}")
    (d / "curation_config.json").write_text(json.dumps({"shards": "H", "entities_file": entities}))
    return d


def test_data_points_a_run_at_a_curated_directory(tmp_path):
    d = _curated(tmp_path)
    cfg = config_lib.load("tiny_cpu", [], data=str(d))
    assert (cfg.data.shards, cfg.data.tokenizer, cfg.data.entities) == (
        str(d),
        f"{d}/tokenizer.json",
        "E.jsonl",
    )
    cfg = config_lib.load("tiny_cpu", ["--config.data.entities=mine.jsonl"], data=str(d))
    assert cfg.data.entities == "mine.jsonl"  # an override wins over what --data gives


def test_data_says_how_to_make_what_it_lacks(tmp_path):
    d = _curated(tmp_path, tokenizer=False, entities="")
    with pytest.raises(
        ConfigError, match=r"has no tokenizer.json: make one with `entitynet tokenizer train --shards"
    ):
        config_lib.load("tiny_cpu", [], data=str(d))
    with pytest.raises(
        ConfigError, match=r"does not say which entities.jsonl .* --config.data.entities=FILE"
    ):
        config_lib.load("tiny_cpu", ["--config.data.tokenizer=t.json"], data=str(d))
    with pytest.raises(ConfigError, match=r"is not a dataset"):
        config_lib.load("tiny_cpu", [], data=str(tmp_path / "nothing"))
