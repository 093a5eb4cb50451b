"""`supportrouter eval`: the metrics are right, the output is what operators and scripts expect."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from router.cli.evaluate import EvalFileError, Report, read_phenomena, read_rows
from tests.conftest import CONFIG_DIR

JSON_KEYS = {
    "rows",
    "macro_f1",
    "per_category",
    "unauthorized_recall",
    "unauthorized_precision",
    "critical_recall",
    "seconds",
    "by_file",
    "by_language",
    "by_channel",
    "by_phenomenon",
}
SLICE_KEYS = {
    "rows",
    "macro_f1",
    "unauthorized_recall",
    "unauthorized_precision",
    "critical_recall",
}


def _report(gold, predicted, gold_urgency=None, predicted_urgency=None) -> Report:
    return Report(
        rows=len(gold),
        seconds=0.0,
        gold=gold,
        predicted=predicted,
        gold_urgency=gold_urgency or [None] * len(gold),
        predicted_urgency=predicted_urgency or ["low"] * len(gold),
        has_urgency=gold_urgency is not None,
    )


def test_precision_recall_and_f1_per_category_and_macro_f1_over_the_categories_present():
    gold = ["unauthorized_transaction"] * 4 + ["general"] * 4
    predicted = (
        ["unauthorized_transaction"] * 3
        + ["general"]
        + ["general"] * 2
        + ["unauthorized_transaction", "data_loss"]
    )
    report = _report(gold, predicted)
    fraud = report.per_category["unauthorized_transaction"]
    assert (fraud["precision"], fraud["recall"], fraud["support"]) == (0.75, 0.75, 4)
    general = report.per_category["general"]
    assert general["precision"] == pytest.approx(2 / 3, abs=1e-4) and general["recall"] == 0.5
    assert general["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5), abs=1e-4)
    # data_loss was predicted but is not in the file: it is not averaged in.
    assert set(report.per_category) == {"unauthorized_transaction", "general"}
    assert report.macro_f1 == pytest.approx((0.75 + general["f1"]) / 2, abs=1e-4)
    assert report.unauthorized_recall == 0.75 and report.unauthorized_precision == 0.75


def test_the_confusion_matrix_counts_expected_against_predicted():
    report = _report(["general", "general", "data_loss"], ["general", "data_loss", "data_loss"])
    labels, counts = report.confusion()
    assert labels == ["data_loss", "general"]
    assert counts[("general", "data_loss")] == 1 and counts[("data_loss", "data_loss")] == 1


def test_critical_recall_counts_only_rows_marked_critical_and_is_null_without_urgency():
    report = _report(
        ["unauthorized_transaction"] * 3,
        ["unauthorized_transaction"] * 3,
        gold_urgency=["critical", "critical", "low"],
        predicted_urgency=["critical", "high", "critical"],
    )
    assert report.critical_recall == 0.5
    assert _report(["general"], ["general"]).critical_recall is None


def test_without_fraud_rows_fraud_recall_is_null_and_a_false_alarm_gives_zero_precision():
    assert _report(["general"], ["general"]).unauthorized_recall is None
    assert _report(["general"], ["general"]).unauthorized_precision is None
    assert _report(["general"], ["unauthorized_transaction"]).unauthorized_precision == 0.0


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("message,label\nhi,general\n", "missing column(s) text, category"),
        ("text,category\nhello,fees\n", ":2: unknown category 'fees'"),
        ("text,category,urgency\nhello,general,urgent\n", ":2: unknown urgency 'urgent'"),
        ("text,category,channel\nhello,general,fax\n", ":2: unknown channel 'fax'"),
        ("text,category\n,general\n", ":2: empty text"),
        ("text,category\n", "no rows to evaluate"),
        ('text,category\n"hello"x,general\n', ":2: malformed CSV"),
        ("text,category\nhello,general,extra\n", ":2: more fields than columns"),
    ],
)
def test_a_bad_file_is_refused_with_the_line_and_the_reason(tmp_path, content, reason):
    path = tmp_path / "bad.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EvalFileError) as err:
        read_rows(path)
    assert reason in str(err.value)


def test_multi_line_quoted_texts_and_a_byte_order_mark_are_read(tmp_path):
    path = tmp_path / "mail.csv"
    path.write_bytes(
        '\ufefftext,category,channel\n"Hello,\n\nmy card was used\n",unauthorized_transaction,email\n'.encode()
    )
    [row] = read_rows(path)
    assert row.text.startswith("Hello,") and "my card was used" in row.text
    assert row.channel == "email" and row.line == 2


def _eval_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "router.cli", "eval", *args, "--config", str(CONFIG_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def labelled_csv(tmp_path):
    path = tmp_path / "own.csv"
    path.write_text(
        "text,category,urgency,channel\n"
        "someone took 500 out of my wallet and it was not me,unauthorized_transaction,critical,sms\n"
        "有人用我的钱包转走了三千块，不是我转的,unauthorized_transaction,critical,chat\n"
        "what does it cost to send money abroad,general,low,chat\n"
        "我忘记支付密码了，怎么重置,password_reset,normal,telegram\n",
        encoding="utf-8",
    )
    return path


def test_eval_json_prints_one_object_with_exactly_the_documented_keys(labelled_csv):
    result = _eval_cli(str(labelled_csv), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == JSON_KEYS
    assert report["by_file"] == {} and report["by_phenomenon"] == {}
    assert set(report["by_channel"]) == {"sms", "chat", "telegram"}
    assert all(set(s) == SLICE_KEYS for s in report["by_channel"].values())
    assert report["rows"] == 4
    assert set(report["per_category"]) == {"unauthorized_transaction", "general", "password_reset"}
    assert set(report["per_category"]["general"]) == {"precision", "recall", "f1", "support"}
    assert report["unauthorized_recall"] == 1.0 and report["critical_recall"] == 1.0
    assert isinstance(report["seconds"], float)


def test_eval_text_shows_per_category_scores_macro_f1_confusion_and_the_fraud_figures(labelled_csv):
    result = _eval_cli(str(labelled_csv))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for expected in (
        "precision",
        "recall",
        "f1",
        "support",
        "macro-F1",
        "confusion matrix",
        "unauthorized_transaction recall",
        "unauthorized_transaction precision",
        "critical-urgency recall",
    ):
        assert expected in out


def test_eval_exits_2_with_the_reason_on_a_bad_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text\nhello\n", encoding="utf-8")
    result = _eval_cli(str(path))
    assert result.returncode == 2
    assert "missing column(s) category" in result.stderr
    assert _eval_cli(str(tmp_path / "absent.csv")).returncode == 2


def test_a_file_that_is_not_utf8_is_refused_with_the_line_of_the_bad_byte(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("text,category\nhello,general\ncaf\u00e9,general\n".encode("latin-1"))
    with pytest.raises(EvalFileError, match=r"latin1.csv:3: not valid UTF-8"):
        read_rows(path)


def _tagged(rows: list[tuple[str, str, str, str]]) -> Report:
    """A report over (gold, predicted, language, channel) rows."""
    return Report(
        rows=len(rows),
        seconds=0.0,
        gold=[r[0] for r in rows],
        predicted=[r[1] for r in rows],
        gold_urgency=[None] * len(rows),
        predicted_urgency=["low"] * len(rows),
        has_urgency=False,
        files=["a.csv"] * 2 + ["b.csv"] * (len(rows) - 2),
        languages=[r[2] for r in rows],
        channels=[r[3] for r in rows],
        phenomena=[("negation", "short"), ("short",), (), ("negation",)],
    )


FRAUD_ROWS = [
    ("unauthorized_transaction", "unauthorized_transaction", "zh", "sms"),
    ("general", "unauthorized_transaction", "zh-Hant", "sms"),
    ("general", "general", "en", "chat"),
    ("unauthorized_transaction", "general", "zh-Hant", "email"),
]


def test_each_language_channel_and_file_is_scored_on_its_own_rows():
    report = _tagged(FRAUD_ROWS)
    slices = report.breakdowns()
    hant = slices["by_language"]["zh-Hant"]
    # zh-Hant: one false fraud alarm, one missed fraud, nothing right.
    assert hant.rows == 2 and hant.unauthorized_recall == 0.0
    assert hant.unauthorized_precision == 0.0 and hant.macro_f1 == 0.0
    assert slices["by_language"]["zh"].macro_f1 == 1.0
    sms = slices["by_channel"]["sms"]
    assert sms.rows == 2 and sms.unauthorized_precision == 0.5 and sms.unauthorized_recall == 1.0
    assert {f: r.rows for f, r in slices["by_file"].items()} == {"a.csv": 2, "b.csv": 2}


def test_a_row_with_several_phenomena_counts_in_each_and_an_untagged_row_in_none():
    slices = _tagged(FRAUD_ROWS).breakdowns()["by_phenomenon"]
    assert {tag: r.rows for tag, r in slices.items()} == {"negation": 2, "short": 2}
    assert slices["negation"].unauthorized_recall == 0.5


def test_a_phenomena_file_without_its_columns_or_with_an_id_twice_is_refused(tmp_path):
    path = tmp_path / "tags.csv"
    path.write_text("row,tags\nx,short\n", encoding="utf-8")
    with pytest.raises(EvalFileError, match=r"tags.csv:1: missing column\(s\) id, phenomena"):
        read_phenomena(path)
    path.write_text("id,phenomena\nr1,short\nr1,typo\n", encoding="utf-8")
    with pytest.raises(EvalFileError, match=r"tags.csv:3: id 'r1' listed twice"):
        read_phenomena(path)
    path.write_text("id,phenomena\nr1,short typo\n", encoding="utf-8")
    assert read_phenomena(path) == {"r1": ("short", "typo")}


@pytest.fixture
def two_files(tmp_path):
    first = tmp_path / "first.csv"
    first.write_text(
        "id,text,category,urgency,channel\n"
        "r1,my wallet paid a shop I never visited,unauthorized_transaction,critical,sms\n"
        "r2,how do I change the language of the app,general,low,chat\n",
        encoding="utf-8",
    )
    second = tmp_path / "second.csv"
    second.write_text(
        "id,text,category,urgency,channel\n"
        "r3,有人用我的錢包轉走了兩千塊，不是我轉的,unauthorized_transaction,critical,whatsapp\n"
        "r4,忘記支付密碼了，點樣重設,password_reset,normal,telegram\n"
        "r5,转账一直显示处理中，钱没到,transaction_failed,high,email\n",
        encoding="utf-8",
    )
    tags = tmp_path / "tags.csv"
    tags.write_text("id,phenomena\nr1,story\nr3,story traditional\nr4,traditional\n")
    return first, second, tags


def test_eval_scores_several_files_apart_and_together_with_every_breakdown(two_files):
    first, second, tags = two_files
    result = _eval_cli(str(first), str(second), "--phenomena", str(tags), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 5
    assert {f: s["rows"] for f, s in report["by_file"].items()} == {str(first): 2, str(second): 3}
    # No language column: Traditional characters make a row zh-Hant.
    assert report["by_language"]["zh-Hant"]["rows"] == 2
    assert report["by_language"]["en"]["rows"] == 2
    assert {c: s["rows"] for c, s in report["by_channel"].items()} == {
        "sms": 1,
        "chat": 1,
        "whatsapp": 1,
        "telegram": 1,
        "email": 1,
    }
    assert {t: s["rows"] for t, s in report["by_phenomenon"].items()} == {
        "story": 2,
        "traditional": 2,
    }
    assert result.stderr == "", "no progress bar when stderr is not a terminal"


def test_eval_draws_a_progress_bar_on_stderr_when_asked(two_files):
    first, second, _ = two_files
    result = _eval_cli(str(first), str(second), "--progress")
    assert result.returncode == 0, result.stderr
    assert "5/5" in result.stderr and "#" in result.stderr
    assert "file" in result.stdout and "language" in result.stdout and "channel" in result.stdout


def test_eval_names_the_file_and_line_of_a_bad_row_in_the_second_file(two_files, tmp_path):
    first, _, _ = two_files
    bad = tmp_path / "bad.csv"
    bad.write_text("text,category\nfine,general\nnot fine,fees\n", encoding="utf-8")
    result = _eval_cli(str(first), str(bad))
    assert result.returncode == 2
    assert f"{bad}:3: unknown category 'fees'" in result.stderr
