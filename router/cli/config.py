"""`supportrouter config check [dir]`: every problem in the operators' files, with file, line
and reason, the router's and the channels' own (voice.yaml). `config reference [--write FILE]`:
every environment variable the router reads, as a Markdown table (the README's copy)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from router.core.settings import Settings
from router.operator_files.config import ConfigError, load_config


def _channel_config_problems(directory: Path) -> list:
    """Channels with operators' files of their own (voice.yaml) expose check_config(dir)."""
    import importlib

    from channels import REGISTRY

    problems = []
    for module_name in dict.fromkeys(target.partition(":")[0] for target in REGISTRY.values()):
        check = getattr(importlib.import_module(module_name), "check_config", None)
        if check is None:
            continue
        try:
            check(directory)
        except ConfigError as exc:
            problems += exc.problems
    return problems


def check(args: argparse.Namespace) -> int:
    directory = Path(args.dir or Settings().config_dir)
    problems, config = [], None
    try:
        config = load_config(directory)
    except ConfigError as exc:
        problems += exc.problems
    problems += _channel_config_problems(directory)
    if problems:
        print(ConfigError(problems), file=sys.stderr)
        print(f"{len(problems)} problem(s) in {directory}", file=sys.stderr)
        return 1
    assert config is not None  # no problem: load_config returned it
    print(
        f"{directory}: OK (rules version {config.version}; {len(config.routing.queues)} queues, "
        f"{len(config.classifier.categories)} categories, {len(config.agents.agents)} agents)"
    )
    return 0


def reference(args: argparse.Namespace) -> int:
    from router.core import settings_reference

    table = settings_reference.markdown()
    if not args.write:
        print(table, end="")
        return 0
    path = Path(args.write)
    text = path.read_text(encoding="utf-8")
    start, end = text.find(settings_reference.BEGIN), text.find(settings_reference.END)
    if start < 0 or end < start:
        print(
            f"{path}: no {settings_reference.BEGIN!r} … {settings_reference.END!r} markers",
            file=sys.stderr,
        )
        return 1
    head = text[: start + len(settings_reference.BEGIN)]
    path.write_text(head + "\n" + table + text[end:], encoding="utf-8")
    print(f"{path}: settings reference written ({table.count(chr(10)) - 2} variables)")
    return 0
