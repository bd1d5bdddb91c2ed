"""Text-dataset validation: schema, quality metrics, violations and the readable report."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from loopline.data.ingest import load_source
from loopline.data.validate import QualityRules, format_report, validate_text_dataset
from loopline.errors import ValidationFailed
from loopline.examples.sentiment.synthetic import generate_tweets

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def frame(texts: Sequence[object], labels: Sequence[object] | None = None) -> pd.DataFrame:
    data: dict[str, list[object]] = {"text": list(texts)}
    if labels is not None:
        data["label"] = list(labels)
    return pd.DataFrame(data)


def balanced(n: int = 40) -> pd.DataFrame:
    """``n`` distinct texts, half positive, half negative."""
    return frame([f"text number {i}" for i in range(n)], ["positive", "negative"] * (n // 2))


def failure(df: pd.DataFrame, **kwargs: object) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        validate_text_dataset(df, **kwargs)  # type: ignore[arg-type]
    return info.value


def checks(err: ValidationFailed) -> dict[str, int]:
    return {v["check"]: v["rows"] for v in err.report["violations"]}  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# real and generated data pass


def test_sentiment140_sample_passes_with_a_full_report() -> None:
    df = load_source(SHARED / "sentiment" / "sentiment140_train_sample")
    clean, report = validate_text_dataset(df)
    assert report["passed"] is True
    assert report["rows"] == 100_000 and len(clean) == 100_000
    assert report["label_counts"] == {"negative": 50_000, "positive": 50_000}
    assert report["label_fractions"] == {"negative": 0.5, "positive": 0.5}
    assert report["completeness"] == {"text": 1.0, "label": 1.0}
    assert report["empty_texts"] == 0
    assert report["duplicate_texts"] > 0  # retweets and spam
    assert report["encoding_problems"] > 0  # the source has some "Ã©"-style mojibake
    assert set(report["length"]) == {"min", "p5", "median", "p95", "max"}
    assert report["length"]["min"] <= report["length"]["median"] <= report["length"]["max"]
    assert report["violations"] == []
    assert any("duplicate" in w for w in report["warnings"])
    json.dumps(report)  # JSON-able as it is


def test_vader_ground_truth_passes() -> None:
    df = load_source(SHARED / "sentiment" / "vader" / "tweets_GroundTruth.txt")
    _, report = validate_text_dataset(df)
    assert report["label_counts"] == {"negative": 1268, "positive": 2824}


def test_synthetic_tweets_pass_and_are_deterministic() -> None:
    df = generate_tweets()
    assert len(df) == 4000 and list(df.columns) == ["text", "label"]
    clean, report = validate_text_dataset(df)
    assert report["passed"] and len(clean) == 4000
    fractions = report["label_fractions"]
    assert 0.4 < fractions["positive"] < 0.6
    assert 0 < report["duplicate_texts"] <= 0.02 * 4000
    assert df["text"].str.contains("@").any() and df["text"].str.contains("#").any()
    assert df["text"].str.contains("http").any()
    assert generate_tweets(n=300, seed=7).equals(generate_tweets(n=300, seed=7))
    assert not generate_tweets(n=300, seed=7).equals(generate_tweets(n=300, seed=8))


# ---------------------------------------------------------------------------------------------
# schema violations


def test_label_outside_the_set() -> None:
    df = balanced()
    df.loc[[1, 5, 9], "label"] = "meh"
    err = failure(df)
    assert "label outside {negative, positive} on 3 rows (values: 'meh')" in err.message
    assert err.message.startswith("validation failed: ")
    assert checks(err) == {"label_values": 3}
    assert err.report["passed"] is False
    assert err.hint and "label_map" in err.hint


def test_labels_none_allows_any_label() -> None:
    df = frame([f"t{i}" for i in range(20)], ["spam", "ham"] * 10)
    _, report = validate_text_dataset(df, labels=None)
    assert report["label_counts"] == {"ham": 10, "spam": 10}
    _, report = validate_text_dataset(df, labels=["spam", "ham"])
    assert report["passed"]


def test_missing_text_column() -> None:
    err = failure(frame(["x"]).rename(columns={"text": "tweet"}))
    assert "missing column 'text' (found: tweet)" in err.message
    assert checks(err) == {"columns": 1}


def test_null_and_non_string_texts() -> None:
    df = balanced()
    df["text"] = df["text"].astype(object)
    df.loc[0, "text"] = None
    df.loc[1, "text"] = 42
    err = failure(df)
    assert "text missing (null) on 1 row" in err.message
    assert "column 'text' should hold text" in err.message
    assert checks(err)["text_not_null"] == 1


def test_non_string_labels_are_reported() -> None:
    df = frame([f"t{i}" for i in range(20)], [0, 1] * 10)
    err = failure(df)
    assert "label_dtype" in checks(err) and "label_values" in checks(err)


# ---------------------------------------------------------------------------------------------
# quality rules


def test_too_few_rows() -> None:
    err = failure(balanced(4))
    assert "too few rows: 4 non-empty texts, expected at least 10" in err.message
    _, report = validate_text_dataset(balanced(4), rules=QualityRules(min_rows=2))
    assert report["passed"]


def test_a_few_empty_texts_are_dropped_with_a_warning() -> None:
    df = balanced(100)
    df.loc[[3, 7], "text"] = ["", "   \t"]
    clean, report = validate_text_dataset(df)
    assert report["empty_texts"] == 2 and len(clean) == 98
    assert clean.index.tolist() == list(range(98))
    assert any("empty text dropped" in w for w in report["warnings"])


def test_too_many_empty_texts() -> None:
    df = balanced(40)
    df.loc[:9, "text"] = ""
    err = failure(df)
    assert "empty or whitespace-only text on 10 rows (25.0% > max 5.0%)" in err.message
    assert checks(err) == {"empty_texts": 10}


def test_duplicates_warn_then_fail_above_the_threshold() -> None:
    df = balanced(40)
    df.loc[:4, "text"] = "same"
    _, report = validate_text_dataset(df)
    assert report["duplicate_texts"] == 4
    assert any("duplicate text on 4 rows" in w for w in report["warnings"])
    df.loc[:29, "text"] = "same"
    err = failure(df)
    assert checks(err) == {"duplicate_texts": 29}
    _, report = validate_text_dataset(df, rules=QualityRules(max_duplicate_fraction=0.9))
    assert report["passed"]


def test_conflicting_labels_are_counted() -> None:
    df = balanced(40)
    df.loc[[0, 1], "text"] = "same words"  # rows 0 and 1 carry different labels
    _, report = validate_text_dataset(df)
    assert report["conflicting_labels"] == 1


def test_encoding_problems_are_found() -> None:
    df = balanced(40)
    df.loc[0, "text"] = "cafÃ© time"  # UTF-8 read as Latin-1
    df.loc[1, "text"] = "donâ€™t"  # UTF-8 read as Windows-1252
    df.loc[2, "text"] = "lost \ufffd byte"
    df.loc[3, "text"] = "bell\x07"
    df.loc[4, "text"] = "tabs\tand\nnewlines are fine, café too"
    err = failure(df)
    assert checks(err) == {"encoding": 4}
    kinds = err.report["encoding_problem_kinds"]
    assert kinds == {"replacement_char": 1, "mojibake": 2, "control_chars": 1}
    rules = QualityRules(max_encoding_problem_fraction=0.2)
    _, report = validate_text_dataset(df, rules=rules)
    assert report["encoding_problems"] == 4
    assert any("encoding problems on 4 rows" in w for w in report["warnings"])


def test_single_class_warns_unless_labels_are_required() -> None:
    df = frame([f"t{i}" for i in range(20)], ["positive"] * 20)
    _, report = validate_text_dataset(df)
    assert any("single class" in w for w in report["warnings"])
    err = failure(df, rules=QualityRules(require_labels=True))
    assert "a single class" in err.message


def test_require_labels_rejects_unlabelled_rows() -> None:
    df = balanced(40)
    df.loc[[0, 1], "label"] = None
    _, report = validate_text_dataset(df)
    assert report["unlabelled"] == 2 and report["passed"]
    err = failure(df, rules=QualityRules(require_labels=True))
    assert checks(err) == {"labels_required": 2}
    err = failure(df[["text"]], rules=QualityRules(require_labels=True))
    assert "no label column" in err.message


def test_rare_class_is_a_violation() -> None:
    df = frame([f"t{i}" for i in range(200)], ["positive"] * 199 + ["negative"])
    err = failure(df)
    assert "class 'negative' has 1 row (0.5% of labelled rows < min 1.0%)" in err.message


def test_every_failed_check_is_listed() -> None:
    df = frame(["", "x", "x", "x"], ["meh", "positive", "negative", "positive"])
    err = failure(df)
    assert {"label_values", "min_rows", "empty_texts", "duplicate_texts"} <= set(checks(err))
    assert err.message.count(";") >= 3


def test_length_statistics_in_characters() -> None:
    df = frame(["a" * n for n in range(1, 21)], ["positive", "negative"] * 10)
    _, report = validate_text_dataset(df)
    assert report["length"] == {"min": 1, "p5": 1.95, "median": 10.5, "p95": 19.05, "max": 20}


def test_rules_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        QualityRules().min_rows = 1  # type: ignore[misc]


def test_format_report_is_readable() -> None:
    df = balanced(40)
    df.loc[0, "text"] = "text number 1"
    _, report = validate_text_dataset(df)
    text = format_report(report)
    assert "rows: 40" in text and "passed: yes" in text
    assert "labels: negative 20 (50.0%), positive 20 (50.0%)" in text
    assert "text length (chars): min" in text
    assert "warnings:" in text and "duplicate text on 1 row" in text
    df.loc[1, "label"] = "meh"
    text = format_report(failure(df).report)
    assert "passed: NO" in text and "violations:" in text and "[label_values]" in text
