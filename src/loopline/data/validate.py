"""Validate a text dataset: a pandera schema plus data-quality metrics, in one report.

:func:`validate_text_dataset` checks that ``text`` is a non-null string column and that
``label`` (optional, nullable) only holds the expected labels, then measures completeness,
empty and duplicate texts, label balance, text lengths and encoding problems. The rules that
turn metrics into violations live in :class:`QualityRules`. Everything is vectorised pandas
string operations, so 100k tweets take a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from loopline.errors import ValidationFailed

__all__ = ["QualityRules", "format_report", "validate_text_dataset"]

# Encoding problems. The patterns use only syntax that both Python's re and RE2 (what pandas
# uses for pyarrow-backed strings) accept: literal characters, and \xHH for control codes.
_CP1252_HIGH = "€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ"  # how bytes 0x80-0x9F show up in Windows-1252
_ENCODING_PATTERNS = {
    # U+FFFD: a decoder replaced bytes it could not read; the original text is lost.
    "replacement_char": "\ufffd",
    # UTF-8 bytes decoded as Latin-1/Windows-1252: "é" -> "Ã©", "’" -> "â€™", BOM -> "ï»¿".
    "mojibake": f"[ÂÃ][\u0080-\u00bf{_CP1252_HIGH}]|â€|ï»¿",
    # C0 control characters other than tab and newline (CR included: readers strip line ends).
    "control_chars": r"[\x00-\x08\x0b-\x1f]",
}
_MAX_SHOWN_VALUES = 5


@dataclass(frozen=True)
class QualityRules:
    """Thresholds that turn data-quality metrics into violations.

    Fractions are of the rows checked: empties of all rows; duplicates and encoding
    problems of the non-empty rows; class fractions of the labelled rows.
    """

    min_rows: int = 10
    max_empty_fraction: float = 0.05
    max_duplicate_fraction: float = 0.5
    min_class_fraction: float = 0.01
    max_encoding_problem_fraction: float = 0.05
    require_labels: bool = False


def validate_text_dataset(
    df: pd.DataFrame,
    labels: Sequence[str] | None = ("negative", "positive"),
    rules: QualityRules = QualityRules(),
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Check a ``text``/``label`` frame and measure its quality.

    Returns the frame without its empty or whitespace-only texts (index reset), and a
    JSON-able report: ``rows, passed, completeness, empty_texts, duplicate_texts,
    label_counts, label_fractions, unlabelled, conflicting_labels, length,
    encoding_problems, encoding_problem_kinds, violations, warnings``.

    ``labels`` is the allowed label set (None allows any). Raises
    :class:`~loopline.errors.ValidationFailed` (carrying the report) when any check fails;
    its message lists each failed check and on how many rows.
    """
    report = _empty_report(df)
    violations: list[dict[str, Any]] = report["violations"]
    violations.extend(_schema_violations(df, labels))
    if "text" not in df.columns:
        raise _failure(report)

    texts = df["text"].astype("str")
    empty = texts.notna() & texts.str.strip().eq("")
    keep = texts.notna() & ~empty
    kept = texts[keep]
    report["empty_texts"] = int(empty.sum())
    _check_rows(report, len(kept), rules)
    _check_empties(report, rules)
    _check_duplicates(report, kept, rules)
    _check_encoding(report, kept, rules)
    report["length"] = _length_stats(kept)
    if "label" in df.columns:
        _check_labels(report, kept, df.loc[keep, "label"], labels, rules)
    elif rules.require_labels:
        _violation(
            report,
            "labels_required",
            len(df),
            "no label column (labels are required)",
            "add a 'label' column, or label the data first (loopline label ...)",
        )
    if violations:
        raise _failure(report)
    report["passed"] = True
    return df.loc[keep].reset_index(drop=True), report


# ---------------------------------------------------------------------------------------------
# report plumbing


def _empty_report(df: pd.DataFrame) -> dict[str, Any]:
    return {
        "rows": len(df),
        "passed": False,
        "completeness": _completeness(df),
        "empty_texts": 0,
        "duplicate_texts": 0,
        "label_counts": {},
        "label_fractions": {},
        "unlabelled": 0,
        "conflicting_labels": 0,
        "length": _length_stats(pd.Series([], dtype="str")),
        "encoding_problems": 0,
        "encoding_problem_kinds": {},
        "violations": [],
        "warnings": [],
    }


