"""Prints, as JSON, what the classifier decides for every example of the config in each channel's
shape and for hostile text, and which build decided it (router/classify/native.py). Run as
`python -m tests.native_probe` by tests/test_native.py, once compiled and once from the sources."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from router.classify import NATIVE
from router.classify.redact import redact
from router.policy.rules import Rules

ROOT = Path(__file__).resolve().parent.parent

HOSTILE = [
    "",
    " ",
    "\x00\x01\x02",
    "\ud800 lone surrogate, my card was stolen",
    "ＭＹ　ＣＡＲＤ　ＷＡＳ　ＳＴＯＬＥＮ　１２３４",
    "我的驗證碼是 384920，支付密碼是 abc12345",
    "🙂" * 500,
    "transfer " * 20_000,
    "> quoted\n" * 3_000 + "someone took money from my wallet",
    "a\u0301" * 1_000,
]


def decisions(rules: Rules) -> list[dict[str, object]]:
    texts: list[tuple[str, str | None]] = []
    for category in rules.config.classifier.categories.values():
        for text in category.examples.all():
            texts += [
                (text, None),
                (text[:60], None),
                (text.replace(",", " ").lower(), None),
                (f"Hello,\n\n{text}\n\nThanks,\nSam\n\n> older reply about a refund\n", "Re: help"),
            ]
    texts += [(text, None) for text in HOSTILE]
    out: list[dict[str, object]] = []
    for text, subject in texts:
        clean = redact(text)
        out.append(
            {
                "redacted": clean.text,
                "lane": str(rules.lane(clean.text, subject)),
                "classification": rules.classify(clean.text, subject=subject).model_dump(
                    mode="json"
                ),
            }
        )
    return out


if __name__ == "__main__":
    rules = Rules(ROOT / "config")
    json.dump({"build": NATIVE, "decisions": decisions(rules)}, sys.stdout, ensure_ascii=True)
