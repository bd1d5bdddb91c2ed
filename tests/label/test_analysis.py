"""LF analysis: coverage, overlaps, conflicts, polarity, dev-set accuracy; table/JSON/HTML."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console

from loopline.errors import LooplineError
from loopline.label.analysis import lf_summary, summary_table, to_html, to_json

# 5 rows x 3 LFs: a votes spam on rows 0-2, b votes ham on rows 2-3, c votes both ways.
L = np.array(
    [
        [1, -1, 1],
        [1, -1, -1],
        [1, 0, 0],
        [-1, 0, -1],
        [-1, -1, -1],
    ],
    dtype=np.int8,
)
NAMES = ["a", "b", "c"]


def test_coverage_overlaps_conflicts_polarity() -> None:
    a, b, c = lf_summary(L, NAMES, label_set=("ham", "spam"))
    assert a == {
        "lf": "a",
        "polarity": ["spam"],
        "coverage": 0.6,
        "overlaps": 0.4,  # rows 0 and 2
        "conflicts": 0.2,  # row 2 (b and c say ham)
    }
    assert b["polarity"] == ["ham"] and b["coverage"] == 0.4
    assert b["overlaps"] == 0.2 and b["conflicts"] == 0.2
    assert c["polarity"] == ["ham", "spam"]
    assert c["coverage"] == 0.4 and c["overlaps"] == 0.4 and c["conflicts"] == 0.2


def test_empirical_accuracy_against_gold_dev_labels() -> None:
    gold = np.array([1, 0, 0, 0, -1])  # -1: this row has no gold label
    a, b, c = lf_summary(L, NAMES, Y_dev=gold)
    assert (a["correct"], a["incorrect"], a["emp_acc"]) == (1, 2, pytest.approx(1 / 3))
    assert (b["correct"], b["incorrect"], b["emp_acc"]) == (2, 0, 1.0)
    assert (c["correct"], c["incorrect"]) == (2, 0)
    assert a["polarity"] == [1]  # indices without a label set


def test_accuracy_is_none_without_votes_on_gold_rows() -> None:
    (row,) = lf_summary(np.array([[-1], [1]]), ["x"], Y_dev=np.array([1, -1]))
    assert row["emp_acc"] is None and row["correct"] == 0


def test_outputs_table_json_html() -> None:
    summary = lf_summary(L, ["a<b>", "b", "c"], Y_dev=np.array([1, 0, 0, 0, 1]))
    console = Console(record=True, width=120)
    console.print(summary_table(summary, title="LFs"))
    text = console.export_text()
    assert "a<b>" in text and "60.0%" in text and "emp_acc" in text
    assert json.loads(to_json(summary))[0]["coverage"] == 0.6
    page = to_html(summary, title="LF report")
    assert page.startswith("<!doctype html>") and "<table>" in page
    assert "a&lt;b&gt;" in page and "<script" not in page
    assert page.count("<tr>") == 1 + 3


def test_bad_input_says_what_was_expected() -> None:
    with pytest.raises(LooplineError, match="2 names but L has 3 columns"):
        lf_summary(L, ["a", "b"])
    with pytest.raises(LooplineError, match="one label per row"):
        lf_summary(L, NAMES, Y_dev=np.array([1, 0]))
    with pytest.raises(LooplineError, match="2-d integer label matrix"):
        lf_summary(np.array([0.5, 1.0]), ["a"])
