"""Compiles the classifier's hot modules with mypyc into build/native/ (`make native`; `make run`,
`make test` and `make bench` do it first).

mypyc turns the same typed Python into C extension modules: about 1.3 times the messages per
second of CPU on the classifier's fast path, with the same decisions (tests/test_native.py compares
the two). The sources stay what runs in a checkout without a build: router/classify/native.py
loads the compiled modules only when every source is the one they were compiled from, and says
which it runs. No C compiler, or a failed build: one line says so, the classifier runs as pure
Python, and the exit status is still 0 (the router works either way; only slower).

    .venv/bin/python scripts/build_native.py [--out build/native]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from router.classify.native import MANIFEST, digest  # noqa: E402

PACKAGE = ROOT / "router" / "classify"
# The modules a message passes through on the fast path (gateway: redaction and the pre-screen;
# classifier: everything else). Compiled as one group, so calls between them stay native.
MODULES = (
    "textprep",
    "quotes",
    "keywords",
    "fastre",
    "clauses",
    "evidence",
    "entities",
    "model",
    "redact",
    "classifier",
)


def build(out: Path) -> str:
    """Compiles MODULES into `out`; returns the reason it could not, or an empty string."""
    # What setuptools will run: $CC, else the compiler this Python was built with.
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler}: install gcc)"
    try:
        from mypyc.build import mypycify
        from setuptools import setup
    except ImportError as exc:  # mypy is a test dependency: a runtime-only install has none
        return f"mypyc is not installed ({exc.name})"
    sources = [PACKAGE / f"{name}.py" for name in MODULES]
    # Taken before compiling: a source edited meanwhile then no longer matches the build.
    digests = {name: digest(path) for name, path in zip(MODULES, sources, strict=True)}
    staging = Path(tempfile.mkdtemp(prefix="native-", dir=out.parent))
    log = io.StringIO()
    cwd = os.getcwd()
    try:
        # setuptools reads the configuration of the directory it runs in: an empty one here.
        os.chdir(staging)
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            setup(
                name="supportrouter-native",
                ext_modules=mypycify(
                    ["--config-file", str(ROOT / "pyproject.toml"), *map(str, sources)],
                    group_name="supportrouter_classify",
                ),
                script_args=[
                    "build_ext",
                    "--build-lib",
                    str(staging / "lib"),
                    "--build-temp",
                    str(staging / "tmp"),
                ],
            )
    except (Exception, SystemExit) as exc:  # noqa: BLE001  # a compiler's failure, whatever it is
        shutil.rmtree(staging, ignore_errors=True)
        tail = "\n".join(log.getvalue().splitlines()[-15:])
        return f"the build failed ({exc}):\n{tail}"
    finally:
        os.chdir(cwd)
    manifest = {"ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"), "sources": digests}
    (staging / "lib" / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    # The old build goes only once the new one is complete: a failed build leaves none half-made.
    shutil.rmtree(out, ignore_errors=True)
    (staging / "lib").rename(out)
    shutil.rmtree(staging, ignore_errors=True)
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "native")
    args = parser.parse_args()
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    reason = build(out)
    if reason:
        shutil.rmtree(out, ignore_errors=True)  # never a build that does not match the sources
        print(f"build_native: the classifier will run as pure Python: {reason}", file=sys.stderr)
    else:
        print(f"build_native: {len(MODULES)} classifier modules compiled into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
