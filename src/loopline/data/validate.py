"""Validate a dataset: a pandera schema plus data-quality metrics, in one report.

:func:`validate_text_dataset` checks that ``text`` is a non-null string column and that
``label`` (optional, nullable) only holds the expected labels, then measures completeness,
empty and duplicate texts, label balance, text lengths and encoding problems. The rules that
turn metrics into violations live in :class:`QualityRules`. Everything is vectorised pandas
string operations, so 100k tweets take a fraction of a second.

:func:`validate_table` does the same for any table: an optional :class:`TableSchema`
(columns, dtypes, nulls, ranges, allowed values, uniqueness; checked by pandera, all failures
at once) plus quality checks that need no schema (empty frame, empty columns, missing values,
duplicate rows, constant columns). Both return the same report shape, which
:func:`format_report` renders.
"""

from __future__ import annotations

import difflib
import math
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import date, datetime
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import pandera.pandas as pa

from loopline.errors import DataError, ValidationFailed

__all__ = [
    "ColumnRule",
    "QualityRules",
    "TableSchema",
    "format_report",
    "validate_table",
    "validate_text_dataset",
]

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
            "add a label column (or name it with --label-column), or label the data "
            "first in the review queue (loopline label queue add FILE)",
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


def _label_examples(labels: Sequence[str] | None, found: Sequence[Any]) -> list[str]:
    """The allowed labels plus the ones found, for a ``--labels`` example."""
    names = [*(labels or ()), *(str(v) for v in found)]
    return list(dict.fromkeys(n for n in names if n.strip()))[:_MAX_SHOWN_VALUES]


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
            "hint": "name the source's columns when reading: --text-column and "
            "--label-column (Python: the text_column and label_column arguments)",
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
            "hint": "name the allowed labels, e.g. --labels "
            f"{shlex.quote(','.join(_label_examples(labels, values)))} (Python: the labels "
            "argument, or label_map when reading a table), or fix or drop those rows",
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
            "collect more data (Python: lower min_rows in the rules argument)",
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
            "check the export (blank lines, or the wrong --text-column), or drop the rows "
            "without text (Python: raise max_empty_fraction in the rules argument)",
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
            "remove the repeated texts from the data (Python: raise max_duplicate_fraction "
            "in the rules argument)",
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
            "the file was probably decoded with the wrong encoding: read it again with "
            "--encoding utf-8 or --encoding latin-1 (Python: the encoding argument)",
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
            "label those rows in the review queue (loopline label queue add FILE) or drop them",
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
                "add examples of the rare class (Python: lower min_class_fraction in the "
                "rules argument)",
            )
    absent = [c for c in labels or () if c not in counts]
    if absent:
        report["warnings"].append(f"no rows labelled {_shown(absent)}")


# ---------------------------------------------------------------------------------------------
# text summary


def format_report(report: dict[str, Any]) -> str:
    """A readable multi-line summary of a validation report (what the CLI prints).

    Renders the reports of both :func:`validate_text_dataset` and :func:`validate_table`.
    """
    if report.get("kind") == "table":
        return _format_table_report(report)
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


# ---------------------------------------------------------------------------------------------
# tables: schema


DType = Literal["int", "float", "number", "str", "bool", "datetime", "category"]
_DTYPES: tuple[str, ...] = get_args(DType)


