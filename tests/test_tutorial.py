"""The "your own domain" tutorial (docs/tutorial.md), run as written: its files are written, its
commands run in a shell in a fresh directory (the project's `entitynet` and `python` first on
PATH), and each documented output must appear in what the command before it printed. A command,
flag or output line the docs show and the tool no longer does fails here.

The page marks its blocks with HTML comments (invisible in the rendered docs):
    <!-- tutorial: file NAME -->   the next block is written to NAME
    <!-- tutorial: run -->         each line of the next block is a command that must succeed
    <!-- tutorial: fails -->       ... a command that must fail (exit non-zero)
    <!-- tutorial: background -->  ... a server started and left running (its port awaited)
    <!-- tutorial: output -->      each line of the next block appears in the last command's output
                                   (`…` stands for any text: timings, counts that vary)
The images the pool names are the one thing the page does not give: the test makes them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PAGE = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"
MARK = re.compile(
    r"<!-- tutorial: (file|run|fails|background|output)\s*(\S*)\s*-->\s*\n```[^\n]*\n(.*?)\n```", re.S
)


def steps(page: str) -> list[tuple[str, str, str]]:
    """(kind, argument, block text) for each marked block, in page order."""
    return [(m.group(1), m.group(2), m.group(3)) for m in MARK.finditer(page)]


def expected(line: str) -> re.Pattern:
    """A documented output line as a pattern: `…` is any text, the rest literal."""
    return re.compile("^" + ".*".join(re.escape(part) for part in line.split("…")) + "$", re.M)


def test_the_tutorial_marks_its_blocks():
    found = steps(PAGE.read_text(encoding="utf-8"))
    kinds = [k for k, _, _ in found]
    assert kinds.count("run") >= 8 and "fails" in kinds and "background" in kinds
    files = {a for k, a, _ in found if k == "file"}
    assert files == {"beetles.ttl", "pool.jsonl"}
    commands = [line for k, _, text in found if k == "run" for line in text.splitlines()]
    assert all(c.startswith("entitynet ") for c in commands)
    # twelve commands from the graph to the site and the WebDataset copy (serving the images
    # included), as the README says
    assert len(commands) + kinds.count("background") == 12


def test_expected_lines_match_only_what_they_say():
    assert expected("expanded 9 entities in … s").search("x\nexpanded 9 entities in 1.5 s\n")
    assert not expected("expanded 9 entities in … s").search("expanded 19 entities in 1.5 s")


def _images(pool: str, folder: Path) -> None:
    """The pool's images: one picture per URL, each a different coarse pattern (no two alike to the
    near-duplicate check)."""
    folder.mkdir()
    for i, line in enumerate(pool.splitlines()):
        name = json.loads(line)["url"].rsplit("/", 1)[1]
        cells = np.random.default_rng(i).integers(0, 256, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(cells).resize((128, 96), Image.BILINEAR).save(folder / name, quality=90)


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, f"the tutorial's server exited with {proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"the tutorial's server did not listen on {port} within {timeout} s")


@pytest.mark.slow
def test_the_tutorial_runs_as_written(tmp_path):
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "COLUMNS": "200"}
    servers: list[subprocess.Popen] = []
    last = ""
    try:
        for kind, arg, text in steps(PAGE.read_text(encoding="utf-8")):
            if kind == "file":
                (tmp_path / arg).write_text(text + "\n", encoding="utf-8")
                if arg == "pool.jsonl":
                    _images(text, tmp_path / "images")
            elif kind == "background":
                port = int(re.search(r"http\.server (\d+)", text).group(1))
                with socket.socket() as s:
                    assert s.connect_ex(("127.0.0.1", port)) != 0, (
                        f"port {port} is taken: free it to run this test"
                    )
                proc = subprocess.Popen(
                    shlex.split(text),
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                servers.append(proc)
                _wait_for_port(port, proc)
            elif kind in ("run", "fails"):
                for command in text.splitlines():
                    done = subprocess.run(
                        command,
                        shell=True,
                        cwd=tmp_path,
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=600,
                    )
                    last = done.stdout + done.stderr
                    if kind == "run":
                        assert done.returncode == 0, (
                            f"`{command}` failed ({done.returncode}):\n{last[-3000:]}"
                        )
                    else:
                        assert done.returncode != 0, f"`{command}` should fail:\n{last[-3000:]}"
                        assert len(done.stderr.strip().splitlines()[-1:]) == 1
            else:  # output
                for line in text.splitlines():
                    assert expected(line).search(last), (
                        f"documented output not printed: {line!r}\n--- got:\n{last[-3000:]}"
                    )
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=10)
    assert (tmp_path / "beetles" / "site" / "index.html").is_file()
    assert (tmp_path / "beetles" / "export" / "open_clip_config.json").is_file()
    assert not (tmp_path / "beetles" / "kg-none").exists()  # the failed expansion wrote nothing
