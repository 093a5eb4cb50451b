"""The configuration reference: every environment variable the settings read, made from the model.

`supportrouter config reference` prints it as Markdown; the README holds a copy between two
markers, and a test fails when the copy is out of date. A setting's meaning is its
`Field(description=...)`, else the comment on the line above the field (or at the end of its
line) in the source, so the code stays the one place where a setting is explained.
"""

from __future__ import annotations

import inspect
import io
import json
import re
import tokenize
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from router.core.channel_settings import Section
from router.core.settings import Settings

BEGIN = "<!-- settings-reference:begin (supportrouter config reference) -->"
END = "<!-- settings-reference:end -->"
_FIELD = re.compile(r"^\s*(\w+)\s*:")


@dataclass(frozen=True)
class Entry:
    variable: str
    default: str
    meaning: str


def _comments(model: type[BaseModel]) -> dict[str, str]:
    """Each field's comment in the class source: the lines just above it, or one at its end."""
    try:
        source = inspect.getsource(model)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comment_at: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comment_at[token.start[0]] = token.string.lstrip("#").strip()
    found: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        match = _FIELD.match(line)
        if not match or match.group(1) not in model.model_fields:
            continue
        above: list[str] = []
        previous = number - 1
        while previous in comment_at and lines[previous - 1].lstrip().startswith("#"):
            above.insert(0, comment_at[previous])
            previous -= 1
        text = " ".join(above) or comment_at.get(number, "")
        if text:
            found[match.group(1)] = text
    return found


def _default(info: Any) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    if isinstance(value, Path):
        return f"`{value}`"
    return f"`{value}`" if isinstance(value, str) else str(value)


def _entries(model: type[BaseModel], names: dict[str, str]) -> list[Entry]:
    comments = _comments(model)
    out = []
    for name, info in model.model_fields.items():
        meaning = info.description or comments.get(name, "")
        out.append(Entry(names[name], _default(info), meaning))
    return out


def entries() -> list[Entry]:
    """Every variable: the root model's, its nested models' (`__`), then each channel section's."""
    out: list[Entry] = []
    comments = _comments(Settings)
    for name, info in Settings.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, Section):
            continue
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            nested = {field: variable((name, field)) for field in kind.model_fields}
            out += _entries(kind, nested)
            continue
        meaning = info.description or comments.get(name, "")
        out.append(Entry(variable((name,)), _default(info), meaning))
    for info in Settings.model_fields.values():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, Section):
            out += _entries(kind, kind.env_names())
    return out


def refused(error: Mapping[str, Any]) -> str:
    """One line for one of pydantic's errors of the settings: the environment variable, what is
    wrong, and the value given (not a secret's, nor a URL's, which may hold a password)."""
    loc = error["loc"]
    line = f"{variable(loc)}: {error['msg']}"
    value = error.get("input")
    if error["type"] == "missing" or not isinstance(value, (str, int, float)):
        return line
    if "://" in str(value) or _secret(loc):
        return line
    return f"{line} (given: {value!r})"


def variable(loc: Sequence[int | str]) -> str:
    """The environment variable of a setting, from where pydantic found it wrong: ("partitions",)
    is SUPPORTROUTER_PARTITIONS, ("topics", "dlq") SUPPORTROUTER_TOPICS__DLQ, ("twilio",
    "auth_token") TWILIO_AUTH_TOKEN."""
    model, field = _model_and_field(loc)
    root = f"SUPPORTROUTER_{str(loc[0]).upper()}"
    if model is Settings:
        return root
    if issubclass(model, Section):
        return model.env_names().get(field, f"{model.env_prefix}{field.upper()}")
    return f"{root}__{field.upper()}"


def _model_and_field(loc: Sequence[int | str]) -> tuple[type[BaseModel], str]:
    """The model a setting is a field of (Settings, or a section or a nested model) and its name."""
    info = Settings.model_fields.get(str(loc[0]))
    kind = info.annotation if info is not None else None
    if len(loc) < 2 or not isinstance(kind, type) or not issubclass(kind, BaseModel):
        return Settings, str(loc[0])
    return kind, str(loc[1])


def _secret(loc: Sequence[int | str]) -> bool:
    model, field = _model_and_field(loc)
    info = model.model_fields.get(field)
    return info is not None and "SecretStr" in str(info.annotation)


def markdown() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for entry in entries():
        meaning = entry.meaning.replace("|", "\\|")
        rows.append(f"| `{entry.variable}` | {entry.default} | {meaning} |")
    return "\n".join(rows) + "\n"


def in_readme(readme: str) -> str | None:
    """The reference as the README holds it, between the markers (None: markers missing)."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        return None
    return readme[start + len(BEGIN) : end].strip("\n") + "\n"