@dataclass(frozen=True)
class ColumnRule:
    """What one column of a table must hold.

    ``dtype``: ``int`` (integer dtype; also a float column whose values are all whole
    numbers, since a missing value turns an int column into floats), ``float`` (a float or
    integer dtype: every int is a valid float), ``number`` (any numeric dtype, or Python
    numbers such as the Decimals a database returns), ``str``, ``bool``, ``datetime`` or
    ``category`` (a categorical or string column). ``nullable=False`` forbids missing
    values; ``min``/``max`` bound numeric values (inclusive); ``allowed`` lists the only
    values permitted; ``unique`` forbids repeated values. None means "not checked".
    """

    dtype: DType | None = None
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None
    unique: bool = False

    def __post_init__(self) -> None:
        if self.dtype is not None and self.dtype not in _DTYPES:
            raise DataError(
                f"unknown dtype {self.dtype!r}: expected one of {', '.join(_DTYPES)}",
                hint=_did_you_mean(str(self.dtype), _DTYPES) or "use one of those names",
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise DataError(
                f"min {self.min} is greater than max {self.max}",
                hint="swap the bounds, or drop one of them",
            )


@dataclass(frozen=True)
class TableSchema:
    """The columns a table must have (each with its :class:`ColumnRule`) and table rules.

    ``min_rows``: the fewest rows accepted. ``unique``: a column combination whose values
    must not repeat (a key). ``strict``: columns not named in ``columns`` are a violation.
    """

    columns: dict[str, ColumnRule]
    min_rows: int = 1
    unique: tuple[str, ...] = ()
    strict: bool = False

    @classmethod
    def from_dict(cls, mapping: Mapping[str, Any]) -> TableSchema:
        """Build a schema from plain JSON-able data, as written in YAML or passed as a parameter.

        Example: ``{"columns": {"TX_AMOUNT": {"dtype": "float", "min": 0},
        "TRANSACTION_ID": {"dtype": "int", "nullable": False}}, "unique": ["TRANSACTION_ID"],
        "min_rows": 1000, "strict": False}``. ``columns`` may also be a list of names (the
        columns must exist, nothing else is checked), a rule may be ``null`` (the same), and
        ``unique`` may be one column name. Unknown keys and wrong value types raise
        :class:`~loopline.errors.DataError` naming the key.
        """
        if isinstance(mapping, TableSchema):
            return mapping
        if not isinstance(mapping, Mapping):
            raise DataError(
                f"a table schema must be a mapping, found {type(mapping).__name__}",
                hint='write it as {"columns": {"name": {"dtype": "float", "min": 0}}}',
            )
        _check_keys(mapping, [f.name for f in fields(cls)], "table schema")
        raw_columns = mapping.get("columns", {})
        if raw_columns is None:
            raw_columns = {}
        if isinstance(raw_columns, list | tuple):
            raw_columns = dict.fromkeys(raw_columns)
        if not isinstance(raw_columns, Mapping):
            raise DataError(
                f"'columns' of a table schema must map column names to rules, found "
                f"{type(raw_columns).__name__}",
                hint='e.g. {"columns": {"TX_AMOUNT": {"dtype": "float", "min": 0}}}',
            )
        columns = {str(name): _column_rule(str(name), rule) for name, rule in raw_columns.items()}
        unique = mapping.get("unique", ())
        if isinstance(unique, str):
            unique = (unique,)
        if not isinstance(unique, list | tuple) or not all(isinstance(u, str) for u in unique):
            raise DataError(
                f"'unique' of a table schema must be a list of column names, found {unique!r}",
                hint='e.g. "unique": ["TRANSACTION_ID"]',
            )
        min_rows = mapping.get("min_rows", 1)
        if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 0:
            raise DataError(
                f"'min_rows' of a table schema must be a whole number >= 0, found {min_rows!r}",
                hint='e.g. "min_rows": 1000',
            )
        strict = mapping.get("strict", False)
        if not isinstance(strict, bool):
            raise DataError(
                f"'strict' of a table schema must be true or false, found {strict!r}",
                hint='e.g. "strict": true',
            )
        return cls(columns=columns, min_rows=min_rows, unique=tuple(unique), strict=strict)


def _column_rule(name: str, rule: Any) -> ColumnRule:
    if rule is None:
        return ColumnRule()
    if isinstance(rule, ColumnRule):
        return rule
    if not isinstance(rule, Mapping):
        raise DataError(
            f"the rule for column {name!r} must be a mapping, found {rule!r}",
            hint='e.g. {"dtype": "float", "min": 0, "nullable": false}',
        )
    _check_keys(rule, [f.name for f in fields(ColumnRule)], f"rule for column {name!r}")
    kwargs: dict[str, Any] = dict(rule)
    for key in ("min", "max"):
        value = kwargs.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise DataError(
                f"{key} of column {name!r} must be a number, found {value!r}",
                hint=f'e.g. "{key}": 0',
            )
    for key in ("nullable", "unique"):
        if key in kwargs and not isinstance(kwargs[key], bool):
            raise DataError(
                f"{key} of column {name!r} must be true or false, found {kwargs[key]!r}",
                hint=f'e.g. "{key}": false',
            )
    allowed = kwargs.get("allowed")
    if allowed is not None:
        if isinstance(allowed, str | bytes) or not isinstance(allowed, list | tuple | set):
            raise DataError(
                f"allowed of column {name!r} must be a list of values, found {allowed!r}",
                hint='e.g. "allowed": [0, 1]',
            )
        kwargs["allowed"] = tuple(allowed)
    return ColumnRule(**kwargs)


def _check_keys(mapping: Mapping[str, Any], known: Sequence[str], what: str) -> None:
    unknown = [str(k) for k in mapping if k not in known]
    if unknown:
        suggestions = [s for k in unknown if (s := _did_you_mean(k, known))]
        raise DataError(
            f"unknown key {', '.join(repr(k) for k in unknown)} in the {what}: expected "
            f"{', '.join(known)}",
            hint="; ".join(suggestions) or "remove or rename the key",
        )


def _did_you_mean(name: str, choices: Sequence[str]) -> str | None:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r} instead of {name!r}?" if close else None


