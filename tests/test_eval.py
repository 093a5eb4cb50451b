"""`supportrouter eval`: the metrics are right, the output is what operators and scripts expect."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from router.cli.evaluate import EvalFileError, Report, read_rows
from tests.conftest import CONFIG_DIR

JSON_KEYS = {
    "rows",
    "macro_f1",
    "per_category",
    "unauthorized_recall",
    "unauthorized_precision",
    "critical_recall",
    "seconds",
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
