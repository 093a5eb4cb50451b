"""Whether the classifier runs compiled: the modules scripts/build_native.py compiled with mypyc
(build/native/) are used only when every source is byte for byte the one they were compiled from.
Otherwise the sources run as they are, and `router.classify.NATIVE` says why (the router logs it
at start)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import sysconfig
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

BUILD = Path(__file__).resolve().parents[2] / "build" / "native"
# Settings.native, read here because the choice is made at import, before any Settings exist:
# a false value runs the sources even when a matching build exists.
OFF = "SUPPORTROUTER_NATIVE"
MANIFEST = "manifest.json"  # in the build: the Python it was built for and each source's digest


def digest(source: Path) -> str:
    """What the manifest holds for a source: scripts/build_native.py writes it, `activate`
    compares it."""
    return hashlib.sha256(source.read_bytes()).hexdigest()


def _switched_off() -> str:
    """The variable's value when Settings would read it as false (a value that is not a boolean
    is left to Settings, which refuses it at start)."""
    value = os.environ.get(OFF, "")
    try:
        return value if value and not TypeAdapter(bool).validate_python(value) else ""
    except ValidationError:
        return ""


def activate(package_path: list[str], build: Path = BUILD) -> str:
    """Puts the compiled modules first on the package's path when they match its sources; returns
    what runs, for the log: "compiled (mypyc)" or "pure Python (<why>)"."""
    off = _switched_off()
    if off:
        return f"pure Python ({OFF}={off})"
    manifest = build / MANIFEST
    try:
        built = json.loads(manifest.read_text(encoding="utf-8"))
        suffix, sources = built["ext_suffix"], dict(built["sources"])
    except FileNotFoundError:
        return "pure Python (not compiled: make native)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"pure Python ({manifest} unreadable: {exc})"
    if suffix != sysconfig.get_config_var("EXT_SUFFIX"):
        return f"pure Python (compiled for {suffix}: make native)"
    package = Path(package_path[-1])
    for name, recorded in sources.items():
        source = package / f"{name}.py"
        try:
            same = digest(source) == recorded
        except OSError:
            same = False
        if not same:
            return f"pure Python ({source.name} changed since it was compiled: make native)"
    package_path.insert(0, str(build / "router" / "classify"))
    if str(build) not in sys.path:
        sys.path.append(str(build))  # the group's shared library, which every module imports
    return "compiled (mypyc)"
