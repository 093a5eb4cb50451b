"""The top lines of a py-spy profile (`bench/throughput.py --profile FILE`, collapsed stacks):
where the router's samples were, by function, self and inclusive, per process.

    .venv/bin/python bench/profile_top.py var/profile.txt [--top 15]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

from options import whole

FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", "wt-throughput/", "tp-before/"):
        path = path.split(marker)[-1]
    return f"{match['function']} ({path})"


def summarize(text: str) -> tuple[int, Counter, Counter, Counter]:
    total, own, inclusive, processes = 0, Counter(), Counter(), Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        # py-spy nests a child's stacks under its parent's: the last process frame is the one
        process = next((f for f in reversed(frames) if f.startswith("process ")), "?")
        names = [short(f) for f in frames if not f.startswith(("process ", "thread "))]
        if not names:
            continue
        processes[process.split(":", 1)[-1].strip('"').split("python ")[-1]] += n
        total += n
        own[names[-1]] += n
        for name in set(names):
            inclusive[name] += n
    return total, own, inclusive, processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=whole(1, 10_000), default=15)
    args = parser.parse_args()
    total, own, inclusive, processes = summarize(args.profile.read_text())
    print(f"{total} samples")
    print("by process:")
    for name, n in processes.most_common():
        print(f"  {n / total:6.1%}  {name}")
    print("self (the function on top of the stack):")
    for name, n in own.most_common(args.top):
        print(f"  {n / total:6.1%}  {name}")
    print("inclusive, the router's own code:")
    mine = [(k, v) for k, v in inclusive.items() if "router/" in k or "channels/" in k]
    for name, n in sorted(mine, key=lambda kv: -kv[1])[: args.top]:
        print(f"  {n / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
