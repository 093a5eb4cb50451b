"""The README's configuration reference is the one the settings model makes, and it explains
every variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from router.core import settings_reference
from router.core.channel_settings import Section
from router.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _expected_variable_count() -> int:
    count = 0
    for info in Settings.model_fields.values():
        kind = info.annotation
        nested = isinstance(kind, type) and issubclass(kind, BaseModel)
        count += len(kind.model_fields) if nested else 1  # type: ignore[union-attr]
    return count


def test_readme_holds_the_current_reference():
    held = settings_reference.in_readme((ROOT / "README.md").read_text(encoding="utf-8"))
    assert held is not None, "README.md lost the settings-reference markers"
    assert held == settings_reference.markdown(), (
        "README.md's settings table is out of date: run "
        "`supportrouter config reference --write README.md`"
    )


def test_every_variable_is_listed_once_with_a_meaning():
    entries = settings_reference.entries()
    names = [entry.variable for entry in entries]
    assert len(names) == len(set(names)) == _expected_variable_count()
    unexplained = [entry.variable for entry in entries if not entry.meaning.strip()]
    assert not unexplained, f"give these a description or a comment: {unexplained}"
    for info in Settings.model_fields.values():
        if isinstance(info.annotation, type) and issubclass(info.annotation, Section):
            assert set(info.annotation.env_names().values()) <= set(names)


def test_the_listed_variables_are_the_ones_read(monkeypatch):
    # A variable named in the table really sets the setting (one of each kind).
    monkeypatch.setenv("SUPPORTROUTER_PARTITIONS", "7")
    monkeypatch.setenv("SUPPORTROUTER_TOPICS__DLQ", "x.dlq")
    monkeypatch.setenv("SUPPORTROUTER_TWILIO_SEND_ATTEMPTS", "5")
    monkeypatch.setenv("SUPPORTROUTER_IMAP_BATCH", "9")
    names = {entry.variable for entry in settings_reference.entries()}
    assert {
        "SUPPORTROUTER_PARTITIONS",
        "SUPPORTROUTER_TOPICS__DLQ",
        "SUPPORTROUTER_TWILIO_SEND_ATTEMPTS",
        "SUPPORTROUTER_IMAP_BATCH",
    } <= names
    settings = Settings()
    assert settings.partitions == 7
    assert settings.topics.dlq == "x.dlq"
    assert settings.twilio.send_attempts == 5
    assert settings.email.imap_batch == 9


def test_write_replaces_only_the_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# x\n\nbefore\n{settings_reference.BEGIN}\nstale\n{settings_reference.END}\nafter\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "router.cli", "config", "reference", "--write", str(readme)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = readme.read_text(encoding="utf-8")
    assert "stale" not in text
    assert text.startswith("# x\n\nbefore\n") and text.endswith("after\n")
    assert settings_reference.in_readme(text) == settings_reference.markdown()
    readme.write_text("no markers\n", encoding="utf-8")
    refused = subprocess.run(
        [sys.executable, "-m", "router.cli", "config", "reference", "--write", str(readme)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert refused.returncode == 1 and "markers" in refused.stderr
