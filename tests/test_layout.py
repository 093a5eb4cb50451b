"""The house rules of the layout, read from the imports themselves (docs/architecture.md):
a package imports only packages below it, and no modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first; a name covers its submodules, "=name" only itself. `channels` alone is the
# registry (names only, imports nothing), so the settings can name the channels; `channels.*`
# are the adapters.
LAYERS = [
    ("router.core", "=channels"),
    ("router.observability",),
    ("router.operator_files",),
    ("router.classify",),
    ("router.routing",),
    ("router.store",),
    ("router.bus",),
    ("router.policy",),
    ("channels.base", "channels.chat", "channels.email", "channels.telegram", "channels.twilio"),
    ("router.services",),
    ("router.app",),
    ("router.cli",),
]


def layer_of(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if prefix.startswith("="):
                if module == prefix[1:]:
                    return rank
            elif module == prefix or module.startswith(prefix + "."):
                return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md")


def modules() -> dict[str, Path]:
    found = {}
    for package in ("router", "channels"):
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """Every module of ours this file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, set(found)) - {name} for name, path in found.items()}


def test_every_module_belongs_to_a_layer():
    for name in modules():
        if name not in ("router", "channels"):
            layer_of(name)


def test_no_package_imports_a_package_above_it():
    upward = [
        f"{importer} imports {imported}"
        for importer, targets in graph().items()
        if importer not in ("router",)
        for imported in targets
        if imported != "router" and layer_of(imported) > layer_of(importer)
    ]
    assert upward == []


def test_no_modules_import_each_other_in_a_circle():
    edges = graph()
    cycles, done = [], set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append(path[path.index(node) :] + [node])
            return
        if node in done:
            return
        for target in sorted(edges.get(node, ())):
            visit(target, path + [node])
        done.add(node)

    for name in sorted(edges):
        visit(name, [])
    # a package's __init__ naming its own modules is not a cycle of code
    cycles = [
        c for c in cycles if not any(c[i + 1].startswith(c[i] + ".") for i in range(len(c) - 1))
    ]
    assert cycles == []


MAX_LINES = 420


def test_no_module_is_longer_than_one_sitting():
    lengths = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in modules().values()
    }
    offenders = [f"{name}: {n} lines" for name, n in sorted(lengths.items()) if n > MAX_LINES]
    assert offenders == [], f"longer than {MAX_LINES} lines: split them\n" + "\n".join(offenders)


def test_the_checks_above_can_fail():
    """A lower module importing a higher one is seen (guards the guard)."""
    assert layer_of("router.services.gateway") > layer_of("router.store.conversations")
    assert (
        layer_of("channels")
        < layer_of("router.observability.metrics")
        < layer_of("channels.chat.adapter")
    )


# Outside router/store only these parts of SQLAlchemy: its error types (telling an outage from a
# bad record) and URL parsing (where the journal goes). No statement is built anywhere else.
SQL_OUTSIDE_STORE = {"sqlalchemy.exc", "sqlalchemy.engine"}


def test_all_sql_lives_in_the_store_package():
    outside = []
    for name, path in modules().items():
        if name.startswith("router.store"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                used = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                used = [node.module]
            else:
                continue
            outside += [
                f"{name}: {module}"
                for module in used
                if module.split(".")[0] == "sqlalchemy" and module not in SQL_OUTSIDE_STORE
            ]
    assert outside == [], "SQL belongs in router/store:\n" + "\n".join(outside)
