"""config/voice.yaml: what callers hear, per language, and the menu's settings; the file as in force.

Its hot reload is the operators' files' one (router/policy/watcher.py FileWatch), looked at on
use: the first call after the file changed reads it again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal, TypeGuard, get_args

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from channels.twilio.addresses import E164
from router.observability.metrics import CONFIG_RELOADS
from router.operator_files.config import load_model_file
from router.policy.watcher import FileWatch, problems_of

log = structlog.get_logger("channels.twilio.voice")

Language = Literal["zh", "en"]


def is_language(value: str) -> TypeGuard[Language]:
    return value in get_args(Language)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VoiceTexts(_Strict):
    greeting: str
    menu: str
    reprompt: str
    fraud_report: str = Field(
        description="the message an agent gets when the caller presses the fraud key"
    )
    fraud_connecting: str
    fraud_flagged: str
    fraud_after_dial: str
    thanks: str
    voicemail_prompt: str
    voicemail_thanks: str
    voicemail_untranscribed: str


class VoiceLanguage(_Strict):
    say_language: str
    speech_language: str
    voice: str | None = None
    transcribe_voicemail: bool = False
    texts: VoiceTexts


class VoiceConfig(_Strict):
    version: int
    default_language: Language = "en"
    language_by_called_number: dict[str, Language] = Field(default_factory=dict)
    language_by_caller_prefix: dict[str, Language] = Field(default_factory=dict)
    fraud_key: str = Field("1", pattern=r"^[0-9*#]$")
    fraud_hotline: str | None = Field(None, pattern=E164.pattern)
    fraud_dial_timeout_seconds: int = Field(30, ge=5, le=600)
    gather_timeout_seconds: int = Field(6, ge=1, le=60)
    min_speech_confidence: float = Field(0.1, ge=0, le=1)
    voicemail_max_seconds: int = Field(120, ge=5, le=3600)
    languages: dict[Language, VoiceLanguage]

    @model_validator(mode="after")
    def _every_language_is_spoken(self) -> VoiceConfig:
        named = {
            self.default_language,
            *self.language_by_called_number.values(),
            *self.language_by_caller_prefix.values(),
        }
        missing = sorted(named - set(self.languages))
        if missing:
            raise ValueError(f"languages: no texts for {missing}")
        return self

    def language_for(self, caller: str, called: str) -> Language:
        if called in self.language_by_called_number:
            return self.language_by_called_number[called]
        prefixes = [p for p in self.language_by_caller_prefix if caller.startswith(p)]
        return (
            self.language_by_caller_prefix[max(prefixes, key=len)]
            if prefixes
            else self.default_language
        )


def load_voice_config(config_dir: Path | str) -> VoiceConfig:
    return load_model_file(Path(config_dir) / "voice.yaml", VoiceConfig, "voice.yaml")


class VoiceConfigFile:
    """voice.yaml as in force: read again, off the event loop, by the first call after it changes.

    A look at the file's inode, mtime and size per webhook is cheap; reading and checking it is
    not, so that happens only when one of them moved. A bad file is refused once per change, with
    file, line and reason, and the menu in force keeps answering.
    """

    def __init__(self, config_dir: Path | str):
        self.path = Path(config_dir) / "voice.yaml"
        # Stamped before reading: a change made while we read is seen next time.
        self._watch = FileWatch(lambda: [self.path], self._reload, name="voice:watch")
        self.config = load_voice_config(config_dir)

    async def current(self) -> VoiceConfig:
        await self._watch.check()
        return self.config

    async def _reload(self, reason: str) -> None:
        try:
            fresh = await asyncio.to_thread(load_voice_config, self.path.parent)
        except OSError as exc:
            problems = [f"{self.path.name}: cannot read: {exc.strerror or exc}"]
        except Exception as exc:
            problems = problems_of(exc)
        else:
            self.config = fresh
            CONFIG_RELOADS.labels(result="reloaded").inc()
            log.info("config.reloaded", file=self.path.name, reason=reason)
            return
        CONFIG_RELOADS.labels(result="refused").inc()
        log.error("config.refused", file=self.path.name, reason=reason, problems=problems)
