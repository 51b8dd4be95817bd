"""Rules of the house that code review alone would let slip."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

# The rules of the house (docs/development.md) as import bans: package -> the top-level
# modules none of its files may import, at the top or inside a function. Only the command
# package (entitynet_cli) imports the library, the pipelines and the trainer together.
BANNED = {
    "entitynet": {"apache_beam", "jax", "flax", "optax", "orbax", "beam_pipelines", "train", "entitynet_cli"},
    "beam_pipelines": {"jax", "flax", "optax", "orbax", "train", "entitynet_cli"},
    "train": {"apache_beam", "beam_pipelines", "entitynet_cli"},
}


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, top-level module) of every import statement in the file, function bodies included;
    relative imports count as the file's own package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.lineno, package if node.level else (node.module or "").split(".")[0]))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Attribute, ast.Name))
            and getattr(node.func, "attr", getattr(node.func, "id", "")) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):  # importlib.import_module("jax") is an import too
            found.append((node.lineno, node.args[0].value.split(".")[0]))
    return found


def layout_violations(root: Path) -> list[str]:
    out = []
    for package, banned in BANNED.items():
        for path in sorted((root / package).rglob("*.py")):
            for line, module in imported_modules(path, package):
                if module in banned:
                    out.append(f"{path.relative_to(root)}:{line} imports {module}")
    return out


def test_every_import_statement_keeps_the_rules_of_the_house():
    assert layout_violations(ROOT) == []


def test_the_layout_scan_finds_a_planted_violation(tmp_path):
    for package in BANNED:
        (tmp_path / package).mkdir()
    (tmp_path / "entitynet" / "planted.py").write_text(
        "import json\n\ndef f():\n    import jax.numpy as jnp\n    return jnp\n"
    )
    (tmp_path / "beam_pipelines" / "planted.py").write_text("def g():\n    from train.model import CLIP\n")
    (tmp_path / "train" / "planted.py").write_text(
        "import importlib\nbeam = importlib.import_module('apache_beam')\n"
    )
    (tmp_path / "train" / "fine.py").write_text("from . import model\nfrom entitynet import records\n")
    assert layout_violations(tmp_path) == [
        "entitynet/planted.py:4 imports jax",
        "beam_pipelines/planted.py:2 imports train",
        "train/planted.py:2 imports apache_beam",
    ]


def test_library_imports_neither_beam_nor_jax_when_loaded():
    code = (
        "import sys, pkgutil, importlib, entitynet\n"
        "for m in pkgutil.walk_packages(entitynet.__path__, 'entitynet.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('apache_beam', 'jax', 'flax'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_an_empty_selection_fails_instead_of_passing(tmp_path):
    (tmp_path / "test_nothing.py").write_text("def helper():\n    pass\n")
    for name in ("conftest.py", "loopback.py"):  # the suite's conftest, with what it imports
        (tmp_path / name).write_text((ROOT / "tests" / name).read_text())
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 1, r.stdout
