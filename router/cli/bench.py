"""`supportrouter bench [OPTIONS]`: bench/throughput.py from the source tree, the same as
`make bench` (it starts the router and its load generators as processes of their own)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "throughput.py"


def command(args: argparse.Namespace) -> int:
    if not SCRIPT.exists():
        print(f"no {SCRIPT}: the bench runs from a source checkout", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, str(SCRIPT), *args.options])
