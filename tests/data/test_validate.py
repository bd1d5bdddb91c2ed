"""Text-dataset validation: schema, quality metrics, violations and the readable report."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from loopline.data.ingest import load_source
from loopline.data.tables import read_table_source
from loopline.data.validate import (
    ColumnRule,
    QualityRules,
    TableSchema,
    format_report,
    validate_table,
    validate_text_dataset,
)
from loopline.errors import DataError, ValidationFailed
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


# ---------------------------------------------------------------------------------------------
# tables: the fraud handbook's April 2018 transactions

FRAUD_SCHEMA = {
    "columns": {
        "TRANSACTION_ID": {"dtype": "int", "nullable": False},
        "TX_DATETIME": {"dtype": "datetime", "nullable": False},
        "CUSTOMER_ID": {"dtype": "int", "nullable": False, "min": 0},
        "TERMINAL_ID": {"dtype": "int", "nullable": False, "min": 0},
        "TX_AMOUNT": {"dtype": "float", "nullable": False, "min": 0},
        "TX_TIME_SECONDS": {"dtype": "int", "min": 0},
        "TX_TIME_DAYS": {"dtype": "number", "min": 0, "max": 30},
        "TX_FRAUD": {"dtype": "int", "allowed": [0, 1]},
        "TX_FRAUD_SCENARIO": {"dtype": "int", "allowed": [0, 1, 2, 3]},
    },
    "unique": ["TRANSACTION_ID"],
    "min_rows": 100_000,
    "strict": True,
}


@functools.cache
def _fraud(path: Path) -> pd.DataFrame:
    return read_table_source(path)


@pytest.fixture
def fraud(shared_data: Path) -> pd.DataFrame:
    path = shared_data / "fraud" / "fraud_handbook_simulated" / "transactions_2018-04.csv.gz"
    return _fraud(path).copy()


def table_failure(df: pd.DataFrame, schema: object = None, **kwargs: float) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        validate_table(df, schema, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_fraud_month_passes_its_schema(fraud: pd.DataFrame) -> None:
    checked, report = validate_table(fraud, FRAUD_SCHEMA)
    assert checked is fraud  # returned unchanged
    assert report["kind"] == "table" and report["passed"] is True
    assert report["rows"] == 288_062 and report["columns"] == 9
    assert report["violations"] == [] and report["warnings"] == []
    assert report["completeness"] == dict.fromkeys(fraud.columns, 1.0)
    assert report["missing_values"] == dict.fromkeys(fraud.columns, 0)
    assert report["duplicate_rows"] == 0 and report["constant_columns"] == []
    assert report["dtypes"]["TX_AMOUNT"] == "float64"
    json.dumps(report)
    text = format_report(report)
    assert "rows: 288,062    columns: 9    passed: yes" in text
    assert "completeness: every column complete" in text


def test_negative_amount(fraud: pd.DataFrame) -> None:
    fraud.loc[[10, 20, 30], "TX_AMOUNT"] = [-1.0, -2.5, -1.0]
    err = table_failure(fraud, FRAUD_SCHEMA)
    assert table_checks(err) == {"TX_AMOUNT_min": 3}
    assert "TX_AMOUNT below min 0 on 3 rows (values: -1.0, -2.5)" in err.message
    violation = err.report["violations"][0]  # type: ignore[index]
    assert violation["column"] == "TX_AMOUNT" and violation["examples"] == [-1.0, -2.5]


def test_null_ids(fraud: pd.DataFrame) -> None:
    fraud["TRANSACTION_ID"] = fraud["TRANSACTION_ID"].astype("float64")
    fraud.loc[[0, 5], "TRANSACTION_ID"] = None
    err = table_failure(fraud, FRAUD_SCHEMA)
    # A missing value turns the ids into floats: still whole numbers, so the dtype passes.
    assert table_checks(err) == {"TRANSACTION_ID_not_null": 2}
    assert "TRANSACTION_ID missing (null) on 2 rows" in err.message


def test_duplicate_transaction_id(fraud: pd.DataFrame) -> None:
    fraud.loc[100, "TRANSACTION_ID"] = fraud.loc[99, "TRANSACTION_ID"]
    err = table_failure(fraud, FRAUD_SCHEMA)
    assert table_checks(err) == {"TRANSACTION_ID_unique": 1}
    assert "TRANSACTION_ID not unique: 1 row repeats an earlier value (values: 99)" in err.message


def test_wrong_dtype(fraud: pd.DataFrame) -> None:
    fraud["TX_AMOUNT"] = fraud["TX_AMOUNT"].astype("str")
    err = table_failure(fraud, FRAUD_SCHEMA)
    assert table_checks(err) == {"TX_AMOUNT_dtype": 288_062}
    assert "column 'TX_AMOUNT' should hold float values, found str on 288,062 rows" in err.message


def test_missing_column(fraud: pd.DataFrame) -> None:
    err = table_failure(fraud.drop(columns=["TX_FRAUD"]), FRAUD_SCHEMA)
    assert table_checks(err) == {"columns": 288_062}
    assert "missing column 'TX_FRAUD' (found: TRANSACTION_ID, TX_DATETIME" in err.message


def test_every_broken_rule_is_reported_at_once(fraud: pd.DataFrame) -> None:
    fraud.loc[3, "TX_AMOUNT"] = -5.0
    fraud.loc[4, "TX_FRAUD"] = 2
    fraud.loc[7, "TRANSACTION_ID"] = 6
    fraud["extra"] = 1
    err = table_failure(fraud.drop(columns=["TERMINAL_ID"]), FRAUD_SCHEMA)
    assert table_checks(err) == {
        "columns": 288_062,
        "extra_columns": 288_062,
        "TRANSACTION_ID_unique": 1,
        "TX_AMOUNT_min": 1,
        "TX_FRAUD_allowed": 1,
    }
    assert "TX_FRAUD outside {0, 1} on 1 row (values: 2)" in err.message
    assert "unexpected column 'extra' (the schema is strict)" in err.message
    assert err.hint is not None and "drop the duplicates" in err.hint
    json.dumps(err.report)
    text = format_report(err.report)
    assert "passed: NO" in text and "[TX_FRAUD_allowed] TX_FRAUD outside {0, 1}" in text
    assert "constant columns: extra" in text


def table_checks(err: ValidationFailed) -> dict[str, int]:
    return {v["check"]: v["rows"] for v in err.report["violations"]}  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# tables: quality checks without a schema, schema rules, from_dict


def test_quality_checks_need_no_schema() -> None:
    df = pd.DataFrame(
        {
            "id": range(10),
            "empty": [None] * 10,
            "sparse": [1.0] + [None] * 9,
            "country": ["BE"] * 10,
        }
    )
    err = table_failure(df)
    assert table_checks(err) == {"empty_empty": 10, "sparse_missing": 9}
    assert "column 'empty' is empty: every value is missing" in err.message
    assert "sparse missing on 9 rows (90.0% > max 50.0%)" in err.message
    assert err.report["constant_columns"] == ["country"]
    assert any("'country' is constant ('BE'" in w for w in report_warnings(err))
    _, report = validate_table(df, max_missing_share=1.0)
    assert report["passed"] and report["completeness"]["sparse"] == 0.1
    assert any("'empty' is empty" in w for w in report["warnings"])


def test_duplicate_rows_warn_then_fail() -> None:
    df = pd.DataFrame({"a": [1, 1, 2, 3], "b": ["x", "x", "y", "z"]})
    _, report = validate_table(df)
    assert report["duplicate_rows"] == 1
    assert "duplicate rows: 1 row repeats an earlier row (25.0%)" in report["warnings"]
    err = table_failure(df, max_duplicate_share=0.1)
    assert table_checks(err) == {"duplicate_rows": 1}


def test_empty_frame_and_min_rows() -> None:
    err = table_failure(pd.DataFrame({"a": pd.Series([], dtype="int64")}))
    assert table_checks(err) == {"min_rows": 0}
    assert "too few rows: no rows, expected at least 1" in err.message
    err = table_failure(pd.DataFrame({"a": [1, 2]}), {"min_rows": 3})
    assert "too few rows: 2 rows, expected at least 3" in err.message


def test_dtypes_of_each_kind() -> None:
    df = pd.DataFrame(
        {
            "i": [1, 2, None],  # float with NaN: still whole numbers
            "f": [1, 2, 3],  # ints are valid floats
            "s": ["a", "b", "c"],
            "b": [True, False, True],
            "d": pd.to_datetime(["2018-04-01", "2018-04-02", None]),
            "c": pd.Categorical(["x", "y", "x"]),
            "o": pd.Series([1, "two", 3.5], dtype=object),
        }
    )
    ok = {"i": "int", "f": "float", "s": "str", "b": "bool", "d": "datetime", "c": "category"}
    _, report = validate_table(df, {"columns": {k: {"dtype": v} for k, v in ok.items()}})
    assert report["passed"]
    wrong = {"s": "int", "b": "number", "d": "str", "o": "number", "f": "datetime"}
    err = table_failure(df, {"columns": {k: {"dtype": v} for k, v in wrong.items()}})
    assert table_checks(err) == {
        "s_dtype": 3,
        "b_dtype": 3,
        "d_dtype": 2,
        "o_dtype": 1,
        "f_dtype": 3,
    }
    assert "column 'o' should hold number values, found object on 1 row (values: 'two')" in (
        err.message
    )
    assert err.hint is not None and "parse_dates" in err.hint  # the datetime hint


def test_range_on_text_and_combined_key() -> None:
    df = pd.DataFrame({"customer": [1, 1, 2, 1], "day": ["mon", "tue", "mon", "mon"]})
    err = table_failure(df, {"columns": {"day": {"max": 3}}, "unique": ["customer", "day"]})
    checks = table_checks(err)
    assert checks == {"day_dtype": 4, "customer+day_unique": 1}
    assert "(customer, day) not unique: 1 row repeats an earlier combination" in err.message
    assert "min/max rules but holds str values" in err.message


def test_schema_from_dict_and_its_errors() -> None:
    schema = TableSchema.from_dict(
        {
            "columns": {"amount": {"dtype": "float", "min": 0, "allowed": [1, 2]}, "id": None},
            "unique": "id",
        }
    )
    assert schema.columns["amount"] == ColumnRule(dtype="float", min=0, allowed=(1, 2))
    assert schema.columns["id"] == ColumnRule() and schema.unique == ("id",)
    assert TableSchema.from_dict({"columns": ["a", "b"]}).columns == {
        "a": ColumnRule(),
        "b": ColumnRule(),
    }
    with pytest.raises(DataError, match=r"unknown key 'colums' in the table schema") as info:
        TableSchema.from_dict({"colums": {}})
    assert info.value.hint == "did you mean 'columns' instead of 'colums'?"
    with pytest.raises(DataError, match=r"unknown key 'nulable' in the rule for column 'a'"):
        TableSchema.from_dict({"columns": {"a": {"nulable": False}}})
    with pytest.raises(DataError, match="unknown dtype 'integer'") as info:
        TableSchema.from_dict({"columns": {"a": {"dtype": "integer"}}})
    assert info.value.hint is not None and "'int'" in info.value.hint
    with pytest.raises(DataError, match="min of column 'a' must be a number, found 'zero'"):
        TableSchema.from_dict({"columns": {"a": {"min": "zero"}}})
    with pytest.raises(DataError, match="min 5 is greater than max 1"):
        ColumnRule(min=5, max=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        schema.min_rows = 3  # type: ignore[misc]


def test_nullable_and_strict_from_a_schema_object() -> None:
    df = pd.DataFrame({"a": [1, None, 3], "b": ["x", "y", "z"]})
    schema = TableSchema(columns={"a": ColumnRule(nullable=False)}, strict=True)
    err = table_failure(df, schema)
    assert table_checks(err) == {"a_not_null": 1, "extra_columns": 3}


def test_text_report_format_is_unchanged_by_table_support() -> None:
    _, report = validate_text_dataset(balanced(20))
    assert "kind" not in report
    assert format_report(report).splitlines()[0] == "rows: 20    passed: yes"


def report_warnings(err: ValidationFailed) -> list[str]:
    warnings = err.report["warnings"]
    assert isinstance(warnings, list)
    return warnings


def test_table_hints_hold_no_python_calls() -> None:
    """Table hints reach `loopline run` users too: they name arguments, not Python calls."""
    df = pd.DataFrame(
        {
            "id": [1, 1, 2, 2],
            "amount": ["1", "x", "2", "x"],
            "when": ["2018-04-01", "2018-04-02", "2018-04-03", "2018-04-02"],
            "extra": [0, 0, 0, 0],
        }
    )
    schema = {
        "columns": {
            "id": {"unique": True},
            "amount": {"dtype": "float"},
            "when": {"dtype": "datetime"},
            "gone": {"dtype": "int"},
        },
        "strict": True,
    }
    err = table_failure(pd.concat([df, df.iloc[[3]]], ignore_index=True), schema)
    hints = {v["check"]: v["hint"] for v in err.report["violations"]}  # type: ignore[attr-defined]
    assert {"columns", "extra_columns", "id_unique", "amount_dtype", "when_dtype"} <= set(hints)
    for check, hint in hints.items():
        assert not re.search(r"\b[A-Za-z_][\w.]*\(", hint), f"{check}: {hint}"
        assert not re.search(r"\b[A-Za-z_]\w*=", hint), f"{check}: {hint}"
    assert "parse_dates argument" in hints["when_dtype"]
