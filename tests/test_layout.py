"""Rules of the house that code review alone would let slip."""

import subprocess
import sys

from conftest import ROOT


def test_library_imports_neither_beam_nor_jax():
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
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 1, r.stdout
