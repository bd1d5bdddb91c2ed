"""Tests for the promotion gate."""

from __future__ import annotations

import json

import pytest

from loopline.evaluate.gate import GateDecision, GateRules, decide, metric_value


def test_first_model_passes_when_it_meets_the_floor() -> None:
    decision = decide({"macro_f1": 0.8}, None, GateRules())
    assert decision.passed
    assert decision.reasons[0] == "macro_f1 0.8000 >= floor 0.5000"
    assert "no champion" in decision.reasons[1]


def test_below_the_floor_fails_even_without_champion() -> None:
    decision = decide({"macro_f1": 0.42}, None, GateRules(min_value=0.6))
    assert not decision.passed
    assert "macro_f1 0.4200 < floor 0.6000" in decision.reasons


def test_a_better_candidate_beats_the_champion() -> None:
    decision = decide({"macro_f1": 0.81}, {"macro_f1": 0.80}, GateRules())
    assert decision.passed
    assert decision.reasons[-1] == (
        "macro_f1 0.8100 vs champion 0.8000 (higher is better): gain +0.0100 meets the "
        "required gain of 0.0010"
    )


def test_a_tie_does_not_replace_the_champion_by_default() -> None:
    decision = decide({"macro_f1": 0.80}, {"macro_f1": 0.80}, GateRules())
    assert not decision.passed
    assert "gain +0.0000 misses the required gain of 0.0010" in decision.reasons[-1]
    assert decide({"macro_f1": 0.80}, {"macro_f1": 0.80}, GateRules(min_improvement=0)).passed


def test_a_negative_min_improvement_tolerates_a_drop() -> None:
    rules = GateRules(min_improvement=-0.01)
    assert decide({"macro_f1": 0.795}, {"macro_f1": 0.80}, rules).passed
    decision = decide({"macro_f1": 0.78}, {"macro_f1": 0.80}, rules)
    assert not decision.passed
    assert "gain -0.0200 misses the tolerated drop of 0.0100" in decision.reasons[-1]


def test_lower_is_better_metrics_gate_the_other_way() -> None:
    rules = GateRules(metric="rmse", min_value=10.0)
    assert decide({"rmse": 4.0}, {"rmse": 5.0}, rules).passed
    worse = decide({"rmse": 6.0}, {"rmse": 5.0}, rules)
    assert not worse.passed
    assert "(lower is better): gain -1.0000 misses" in worse.reasons[-1]
    too_high = decide({"rmse": 11.0}, None, rules)
    assert not too_high.passed
    assert "rmse 11.0000 > ceiling 10.0000" in too_high.reasons[0]


def test_other_metric_and_nested_paths() -> None:
    rules = GateRules(metric="slices.short.accuracy", min_value=0.7)
    candidate = {"slices": {"short": {"accuracy": 0.9}}}
    champion = {"slices": {"short": {"accuracy": 0.95}}}
    decision = decide(candidate, champion, rules)
    assert not decision.passed
    assert "slices.short.accuracy 0.9000 vs champion 0.9500" in decision.reasons[-1]


@pytest.mark.parametrize(
    ("candidate", "passed", "fragment"),
    [
        ({"macro_f1": 0.9, "gold_accuracy": 0.85}, True, "gold-set accuracy 0.8500 >= floor"),
        ({"macro_f1": 0.9, "gold": {"accuracy": 0.7}}, False, "gold-set accuracy 0.7000 < floor"),
        ({"macro_f1": 0.9}, False, "has no gold-set accuracy"),
    ],
)
def test_gold_accuracy_floor(candidate: dict, passed: bool, fragment: str) -> None:
    decision = decide(candidate, None, GateRules(min_gold_accuracy=0.8))
    assert decision.passed is passed
    assert any(fragment in reason for reason in decision.reasons)


def test_missing_or_non_numeric_metric_fails_closed() -> None:
    decision = decide({"accuracy": 0.9, "macro_f1": None}, None, GateRules())
    assert not decision.passed
    assert "no numeric metric 'macro_f1' (it has: accuracy)" in decision.reasons[0]


def test_champion_without_the_metric_fails_closed() -> None:
    decision = decide({"macro_f1": 0.9}, {"accuracy": 0.9}, GateRules())
    assert not decision.passed
    assert "champion has no numeric metric 'macro_f1'" in decision.reasons[-1]


def test_nan_counts_as_missing() -> None:
    assert metric_value({"macro_f1": float("nan")}, "macro_f1") is None
    assert metric_value({"passed": True}, "passed") is None
    assert metric_value({"a.b": 1}, "a.b") == 1.0  # a flat dotted key wins


def test_to_dict_is_json_and_records_the_rules() -> None:
    decision = decide({"macro_f1": 0.7}, {"macro_f1": 0.6}, GateRules(min_improvement=0.05))
    as_dict = decision.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["passed"] is True
    assert as_dict["champion"] == {"macro_f1": 0.6}
    assert as_dict["rules"]["min_improvement"] == 0.05
    assert isinstance(decision, GateDecision)