def _completeness(df: pd.DataFrame) -> dict[str, float]:
    """Fraction of non-null values per column (1.0 = complete)."""
    if not len(df):
        return {str(c): 0.0 for c in df.columns}
    return {str(c): round(1.0 - float(df[c].isna().mean()), 4) for c in df.columns}


def _violation(report: dict[str, Any], check: str, rows: int, message: str, hint: str) -> None:
    report["violations"].append({"check": check, "rows": rows, "message": message, "hint": hint})


def _failure(report: dict[str, Any]) -> ValidationFailed:
    violations = report["violations"]
    hints = list(dict.fromkeys(v["hint"] for v in violations if v.get("hint")))
    return ValidationFailed(
        "validation failed: " + "; ".join(v["message"] for v in violations),
        report,
        hint="; ".join(hints) or None,
    )


def _rows(n: int) -> str:
    return "1 row" if n == 1 else f"{n:,} rows"


def _pct(fraction: float) -> str:
    return f"{fraction:.1%}"


def _shown(values: Sequence[Any]) -> str:
    shown = ", ".join(repr(v) for v in values[:_MAX_SHOWN_VALUES])
    more = len(values) - _MAX_SHOWN_VALUES
    return shown + (f", … {more} more" if more > 0 else "")


# ---------------------------------------------------------------------------------------------
# schema (pandera)


def _schema(labels: Sequence[str] | None) -> pa.DataFrameSchema:
    label_checks = [pa.Check.isin(list(labels))] if labels is not None else []
    return pa.DataFrameSchema(
        {
            "text": pa.Column(str, nullable=False),
            "label": pa.Column(str, nullable=True, required=False, checks=label_checks),
        },
        strict=False,  # extra columns (id, score, user, ...) are welcome
    )


