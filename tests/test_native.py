"""The classifier compiled with mypyc (scripts/build_native.py, `make native`) decides exactly as
its sources do, and a build that no longer matches its sources is never loaded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from router.classify.native import BUILD, OFF, activate
from tests.conftest import UNDER_CI

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "router" / "classify"


def _probe(native: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k != OFF}
    if not native:
        env[OFF] = "0"
    done = subprocess.run(
        [sys.executable, "-m", "tests.native_probe"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _require_build() -> None:
    if not (BUILD / "manifest.json").exists():
        if UNDER_CI:
            pytest.fail("the compiled classifier is required under CI=true (make native)")
        pytest.skip("the classifier is not compiled here (`make native`)")


def test_the_compiled_classifier_decides_exactly_as_its_sources():
    _require_build()
    compiled, sources = _probe(native=True), _probe(native=False)
    assert compiled["build"] == "compiled (mypyc)"
    assert sources["build"] == f"pure Python ({OFF}=0)"
    assert len(compiled["decisions"]) > 1000
    for mine, theirs in zip(compiled["decisions"], sources["decisions"], strict=True):
        assert mine == theirs


def test_a_build_is_loaded_only_when_it_matches_every_source(tmp_path):
    _require_build()
    build = tmp_path / "native"
    shutil.copytree(BUILD, build)
    path = [str(PACKAGE)]
    assert activate(path, build) == "compiled (mypyc)"
    assert path == [str(build / "router" / "classify"), str(PACKAGE)]

    manifest = json.loads((build / "manifest.json").read_text())
    manifest["sources"]["model"] = "0" * 64  # model.py edited after the build
    (build / "manifest.json").write_text(json.dumps(manifest))
    path = [str(PACKAGE)]
    assert activate(path, build) == (
        "pure Python (model.py changed since it was compiled: make native)"
    )
    assert path == [str(PACKAGE)]


def test_no_build_a_broken_one_or_another_python_runs_the_sources(tmp_path, monkeypatch):
    path = [str(PACKAGE)]
    assert activate(path, tmp_path) == "pure Python (not compiled: make native)"
    (tmp_path / "manifest.json").write_text("{not json")
    assert activate(path, tmp_path).startswith(
        f"pure Python ({tmp_path / 'manifest.json'} unreadable"
    )
    (tmp_path / "manifest.json").write_text(
        json.dumps({"ext_suffix": ".cpython-39-x86_64-linux-gnu.so", "sources": {}})
    )
    assert activate(path, tmp_path) == (
        "pure Python (compiled for .cpython-39-x86_64-linux-gnu.so: make native)"
    )
    monkeypatch.setenv(OFF, "0")
    assert activate(path, BUILD) == f"pure Python ({OFF}=0)"
    assert path == [str(PACKAGE)]


def test_without_a_c_compiler_the_build_says_so_and_leaves_no_build(tmp_path):
    out = tmp_path / "native"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_native.py"), "--out", str(out)],
        env={**os.environ, "CC": str(tmp_path / "no-such-cc")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr  # the router still runs, from its sources
    assert "the classifier will run as pure Python: no C compiler" in done.stderr
    assert not out.exists()
