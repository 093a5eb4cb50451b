"""Operators' files: the shipped config loads; a bad file is refused with file, line and reason."""

import shutil
import subprocess
import sys

import pytest

from router.operator_files.config import ConfigError, load_config
from tests.conftest import CONFIG_DIR, supportrouter


@pytest.fixture
def config_copy(tmp_path):
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    return target


def test_shipped_config_loads_and_routes_fraud_to_the_fraud_queue():
    config = load_config(CONFIG_DIR)
    assert config.queue_for("unauthorized_transaction") == "fraud"
    assert config.agent("admin").role == "supervisor"
    assert len(config.version) == 12


def test_unknown_key_is_refused_with_file_and_line(config_copy):
    path = config_copy / "routing.yaml"
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("  payments:"))
    lines.insert(at + 1, "    colour: blue")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(config_copy)
    [problem] = err.value.problems
    assert problem.file == "routing.yaml"
    assert problem.line == at + 2
    assert "queues.payments.colour" in problem.reason and "unknown key" in problem.reason


def test_every_problem_in_every_file_is_listed_at_once(config_copy):
    (config_copy / "routing.yaml").write_text(
        "version: 1\nqueues: {}\nroutes: []\ndefault_queue: nowhere\n"
    )
    (config_copy / "classifier.yaml").write_text(
        "version: 1\ncategories:\n  fees: {urgency: low}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(config_copy)
    text = str(err.value)
    assert "routing.yaml:4: default_queue: unknown queue 'nowhere'" in text
    assert (
        "classifier.yaml:3: categories.fees.[key]: Input should be 'unauthorized_transaction'"
        in text
    )
    assert "agents.yaml:11: agents.1.queues: agent li.na: unknown queue 'fraud'" in text


def test_yaml_syntax_error_names_the_line(config_copy):
    (config_copy / "agents.yaml").write_text("version: 1\nagents:\n  - username: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_config(config_copy)
    [problem] = err.value.problems
    assert problem.file == "agents.yaml" and problem.line in (3, 4)
    assert problem.reason.startswith("YAML syntax")


def test_invalid_regular_expression_is_refused(config_copy):
    path = config_copy / "classifier.yaml"
    path.write_text(
        path.read_text().replace("patterns: ['\\b[A-Z]\\d{3,5}\\b']", "patterns: ['(unclosed']")
    )
    with pytest.raises(ConfigError) as err:
        load_config(config_copy)
    assert "not a valid regular expression" in str(err.value)
    assert "classifier.yaml:" in str(err.value)


def test_invalid_utf8_is_refused_not_crashed(config_copy):
    (config_copy / "routing.yaml").write_bytes(b"version: 1\nqueues:\n  caf\xe9: {}\n")
    with pytest.raises(ConfigError) as err:
        load_config(config_copy)
    assert "routing.yaml: not valid UTF-8" in str(err.value)


def test_config_check_command_exits_1_and_prints_the_problems(config_copy):
    (config_copy / "routing.yaml").write_text(
        "version: 1\nqueues: {}\nroutes: []\ndefault_queue: x\nextra: 1\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "router.cli", "config", "check", str(config_copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "routing.yaml:5: extra: unknown key" in result.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "router.cli", "config", "check", str(CONFIG_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0 and "OK" in ok.stdout


def test_config_check_also_checks_the_channels_own_files(config_copy):
    path = config_copy / "voice.yaml"
    path.write_text(path.read_text() + "\nunexpected_key: 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "router.cli", "config", "check", str(config_copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "voice.yaml:" in result.stderr and "unexpected_key: unknown key" in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["simulate", "my card was stolen", "--channel", "sms"],
        ["eval", "rows.csv"],
        ["agent", "password", "admin"],
    ],
)
def test_every_command_refuses_a_bad_config_with_file_line_and_exit_2(
    config_copy, command, tmp_path
):
    (config_copy / "classifier.yaml").write_text("version: 1\ncategories: {}\nsurprise: true\n")
    (tmp_path / "rows.csv").write_text(
        "text,category\nmy card was stolen,unauthorized_transaction\n"
    )
    if command[0] in ("simulate", "eval"):
        command = [*command, "--config", str(config_copy)]
    result = supportrouter(*command, cwd=tmp_path, SUPPORTROUTER_CONFIG_DIR=str(config_copy))
    assert result.returncode == 2, result.stderr
    assert "config refused:" in result.stderr
    assert "classifier.yaml:3: surprise: unknown key" in result.stderr
    assert "Traceback" not in result.stderr
