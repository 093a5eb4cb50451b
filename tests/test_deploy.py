"""Deploying: the locks cover pyproject.toml, the image is built from the runtime lock as a
non-root user, and docker-compose.yml follows the Compose Specification and makes a sound graph.

Docker does not run here, so the Dockerfile and the compose file are read as files: the compose
file against the Compose Specification's JSON schema (as check-jsonschema ships it, validated
with jsonschema), then its service graph by what the router needs.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from router.cli.main import build_parser
from router.core.settings import Topics

ROOT = Path(__file__).resolve().parent.parent
DEV_LOCK = ROOT / "requirements" / "dev.lock"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME_DEPENDENCIES = [Requirement(r) for r in PYPROJECT["dependencies"]]
TEST_DEPENDENCIES = [Requirement(r) for r in PYPROJECT["optional-dependencies"]["test"]]
# `supportrouter db upgrade|current|history` (Alembic migrations) is being added beside this file;
# until the parser has it, compose may name it and nothing else the parser lacks.
UPCOMING_COMMANDS = {("db", "upgrade"), ("db", "current"), ("db", "history")}


def lock_pins(lock: Path) -> dict[str, set[str]]:
    """Every version a lock pins for each name (a universal lock may pin two, by marker)."""
    pins: dict[str, set[str]] = {}
    for number, line in enumerate(lock.read_text().splitlines(), 1):
        if not line[:1].isalnum():
            continue
        requirement = Requirement(line.rstrip(" \\"))
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{lock.name}:{number}: not an exact pin: {line}"
        pins.setdefault(canonicalize_name(requirement.name), set()).add(specifier.version)
    return pins


def uncovered(requirements: list[Requirement], lock: Path) -> list[str]:
    pins = lock_pins(lock)
    problems = []
    for requirement in requirements:
        pinned = pins.get(canonicalize_name(requirement.name), set())
        if not pinned:
            problems.append(f"{requirement} is not in {lock.name}")
        elif not any(requirement.specifier.contains(v, prereleases=True) for v in pinned):
            problems.append(f"{requirement}: {lock.name} pins {', '.join(sorted(pinned))}")
    return problems


def test_the_dev_lock_pins_every_dependency_pyproject_names_within_its_range() -> None:
    problems = uncovered(RUNTIME_DEPENDENCIES + TEST_DEPENDENCIES, DEV_LOCK)
    assert not problems, "pyproject.toml changed without `make lock`:\n" + "\n".join(problems)


def test_the_runtime_lock_pins_every_runtime_dependency_within_its_range() -> None:
    problems = uncovered(RUNTIME_DEPENDENCIES, RUNTIME_LOCK)
    assert not problems, "pyproject.toml changed without `make lock`:\n" + "\n".join(problems)


def test_the_image_runs_the_versions_the_tests_ran() -> None:
    dev, runtime = lock_pins(DEV_LOCK), lock_pins(RUNTIME_LOCK)
    differ = {name: (versions, dev.get(name)) for name, versions in runtime.items()}
    differ = {name: pair for name, pair in differ.items() if pair[0] != pair[1]}
    assert not differ, f"runtime.lock and dev.lock disagree (run `make lock`): {differ}"


def test_the_runtime_lock_holds_no_test_tool() -> None:
    runtime = set(lock_pins(RUNTIME_LOCK))
    tools = {"pytest", "hypothesis", "playwright", "ruff", "mypy", "pip-audit", "uv"}
    assert not tools & runtime


def test_every_locked_file_is_checked_by_hash() -> None:
    for lock in (DEV_LOCK, RUNTIME_LOCK):
        entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text().split("\n", 2)[2])
        unhashed = [e.split()[0] for e in entries if e.strip() and "--hash=sha256:" not in e]
        assert not unhashed, f"{lock.name}: no hash for {unhashed}"


# The Dockerfile, read as instructions.


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(INSTRUCTION, arguments) per stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), " ".join(arguments.split())))
    return stages


def test_the_image_has_a_builder_stage_and_a_final_one() -> None:
    assert len(dockerfile_stages()) >= 2


def test_every_base_image_is_pinned_by_patch_version_and_digest() -> None:
    for stage in dockerfile_stages():
        base = stage[0][1].split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base), base


def test_the_final_stage_runs_as_an_unprivileged_user() -> None:
    users = [args for instruction, args in dockerfile_stages()[-1] if instruction == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]


def test_the_final_stage_has_a_health_check() -> None:
    checks = [args for instruction, args in dockerfile_stages()[-1] if instruction == "HEALTHCHECK"]
    assert checks and checks[-1] != "NONE"
    assert "CMD" in checks[-1]


def test_the_image_installs_the_runtime_lock_by_hash_and_nothing_for_tests() -> None:
    runs = [args for stage in dockerfile_stages() for i, args in stage if i == "RUN"]
    installs = [r for r in runs if "pip install" in r and "-r " in r]
    assert installs, "no `pip install -r <lock>` in the Dockerfile"
    for install in installs:
        assert "--require-hashes" in install and "runtime.lock" in install, install
    everything = (ROOT / "Dockerfile").read_text()
    assert "dev.lock" not in everything and "[test]" not in everything
    assert not re.search(r"apt-get install|build-essential|gcc", everything)


def test_the_build_context_takes_the_runtime_lock_and_leaves_the_dev_lock_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines and "!requirements/runtime.lock" in lines
    assert not any("dev.lock" in line for line in lines if line.startswith("!"))


# docker-compose.yml: the specification, then the graph.


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def spec_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_the_compose_file_follows_the_compose_specification() -> None:
    assert spec_errors(compose()) == []


def test_the_specification_check_refuses_a_wrong_dependency_condition() -> None:
    document = compose()
    document["services"]["gateway"]["depends_on"]["kafka"]["condition"] = "service_ready"
    assert any("depends_on" in error for error in spec_errors(document))


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def router_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items() if s.get("image", "").startswith("supportrouter")}


def one_shots() -> set[str]:
    return {n for n, s in services().items() if s.get("restart") == "no"}


def test_every_dependency_is_a_service_of_the_file() -> None:
    names = set(services())
    for name, service in services().items():
        missing = set(service.get("depends_on", {})) - names
        assert not missing, f"{name} depends on {missing}, which the file does not define"


def host_ports(spec: str) -> set[int]:
    """The host ports a short-syntax mapping takes (`8080-8089:8080` takes ten)."""
    parts = str(spec).split(":")
    if len(parts) < 2:
        return set()  # a container port alone: Docker picks a free host port
    host = parts[-2]
    low, _, high = host.partition("-")
    return set(range(int(low), int(high or low) + 1))


def test_no_two_services_take_the_same_host_port() -> None:
    taken: dict[int, str] = {}
    for name, service in services().items():
        for spec in service.get("ports", []):
            for port in host_ports(spec):
                assert port not in taken, f"{name} and {taken[port]} both take host port {port}"
                taken[port] = name


def test_the_gateway_can_be_scaled_without_a_host_port_clash() -> None:
    for spec in services()["gateway"]["ports"]:
        assert len(host_ports(spec)) > 1 or ":" not in str(spec), f"one fixed host port: {spec}"


def test_every_long_running_service_has_a_health_check() -> None:
    for name, service in services().items():
        if name in one_shots():
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"


def test_every_router_command_is_a_supportrouter_subcommand() -> None:
    for name, service in router_services().items():
        command = service["command"]
        try:
            build_parser().parse_args(command)
        except SystemExit:
            if tuple(command) not in UPCOMING_COMMANDS:
                pytest.fail(f"{name}: `supportrouter {' '.join(command)}` is not a command")


def test_the_four_services_start_after_the_topics_and_the_migration() -> None:
    commands = {n: s["command"] for n, s in router_services().items()}
    runs = {n for n, c in commands.items() if c[0] == "run"}
    assert {commands[n][1] for n in runs} == {"gateway", "classifier", "dispatcher", "sender"}
    assert commands["migrate"] == ["db", "upgrade"]
    for name in runs:
        depends = services()[name]["depends_on"]
        for step in ("migrate", "topics"):
            assert depends[step] == {"condition": "service_completed_successfully"}, name
    assert one_shots() == {"migrate", "topics"}


def test_the_topics_step_creates_every_router_topic_with_the_routers_counts() -> None:
    step = services()["topics"]["environment"]
    assert set(step["TOPICS"].split()) == set(Topics().all())
    for name in router_services():
        environment = services()[name]["environment"]
        assert environment["SUPPORTROUTER_PARTITIONS"] == step["PARTITIONS"], name
        assert environment["SUPPORTROUTER_REPLICATION_FACTOR"] == step["REPLICATION_FACTOR"]


def test_every_router_service_reads_config_read_only() -> None:
    for name, service in router_services().items():
        assert "./config:/app/config:ro" in service.get("volumes", []), name


@pytest.mark.parametrize("platform", ["x86_64-manylinux_2_36", "aarch64-manylinux_2_36"])
def test_every_runtime_pin_has_a_wheel_for_the_image(platform: str, tmp_path: Path) -> None:
    # The image installs with --only-binary=:all: (no compiler in it): resolve the runtime
    # dependencies, held to runtime.lock, from wheels alone for the base's platforms (Debian 12's
    # glibc 2.36), as PyPI serves them.
    uv = Path(sys.executable).with_name("uv")
    done = subprocess.run(
        [
            *(str(uv), "pip", "compile", str(ROOT / "pyproject.toml"), "--quiet"),
            *("--python-platform", platform, "--python-version", "3.11"),
            *("--only-binary", ":all:", "-c", str(RUNTIME_LOCK), "-o", str(tmp_path / "out")),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    wanted = lock_pins(RUNTIME_LOCK)
    for name, versions in lock_pins(tmp_path / "out").items():
        assert versions <= wanted[name], f"{name}: {versions} instead of {wanted[name]}"
