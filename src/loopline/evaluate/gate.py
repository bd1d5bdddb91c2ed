"""Promotion gate: decide whether a candidate model may replace the champion.

The gate is deliberately plain: an absolute floor plus "better than the champion by at
least ``min_improvement``" on one metric, in that metric's direction (higher is better for
accuracy, F1, AUC, average precision; lower for RMSE, MAE, log loss). Every check adds a
readable sentence with the numbers to ``reasons``, passed or not, so the decision stored in
the audit trail explains itself.

The tie rule is explicit: ``min_improvement`` defaults to 0.001, so a retrain that is only
as good as the champion (the same data and settings, say) never replaces it. Set it to 0 to
promote on ties, or negative to tolerate a small drop.

The gate fails closed: a metric it cannot find or read counts as a failed check, because
promoting a model nobody could score is worse than asking a human to look.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

# Where decide() looks for the accuracy on the human-labelled gold set.
GOLD_ACCURACY_KEYS = ("gold_accuracy", "gold.accuracy")


DEFAULT_MIN_IMPROVEMENT = 0.001


@dataclass(frozen=True)
class GateRules:
    """Thresholds of the promotion gate.

    ``metric`` may be a dotted path into nested metrics (``"slices.short.accuracy"``).
    ``min_value`` is an absolute floor for it (a ceiling when lower is better; None: no
    floor). ``min_improvement`` is the smallest gain over the champion, in the metric's
    direction, that promotes (negative: the largest drop tolerated).
    ``greater_is_better`` overrides the direction known for the metric's name.
    ``min_gold_accuracy``, when set, also requires ``gold_accuracy`` (or
    ``gold.accuracy``) in the candidate's metrics to reach that value.
    """

    metric: str = "macro_f1"
    min_value: float | None = 0.5
    min_improvement: float = DEFAULT_MIN_IMPROVEMENT
    greater_is_better: bool | None = None
    min_gold_accuracy: float | None = None

    @property
    def higher_is_better(self) -> bool:
        """The direction of :attr:`metric` (higher is better unless known otherwise)."""
        if self.greater_is_better is not None:
            return self.greater_is_better
        from loopline.evaluate.metrics import greater_is_better

        return greater_is_better(self.metric) is not False


@dataclass
class GateDecision:
    """Outcome of :func:`decide`: pass/fail, the reasons, and the metrics it was based on."""

    passed: bool
    reasons: list[str]
    candidate: dict[str, Any]
    champion: dict[str, Any] | None
    rules: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able copy (for the run record, the CLI's ``--json`` and MLflow tags)."""
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "candidate": self.candidate,
            "champion": self.champion,
            "rules": dict(self.rules),
        }


def decide(
    candidate_metrics: dict[str, Any],
    champion_metrics: dict[str, Any] | None,
    rules: GateRules | None = None,
) -> GateDecision:
    """Decide whether the candidate passes the gate.

    It passes when its ``rules.metric`` reaches ``rules.min_value``, its gold accuracy
    reaches ``rules.min_gold_accuracy`` (if set), and — when there is a champion — its
    metric beats the champion's by at least ``rules.min_improvement``.
    """
    rules = rules or GateRules()
    checks = [_check_floor(candidate_metrics, rules)]
    if rules.min_gold_accuracy is not None:
        checks.append(_check_gold(candidate_metrics, rules.min_gold_accuracy))
    if champion_metrics is None:
        checks.append((True, "no champion yet: the candidate is compared with the floors only"))
    else:
        checks.append(_check_regression(candidate_metrics, champion_metrics, rules))
    return GateDecision(
        passed=all(ok for ok, _ in checks),
        reasons=[reason for _, reason in checks],
        candidate=candidate_metrics,
        champion=champion_metrics,
        rules=asdict(rules),
    )


def _check_floor(candidate: dict[str, Any], rules: GateRules) -> tuple[bool, str]:
    value = metric_value(candidate, rules.metric)
    if value is None:
        return False, _missing("candidate", rules.metric, candidate)
    if rules.min_value is None:
        return True, f"{rules.metric} {value:.4f} (no floor set)"
    if rules.higher_is_better:
        ok = value >= rules.min_value
        return ok, f"{rules.metric} {value:.4f} {'>=' if ok else '<'} floor {rules.min_value:.4f}"
    ok = value <= rules.min_value
    return ok, f"{rules.metric} {value:.4f} {'<=' if ok else '>'} ceiling {rules.min_value:.4f}"


def _check_gold(candidate: dict[str, Any], floor: float) -> tuple[bool, str]:
    for key in GOLD_ACCURACY_KEYS:
        value = metric_value(candidate, key)
        if value is not None:
            ok = value >= floor
            sign = ">=" if ok else "<"
            return ok, f"gold-set accuracy {value:.4f} {sign} floor {floor:.4f}"
    return False, (
        f"min_gold_accuracy is {floor:.4f} but the candidate has no gold-set accuracy "
        f"(looked for {' / '.join(GOLD_ACCURACY_KEYS)}); evaluate it on the gold set"
    )


def _check_regression(
    candidate: dict[str, Any], champion: dict[str, Any], rules: GateRules
) -> tuple[bool, str]:
    new = metric_value(candidate, rules.metric)
    old = metric_value(champion, rules.metric)
    if new is None:
        return False, _missing("candidate", rules.metric, candidate)
    if old is None:
        return False, (
            _missing("champion", rules.metric, champion)
            + "; re-evaluate the champion on the same data or promote by hand"
        )
    gain = new - old if rules.higher_is_better else old - new
    ok = gain >= rules.min_improvement
    direction = "higher" if rules.higher_is_better else "lower"
    if rules.min_improvement >= 0:
        needed = f"the required gain of {rules.min_improvement:.4f}"
    else:
        needed = f"the tolerated drop of {-rules.min_improvement:.4f}"
    return ok, (
        f"{rules.metric} {new:.4f} vs champion {old:.4f} ({direction} is better): gain "
        f"{gain:+.4f} {'meets' if ok else 'misses'} {needed}"
    )


def metric_value(metrics: dict[str, Any], path: str) -> float | None:
    """Return the number at ``path`` (a key, or a dotted path into nested dicts).

    A flat key that itself contains dots wins over the nested reading. Returns ``None``
    when the path is missing or the value is not a finite number.
    """
    value: Any = metrics
    if path in metrics:
        value = metrics[path]
    else:
        for part in path.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _missing(who: str, metric: str, metrics: dict[str, Any]) -> str:
    numeric = sorted(k for k in metrics if metric_value(metrics, k) is not None)
    return f"the {who} has no numeric metric {metric!r} (it has: {', '.join(numeric) or 'none'})"