# ---------------------------------------------------------------------------------------------
# tables: validation


def validate_table(
    df: pd.DataFrame,
    schema: TableSchema | Mapping[str, Any] | None = None,
    *,
    max_missing_share: float = 0.5,
    max_duplicate_share: float = 0.5,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Check a table against ``schema`` (optional) and measure its quality.

    Schema checks run through pandera, lazily, so every failure is reported, not just the
    first: missing columns (and, with ``strict``, extra ones), dtypes, nulls, ranges,
    allowed values, per-column and combined uniqueness. Quality checks need no schema:
    fewer rows than ``schema.min_rows`` (1 without a schema), columns whose share of missing
    values exceeds ``max_missing_share`` (``<column>_empty`` when nothing is there at all),
    exact duplicate rows above ``max_duplicate_share`` (a warning below it), and constant
    columns (a warning).

    Returns the frame unchanged and a JSON-able report: ``kind`` ("table"), ``rows``,
    ``passed``, ``columns`` (count), ``dtypes``, ``completeness`` (non-null share per
    column), ``missing_values`` (count per column), ``duplicate_rows``,
    ``constant_columns``, ``violations`` (each ``{check, column?, rows, message, hint,
    examples?}``; ``check`` is e.g. ``TX_AMOUNT_min``, ``TRANSACTION_ID_unique``,
    ``columns``) and ``warnings``. Raises :class:`~loopline.errors.ValidationFailed`
    carrying that report when any violation is found.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"validate_table expects a pandas DataFrame, found {type(df).__name__}",
            hint="read the data into a DataFrame first (read_table_source in loopline.data.tables)",
        )
    for name, share in (
        ("max_missing_share", max_missing_share),
        ("max_duplicate_share", max_duplicate_share),
    ):
        if not 0.0 <= share <= 1.0:
            raise DataError(
                f"{name} must be between 0 and 1, found {share}",
                hint="pass a fraction, e.g. 0.5 for 50%",
            )
    rules = _as_schema(schema)
    report = _empty_table_report(df)
    _table_schema_violations(report, df, rules)
    _check_table_rows(report, df, rules.min_rows if rules is not None else 1)
    _check_missing(report, df, max_missing_share)
    _check_duplicate_rows(report, df, max_duplicate_share)
    _check_constant(report, df)
    if report["violations"]:
        raise _failure(report)
    report["passed"] = True
    return df, report


def _as_schema(schema: TableSchema | Mapping[str, Any] | None) -> TableSchema | None:
    if schema is None or isinstance(schema, TableSchema):
        return schema
    return TableSchema.from_dict(schema)


def _empty_table_report(df: pd.DataFrame) -> dict[str, Any]:
    missing = df.isna().sum() if len(df.columns) else pd.Series(dtype="int64")
    return {
        "kind": "table",
        "rows": len(df),
        "passed": False,
        "columns": len(df.columns),
        "dtypes": {str(c): str(t) for c, t in df.dtypes.items()},
        "completeness": _completeness(df),
        "missing_values": {str(c): int(n) for c, n in missing.items()},
        "duplicate_rows": 0,
        "constant_columns": [],
        "violations": [],
        "warnings": [],
    }


def _add(
    report: dict[str, Any],
    check: str,
    rows: int,
    message: str,
    hint: str,
    *,
    column: str | None = None,
    examples: Sequence[Any] = (),
) -> None:
    entry: dict[str, Any] = {"check": check}
    if column is not None:
        entry["column"] = column
    entry.update(rows=int(rows), message=message, hint=hint)
    if len(examples):
        entry["examples"] = [_jsonable(v) for v in examples[:_MAX_SHOWN_VALUES]]
    report["violations"].append(entry)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, pd.Timestamp | datetime | date):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


