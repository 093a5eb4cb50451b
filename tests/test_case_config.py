"""The operators' files of cases and protective actions: `cases:` in routing.yaml, actions.yaml
and templates/protect.yaml load as shipped, and a bad one is refused with file, line and reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from router.core.envelope import Urgency
from router.operator_files.config import ConfigError, load_config
from tests.conftest import CONFIG_DIR


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    return target


def refused(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(config)
    return [str(p) for p in err.value.problems]


def test_the_shipped_files_join_reports_within_30_minutes_and_freeze_on_critical_fraud():
    config = load_config(CONFIG_DIR)
    assert config.routing.cases.window_minutes == 30
    freeze = config.actions.freeze
    assert freeze.enabled and freeze.categories == ["unauthorized_transaction"]
    assert freeze.urgency == Urgency.CRITICAL
    assert "{ticket}" in config.protect_templates.held.short.zh


def test_an_unknown_key_under_cases_is_refused_with_its_line(config_copy):
    path = config_copy / "routing.yaml"
    text = path.read_text()
    path.write_text(text.replace("  window_minutes: 30\n", "  window_minutes: 30\n  windw: 5\n"))
    line = path.read_text().splitlines().index("  windw: 5") + 1
    assert refused(config_copy) == [f"routing.yaml:{line}: cases.windw: unknown key"]


def test_a_negative_window_is_refused(config_copy):
    path = config_copy / "routing.yaml"
    path.write_text(path.read_text().replace("window_minutes: 30", "window_minutes: -5"))
    [problem] = refused(config_copy)
    assert problem.startswith("routing.yaml:") and "cases.window_minutes" in problem


def test_an_unknown_key_in_actions_yaml_is_refused_with_its_line(config_copy):
    path = config_copy / "actions.yaml"
    path.write_text(path.read_text() + "unfreeze_everyone: true\n")
    line = len(path.read_text().splitlines())
    assert refused(config_copy) == [f"actions.yaml:{line}: unfreeze_everyone: unknown key"]


def test_an_unknown_category_in_actions_yaml_is_refused(config_copy):
    path = config_copy / "actions.yaml"
    path.write_text(path.read_text().replace("[unauthorized_transaction]", "[fraudish]"))
    [problem] = refused(config_copy)
    assert problem.startswith("actions.yaml:") and "freeze.categories.0" in problem


def test_a_protect_template_left_out_is_refused(config_copy):
    path = config_copy / "templates" / "protect.yaml"
    text = path.read_text()
    path.write_text(text[: text.index("lifted:")])
    [problem] = refused(config_copy)
    assert problem.startswith("templates/protect.yaml:") and problem.endswith(
        "lifted: Field required"
    )