def _schema_violations(df: pd.DataFrame, labels: Sequence[str] | None) -> list[dict[str, Any]]:
    try:
        _schema(labels).validate(df, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        groups = cases.groupby(["column", "check"], dropna=False, sort=False)
        return [
            _schema_violation(df, column, check, group, labels) for (column, check), group in groups
        ]
    return []


def _schema_violation(
    df: pd.DataFrame,
    column: Any,
    check: str,
    cases: pd.DataFrame,
    labels: Sequence[str] | None,
) -> dict[str, Any]:
    """One report entry for one failed pandera check (``cases``: its failure cases)."""
    values = list(dict.fromkeys(cases["failure_case"].dropna().tolist()))
    row_cases = int(cases["index"].notna().sum())
    if check == "column_in_dataframe":
        found = ", ".join(str(c) for c in df.columns) or "no columns"
        return {
            "check": "columns",
            "rows": len(df),
            "message": f"missing column {_shown(values)} (found: {found})",
            "hint": "map the source columns when loading (text_column=..., label_column=...)",
        }
    if check == "not_nullable":
        return {
            "check": f"{column}_not_null",
            "rows": row_cases,
            "message": f"{column} missing (null) on {_rows(row_cases)}",
            "hint": f"drop or fill the rows without a {column}",
        }
    if check.startswith("isin"):
        allowed = ", ".join(labels or ())
        return {
            "check": "label_values",
            "rows": row_cases,
            "message": f"label outside {{{allowed}}} on {_rows(row_cases)} "
            f"(values: {_shown(values)})",
            "hint": "map the labels when loading (label_map={...}), pass labels=[...], "
            "or drop those rows",
        }
    if check.startswith("dtype"):
        found = f"dtype {df[column].dtype}"
        if row_cases:
            found = f"non-text values on {_rows(row_cases)} (e.g. {_shown(values)}; {found})"
        return {
            "check": f"{column}_dtype",
            "rows": row_cases or len(df),
            "message": f"column {column!r} should hold text, found {found}",
            "hint": f"convert {column!r} to strings when loading",
        }
    return {
        "check": f"{column}_{check}",
        "rows": row_cases or len(df),
        "message": f"{column}: check {check} failed (values: {_shown(values)})",
        "hint": "",
    }


# ---------------------------------------------------------------------------------------------
# quality checks


def _check_rows(report: dict[str, Any], n: int, rules: QualityRules) -> None:
    if n < rules.min_rows:
        _violation(
            report,
            "min_rows",
            n,
            f"too few rows: {n:,} non-empty texts, expected at least {rules.min_rows:,}",
            "collect more data, or lower QualityRules.min_rows",
        )


def _check_empties(report: dict[str, Any], rules: QualityRules) -> None:
    n, total = report["empty_texts"], report["rows"]
    if not n:
        return
    fraction = n / total
    if fraction > rules.max_empty_fraction:
        _violation(
            report,
            "empty_texts",
            n,
            f"empty or whitespace-only text on {_rows(n)} ({_pct(fraction)} > max "
            f"{_pct(rules.max_empty_fraction)})",
            "check the export (blank lines, a wrong text column), "
            "or raise QualityRules.max_empty_fraction",
        )
    else:
        report["warnings"].append(f"{_rows(n)} with empty text dropped")


def _check_duplicates(report: dict[str, Any], kept: pd.Series, rules: QualityRules) -> None:
    n = int(kept.duplicated().sum())
    report["duplicate_texts"] = n
    if not n:
        return
    fraction = n / len(kept)
    message = f"duplicate text on {_rows(n)} ({_pct(fraction)}"
    if fraction > rules.max_duplicate_fraction:
        _violation(
            report,
            "duplicate_texts",
            n,
            f"{message} > max {_pct(rules.max_duplicate_fraction)})",
            "deduplicate the data (df.drop_duplicates('text')), "
            "or raise QualityRules.max_duplicate_fraction",
        )
    else:
        report["warnings"].append(message + ")")


def _check_encoding(report: dict[str, Any], kept: pd.Series, rules: QualityRules) -> None:
    any_problem = pd.Series(False, index=kept.index)
    kinds: dict[str, int] = {}
    for kind, pattern in _ENCODING_PATTERNS.items():
        hit = kept.str.contains(pattern, regex=True)
        kinds[kind] = int(hit.sum())
        any_problem |= hit
    n = int(any_problem.sum())
    report["encoding_problems"] = n
    report["encoding_problem_kinds"] = kinds
    if not n:
        return
    fraction = n / len(kept)
    detail = ", ".join(f"{kind} {count}" for kind, count in kinds.items() if count)
    message = f"encoding problems on {_rows(n)} ({detail}; {_pct(fraction)}"
    if fraction > rules.max_encoding_problem_fraction:
        _violation(
            report,
            "encoding",
            n,
            f"{message} > max {_pct(rules.max_encoding_problem_fraction)})",
            "the file was probably decoded with the wrong encoding: load it again with "
            "encoding=... (e.g. 'utf-8' or 'latin-1')",
        )
    else:
        report["warnings"].append(message + ")")


def _length_stats(kept: pd.Series) -> dict[str, float | int | None]:
    lengths = kept.str.len().to_numpy(dtype="int64", na_value=0)
    if lengths.size == 0:
        return dict.fromkeys(("min", "p5", "median", "p95", "max"))
    p5, median, p95 = np.percentile(lengths, [5, 50, 95])
    return {
        "min": int(lengths.min()),
        "p5": round(float(p5), 2),
        "median": round(float(median), 2),
        "p95": round(float(p95), 2),
        "max": int(lengths.max()),
    }


def _check_labels(
    report: dict[str, Any],
    kept: pd.Series,
    label: pd.Series,
    labels: Sequence[str] | None,
    rules: QualityRules,
) -> None:
    missing = label.isna()
    counts = label[~missing].value_counts()
    labelled = int(counts.sum())
    report["unlabelled"] = int(missing.sum())
    report["label_counts"] = {str(k): int(v) for k, v in sorted(counts.items(), key=_by_key)}
    report["label_fractions"] = {
        k: round(v / labelled, 4) for k, v in report["label_counts"].items()
    }
    report["conflicting_labels"] = _conflicting_labels(kept, label)
    if report["conflicting_labels"]:
        report["warnings"].append(
            f"{report['conflicting_labels']:,} texts appear with more than one label"
        )
    if rules.require_labels and report["unlabelled"]:
        _violation(
            report,
            "labels_required",
            report["unlabelled"],
            f"label missing on {_rows(report['unlabelled'])} (labels are required)",
            "label those rows (loopline label ...) or drop them",
        )
    _check_classes(report, labels, rules)


def _by_key(item: tuple[Any, Any]) -> str:
    return str(item[0])


def _conflicting_labels(kept: pd.Series, label: pd.Series) -> int:
    """How many distinct texts carry two or more different labels."""
    repeated = kept.duplicated(keep=False)
    if not repeated.any():
        return 0
    pairs = pd.DataFrame({"text": kept[repeated], "label": label[repeated]}).dropna()
    per_text = pairs.groupby("text", sort=False)["label"].nunique()
    return int((per_text > 1).sum())


def _check_classes(
    report: dict[str, Any], labels: Sequence[str] | None, rules: QualityRules
) -> None:
    counts: dict[str, int] = report["label_counts"]
    fractions: dict[str, float] = report["label_fractions"]
    if not counts:
        return
    valid = [c for c in counts if labels is None or c in labels]
    if len(counts) < 2:
        only = next(iter(counts))
        message = f"a single class: every labelled row is {only!r}"
        if rules.require_labels:
            _violation(
                report,
                "single_class",
                counts[only],
                message,
                "a classifier needs at least two classes; add data for the others",
            )
        else:
            report["warnings"].append(message)
        return
    for cls in valid:
        if fractions[cls] < rules.min_class_fraction:
            _violation(
                report,
                "class_balance",
                counts[cls],
                f"class {cls!r} has {_rows(counts[cls])} ({_pct(fractions[cls])} of labelled "
                f"rows < min {_pct(rules.min_class_fraction)})",
                "add examples of the rare class, or lower QualityRules.min_class_fraction",
            )
    absent = [c for c in labels or () if c not in counts]
    if absent:
        report["warnings"].append(f"no rows labelled {_shown(absent)}")


# ---------------------------------------------------------------------------------------------
# text summary


def format_report(report: dict[str, Any]) -> str:
    """A readable multi-line summary of a validation report (what the CLI prints)."""
    rows = report["rows"]
    lines = [f"rows: {rows:,}    passed: {'yes' if report['passed'] else 'NO'}"]
    if report["label_counts"]:
        labels = ", ".join(
            f"{label} {count:,} ({_pct(report['label_fractions'].get(label, 0.0))})"
            for label, count in report["label_counts"].items()
        )
        unlabelled = f"; unlabelled {report['unlabelled']:,}" if report["unlabelled"] else ""
        lines.append(f"labels: {labels}{unlabelled}")
    lines.append(
        f"empty texts: {report['empty_texts']:,}    duplicate texts: "
        f"{report['duplicate_texts']:,}    encoding problems: {report['encoding_problems']:,}"
    )
    length = report["length"]
    if length.get("min") is not None:
        lines.append(
            "text length (chars): " + ", ".join(f"{k} {_number(v)}" for k, v in length.items())
        )
    if report["completeness"]:
        lines.append(
            "completeness: "
            + ", ".join(f"{c} {_pct(v)}" for c, v in report["completeness"].items())
        )
    for title, key in (("violations", "violations"), ("warnings", "warnings")):
        entries = report[key]
        if entries:
            lines.append(f"{title}:")
            lines.extend(f"  - {_entry(e)}" for e in entries)
    return "\n".join(lines)


def _number(value: float | int | None) -> str:
    if value is None:
        return "-"
    rounded = round(float(value), 1)
    return f"{rounded:,.0f}" if rounded.is_integer() else f"{rounded:,.1f}"


def _entry(entry: Any) -> str:
    if isinstance(entry, dict):
        hint = f" (hint: {entry['hint']})" if entry.get("hint") else ""
        return f"[{entry['check']}] {entry['message']}{hint}"
    return str(entry)