# Which values conform to a ColumnRule dtype: a test on the column's dtype, and one on the
# single values of an object column (mixed Python objects).
def _is_int_dtype(s: pd.Series) -> bool:
    return pd.api.types.is_integer_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _is_real_dtype(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _is_text_dtype(s: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(s) and not pd.api.types.is_object_dtype(s)


def _is_number(v: Any) -> bool:
    import numbers

    return isinstance(v, numbers.Number) and not isinstance(v, bool | np.bool_)


_DTYPE_TESTS: dict[str, tuple[Callable[[pd.Series], bool], Callable[[Any], bool]]] = {
    "int": (
        _is_int_dtype,
        lambda v: isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_),
    ),
    "float": (
        _is_real_dtype,
        lambda v: (
            isinstance(v, float | int | np.floating | np.integer)
            and not isinstance(v, bool | np.bool_)
        ),
    ),
    "number": (_is_real_dtype, _is_number),
    "str": (_is_text_dtype, lambda v: isinstance(v, str)),
    "bool": (pd.api.types.is_bool_dtype, lambda v: isinstance(v, bool | np.bool_)),
    "datetime": (
        pd.api.types.is_datetime64_any_dtype,
        lambda v: isinstance(v, datetime | np.datetime64),
    ),
    "category": (
        lambda s: isinstance(s.dtype, pd.CategoricalDtype) or _is_text_dtype(s),
        lambda v: isinstance(v, str),
    ),
}


def _dtype_conforms(series: pd.Series, dtype: str) -> pd.Series:
    """Per row: does the value conform to ``dtype``? (Missing values do; nulls are separate.)"""
    column_ok, value_ok = _DTYPE_TESTS[dtype]
    if column_ok(series):
        return pd.Series(True, index=series.index)
    if dtype == "int" and pd.api.types.is_float_dtype(series):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        return pd.Series(np.isnan(values) | (np.mod(values, 1) == 0), index=series.index)
    if pd.api.types.is_object_dtype(series):
        return series.map(value_ok, na_action="ignore").fillna(True).astype(bool)
    return pd.Series(False, index=series.index)


def _table_schema_violations(
    report: dict[str, Any], df: pd.DataFrame, rules: TableSchema | None
) -> None:
    """Run the schema through pandera (lazily) and turn its failure cases into violations."""
    if rules is None:
        return
    present = set(df.columns)
    missing = [c for c in rules.columns if c not in present]
    missing += [c for c in rules.unique if c not in present and c not in missing]
    if missing:
        found = ", ".join(str(c) for c in df.columns) or "no columns"
        _add(
            report,
            "columns",
            len(df),
            f"missing column {_shown(missing)} (found: {found})",
            "add or rename those columns in the data, or fix the schema",
            examples=missing,
        )
    kinds: dict[tuple[str, int], str] = {}  # (column, check_number) -> our check kind
    columns: dict[str, pa.Column] = {}
    for name, rule in rules.columns.items():
        checks: list[pa.Check] = []
        if name in present:
            checks = _column_checks(report, df[name], name, rule)
        for number, check in enumerate(checks):
            kinds[(name, number)] = str(check.name)
        columns[name] = pa.Column(
            nullable=rule.nullable,
            unique=rule.unique or tuple(rules.unique) == (name,),
            report_duplicates="exclude_first",
            checks=checks,
            required=False,  # missing columns are reported above, once
        )
    unique = list(rules.unique) if rules.unique and not set(rules.unique) - present else None
    if unique is not None and len(unique) == 1:
        # A one-column key is that column's own uniqueness rule: report it once, by column.
        if unique[0] not in columns:
            columns[unique[0]] = pa.Column(unique=True, report_duplicates="exclude_first")
        unique = None
    schema = pa.DataFrameSchema(
        columns,
        strict=rules.strict,
        unique=unique,
        report_duplicates="exclude_first",
    )
    try:
        schema.validate(df, lazy=True, inplace=True)
    except pa.errors.SchemaErrors as exc:
        _table_failures(report, df, rules, exc.failure_cases, kinds)


def _column_checks(
    report: dict[str, Any], series: pd.Series, name: str, rule: ColumnRule
) -> list[pa.Check]:
    """pandera checks for one column; each check's name is its kind (dtype, min, ...)."""
    checks: list[pa.Check] = []
    dtype_ok = True
    if rule.dtype is not None:
        dtype = rule.dtype
        checks.append(pa.Check(lambda s: _dtype_conforms(s, dtype), name="dtype"))
        dtype_ok = _DTYPE_TESTS[dtype][0](series) or (
            dtype == "int" and pd.api.types.is_float_dtype(series)
        )
    if rule.min is not None or rule.max is not None:
        if _is_real_dtype(series):
            if rule.min is not None:
                checks.append(pa.Check.ge(rule.min, name="min"))
            if rule.max is not None:
                checks.append(pa.Check.le(rule.max, name="max"))
        elif dtype_ok:  # no dtype rule reports it: say why the range cannot be checked
            _add(
                report,
                f"{name}_dtype",
                int(series.notna().sum()),
                f"column {name!r} has min/max rules but holds {series.dtype} values, not numbers",
                f"convert {name!r} to numbers when reading, or drop its min/max rules",
                column=name,
            )
    if rule.allowed is not None:
        checks.append(pa.Check.isin(list(rule.allowed), name="allowed"))
    return checks


_HINTS = {
    "dtype": "convert the column's values to that type in the source, or fix the schema's dtype",
    "not_null": "drop or fill the rows without a value, or set nullable: true",
    "min": "fix or drop those rows, or change the schema's min",
    "max": "fix or drop those rows, or change the schema's max",
    "allowed": "map or drop those values, or add them to the schema's allowed list",
    "unique": "drop the duplicates or fix the source",
}


def _table_failures(
    report: dict[str, Any],
    df: pd.DataFrame,
    rules: TableSchema,
    cases: pd.DataFrame,
    kinds: dict[tuple[str, int], str],
) -> None:
    def kind_of(row: Any) -> str:
        check = str(row.check)
        if check == "not_nullable":
            return "not_null"
        if check == "field_uniqueness":
            return "unique"
        number = row.check_number
        if number is not None and not pd.isna(number):
            return kinds.get((str(row.column), int(number)), check)
        return check

    cases = cases.assign(kind=[kind_of(r) for r in cases.itertuples(index=False)])
    extra = cases[cases["kind"] == "column_in_schema"]
    if len(extra):
        names = list(dict.fromkeys(extra["failure_case"].astype(str)))
        _add(
            report,
            "extra_columns",
            len(df),
            f"unexpected column {_shown(names)} (the schema is strict)",
            "read only the columns you need (the columns argument of read_table), add "
            "them to the schema, or set strict: false",
            examples=names,
        )
    combo = cases[cases["kind"] == "multiple_fields_uniqueness"]
    if len(combo):
        n = int(combo["index"].dropna().nunique())
        key = list(rules.unique)
        examples = [
            {c: _jsonable(df.at[i, c]) for c in key}
            for i in list(dict.fromkeys(combo["index"].dropna()))[:_MAX_SHOWN_VALUES]
        ]
        first = ", ".join(f"{c}={v!r}" for c, v in examples[0].items()) if examples else ""
        _add(
            report,
            "+".join(key) + "_unique",
            n,
            f"({', '.join(key)}) not unique: {_rows(n)} {_repeat(n)} an earlier combination"
            + (f" (e.g. {first})" if first else ""),
            _HINTS["unique"],
            examples=examples,
        )
    column_cases = cases[
        cases["column"].notna()
        & ~cases["kind"].isin(
            ["column_in_schema", "column_in_dataframe", "multiple_fields_uniqueness"]
        )
    ]
    for (column, kind), group in column_cases.groupby(["column", "kind"], sort=False):
        rule = rules.columns.get(str(column), ColumnRule())
        _column_failure(report, df, str(column), str(kind), group, rule)


def _column_failure(
    report: dict[str, Any],
    df: pd.DataFrame,
    column: str,
    kind: str,
    cases: pd.DataFrame,
    rule: ColumnRule,
) -> None:
    n = int(cases["index"].notna().sum()) or len(cases)
    values = list(dict.fromkeys(v for v in cases["failure_case"].tolist() if not _is_missing(v)))
    shown = f" (values: {_shown(values)})" if values else ""
    if kind == "dtype":
        message = (
            f"column {column!r} should hold {rule.dtype} values, found {df[column].dtype}"
            f" on {_rows(n)}{shown}"
        )
    elif kind == "not_null":
        message = f"{column} missing (null) on {_rows(n)}"
        values = []
    elif kind == "min":
        message = f"{column} below min {_number(rule.min)} on {_rows(n)}{shown}"
    elif kind == "max":
        message = f"{column} above max {_number(rule.max)} on {_rows(n)}{shown}"
    elif kind == "allowed":
        allowed = ", ".join(map(str, rule.allowed or ()))
        message = f"{column} outside {{{allowed}}} on {_rows(n)}{shown}"
    elif kind == "unique":
        message = f"{column} not unique: {_rows(n)} {_repeat(n)} an earlier value{shown}"
    else:
        message = f"{column}: check {kind} failed on {_rows(n)}{shown}"
    hint = _HINTS.get(kind, "fix those rows or the schema")
    if kind == "dtype" and rule.dtype == "datetime":
        hint = f"parse it when reading: list {column!r} in the parse_dates argument of read_table"
    _add(
        report,
        f"{column}_{kind}",
        n,
        message,
        hint,
        column=column,
        examples=values,
    )


def _repeat(n: int) -> str:
    return "repeats" if n == 1 else "repeat"


def _is_missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# tables: quality checks (no schema needed)


def _check_table_rows(report: dict[str, Any], df: pd.DataFrame, min_rows: int) -> None:
    if len(df.columns) == 0:
        _add(
            report,
            "columns",
            0,
            "the table has no columns",
            "check the reader: the source held no header or no data",
        )
    if len(df) < min_rows:
        found = "no rows" if not len(df) else f"{_rows(len(df))}"
        _add(
            report,
            "min_rows",
            len(df),
            f"too few rows: {found}, expected at least {min_rows:,}",
            "check the source and the steps before this one (filters, joins), "
            "or lower the schema's min_rows",
        )


def _check_missing(report: dict[str, Any], df: pd.DataFrame, max_share: float) -> None:
    if not len(df):
        return
    for column, n in report["missing_values"].items():
        if not n:
            continue
        share = n / len(df)
        if share == 1.0:
            message = f"column {column!r} is empty: every value is missing"
            if share > max_share:
                _add(
                    report,
                    f"{column}_empty",
                    n,
                    message,
                    "drop the column, or check the reader (a wrong delimiter or header)",
                    column=column,
                )
            else:
                report["warnings"].append(message)
        elif share > max_share:
            _add(
                report,
                f"{column}_missing",
                n,
                f"{column} missing on {_rows(n)} ({_pct(share)} > max {_pct(max_share)})",
                "fill or drop the missing values, or raise max_missing_share",
                column=column,
            )


def _check_duplicate_rows(report: dict[str, Any], df: pd.DataFrame, max_share: float) -> None:
    if not len(df) or not len(df.columns):
        return
    try:
        duplicated = df.duplicated()
    except TypeError:  # unhashable values (lists, dicts) in some column
        report["warnings"].append("duplicate rows not counted: some values are unhashable")
        return
    n = int(duplicated.sum())
    report["duplicate_rows"] = n
    if not n:
        return
    share = n / len(df)
    message = f"duplicate rows: {_rows(n)} {_repeat(n)} an earlier row ({_pct(share)}"
    if share > max_share:
        _add(
            report,
            "duplicate_rows",
            n,
            f"{message} > max {_pct(max_share)})",
            "remove the repeated rows from the data, or raise max_duplicate_share",
        )
    else:
        report["warnings"].append(message + ")")


def _check_constant(report: dict[str, Any], df: pd.DataFrame) -> None:
    if len(df) < 2:
        return
    constant: list[str] = []
    for column in df.columns:
        series = df[column]
        if series.isna().all():
            continue  # reported as empty
        try:
            distinct = series.nunique(dropna=False)
        except TypeError:
            continue
        if distinct == 1:
            constant.append(str(column))
    report["constant_columns"] = constant
    for column in constant:
        value = _jsonable(df[column].iloc[0])
        report["warnings"].append(
            f"column {column!r} is constant ({value!r} on every row): it carries no information"
        )


def _format_table_report(report: dict[str, Any]) -> str:
    lines = [
        f"rows: {report['rows']:,}    columns: {report['columns']:,}    "
        f"passed: {'yes' if report['passed'] else 'NO'}"
    ]
    constant = ", ".join(report["constant_columns"]) or "none"
    lines.append(f"duplicate rows: {report['duplicate_rows']:,}    constant columns: {constant}")
    incomplete = {c: v for c, v in report["completeness"].items() if v < 1.0}
    if report["completeness"]:
        lines.append(
            "completeness: "
            + (
                ", ".join(f"{c} {_pct(v)}" for c, v in incomplete.items())
                if incomplete
                else "every column complete"
            )
        )
    for title, key in (("violations", "violations"), ("warnings", "warnings")):
        entries = report[key]
        if entries:
            lines.append(f"{title}:")
            lines.extend(f"  - {_entry(e)}" for e in entries)
    return "\n".join(lines)
