"""The decision policy: a fast model decides online, a heavy model's batch scores weigh in,
thresholds from the config turn scores into actions, and fallbacks keep deciding when a
model or the feature store is unavailable.

The ``fraud`` section of ``loopline.yaml`` (every key optional; the defaults shown)::

    fraud:
      fast_model: fraud-fast@champion     # scores every transaction online
      heavy_model: fraud-heavy@champion   # re-scores in batch (`stream rescore`); null: none
      heavy_features: null                # module:function giving the heavy model's inputs
                                          # from the decisions' frame (null: their features)
      features: embedded                  # the online store: embedded, none or a redis:// URL
      thresholds: {review: 0.5, block: 0.9}   # block: null never blocks
      combine: max                        # max(fast, heavy's latest); fast: heavy only in batch
      heavy_keys: [CUSTOMER_ID]           # whose latest heavy score counts for a transaction
      heavy_max_age_days: 7               # ... if its transaction is at most this much older
      heavy_stale_s: 86400                # no re-score for this long: heavy_unavailable
      review_queue: fraud-review          # the label queue reviews go to (labels fraud, legit)
      cost: {kind: expected_loss, amount_field: TX_AMOUNT}  # review priority = p x amount
      time_field: TX_DATETIME
      fallback:
        features_down: degrade            # or stop (nothing decided until the store is back)
        fast_down: rule                   # or stop
        review_amount: 100.0              # the rule: review at or above this amount
        block_amount: null                # the rule: block at or above this amount
        rule_probability: null            # p(fraud) a rule's review is prioritised with
                                          # (null: thresholds.review)
        retry_s: 1.0                      # a store that failed is tried again after this long
      group_commit: {commit: batch, synchronous: NORMAL, batch_size: 256}
      prediction_log: true                # fast decisions and first heavy scores -> prediction log
      model_poll_s: 30                    # follow the aliases (a new champion, a rollback)

**How a transaction is decided** (:meth:`DecisionPolicy.decide`):

1. ``fast`` = the fast model's probability of fraud on the online features.
2. ``heavy`` = the heavy model's latest batch score of an earlier transaction of the same
   customer (``heavy_keys``), when one at most ``heavy_max_age_days`` older exists
   (:class:`~loopline.stream.heavy.HeavyScores`).
3. ``score`` = ``max(fast, heavy)`` (``combine: max``) or ``fast``; ``block`` when the
   score reaches ``thresholds.block``, ``review`` when it reaches ``thresholds.review``,
   else ``allow``. The reason names the score and the threshold that fired.

**Fallbacks** (each flagged in the decision row's ``fallback`` and reason, and logged when
it starts and ends):

- ``degraded_features`` -- the feature store is down (or answered without its state):
  the fast model scores when every input it reads is in the message itself; otherwise the
  **amount rule** decides: ``block`` at or above ``fallback.block_amount``, ``review`` at or
  above ``fallback.review_amount``, else ``allow``. A heavy score still applies. The
  transactions decided meanwhile are added to the store once it answers again.
- ``fast_unavailable`` -- the fast model cannot be loaded or fails: the amount rule
  decides (with the heavy score, if any).
- ``heavy_unavailable`` -- the heavy model is not registered or its scores are stale
  (no re-score for ``heavy_stale_s``): fast only.

With ``features_down: stop`` / ``fast_down: stop`` the consumer stops instead, deciding and
acknowledging nothing of the batch (the behaviour of a bare ``Consumer(model=...)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loopline.errors import ConfigError
from loopline.stream.scoring import ProbabilisticModel, Scorer
from loopline.stream.source import StreamError

if TYPE_CHECKING:
    from loopline.config import Settings

__all__ = [
    "ACTIONS",
    "UNAVAILABLE",
    "DecisionPolicy",
    "FastModel",
    "FraudSettings",
    "HeavyLookup",
    "Verdict",
    "fraud_settings",
    "model_name",
]

ACTIONS = ("allow", "review", "block")
UNAVAILABLE = "unavailable"
DEGRADED_FEATURES = "degraded_features"
FAST_UNAVAILABLE = "fast_unavailable"
HEAVY_UNAVAILABLE = "heavy_unavailable"


# -- settings ---------------------------------------------------------------------------------
class Thresholds(BaseModel):
    """Scores at or above ``review`` go to the review queue, at or above ``block`` are
    blocked (``block: null`` never blocks)."""

    model_config = ConfigDict(extra="forbid")

    review: float = Field(default=0.5, ge=0.0, le=1.0)
    block: float | None = Field(default=0.9, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.block is not None and self.block < self.review:
            raise ValueError(f"block ({self.block}) must not be below review ({self.review})")
        return self

    def as_dict(self) -> dict[str, float | None]:
        return {"review": self.review, "block": self.block}


class CostModel(BaseModel):
    """The review queue's priority: ``expected_loss`` = p(fraud) x amount, or ``score``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["expected_loss", "score"] = "expected_loss"
    amount_field: str = "TX_AMOUNT"


class Fallback(BaseModel):
    """What happens when the feature store or a model is unavailable (see the module)."""

    model_config = ConfigDict(extra="forbid")

    features_down: Literal["degrade", "stop"] = "degrade"
    fast_down: Literal["rule", "stop"] = "rule"
    review_amount: float = Field(default=100.0, ge=0.0)
    block_amount: float | None = Field(default=None, ge=0.0)
    rule_probability: float | None = Field(default=None, ge=0.0, le=1.0)
    retry_s: float = Field(default=1.0, gt=0.0)


class GroupCommit(BaseModel):
    """How decisions are made durable: one transaction per ``batch`` (group commit) or per
    decision (``each``); SQLite's ``synchronous`` (``NORMAL``: a commit survives a killed
    process, ``FULL``: also a power cut, at an fsync per commit)."""

    model_config = ConfigDict(extra="forbid")

    commit: Literal["batch", "each"] = "batch"
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    batch_size: int = Field(default=256, ge=1)


class FraudSettings(BaseModel):
    """The ``fraud`` section of ``loopline.yaml`` (see the module's docstring)."""

    model_config = ConfigDict(extra="forbid")

    fast_model: str = "fraud-fast@champion"
    heavy_model: str | None = "fraud-heavy@champion"
    heavy_features: str | None = None
    features: str = "embedded"
    thresholds: Thresholds = Field(default_factory=Thresholds)
    combine: Literal["max", "fast"] = "max"
    heavy_keys: list[str] = Field(default_factory=lambda: ["CUSTOMER_ID"])
    heavy_max_age_days: float = Field(default=7.0, gt=0.0)
    heavy_stale_s: float | None = Field(default=86_400.0, gt=0.0)
    review_queue: str | None = "fraud-review"
    cost: CostModel = Field(default_factory=CostModel)
    time_field: str = "TX_DATETIME"
    fallback: Fallback = Field(default_factory=Fallback)
    group_commit: GroupCommit = Field(default_factory=GroupCommit)
    prediction_log: bool = True
    model_poll_s: float | None = Field(default=30.0, gt=0.0)


def fraud_settings(settings: Settings | Mapping[str, Any] | None) -> FraudSettings:
    """The validated ``fraud`` section (the defaults when there is none)."""
    if settings is None:
        raw: Any = {}
    elif isinstance(settings, Mapping):
        raw = settings
    else:
        raw = getattr(settings, "fraud", None) or {}
    try:
        return FraudSettings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"fraud.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid fraud settings: {problems}",
            hint="see the fraud section in the README (Streams): fast_model, heavy_model, "
            "thresholds {review, block}, review_queue, cost, fallback, group_commit",
        ) from None


def model_name(ref: str) -> str:
    """``fraud-fast`` of ``fraud-fast@champion`` or ``fraud-fast/3``."""
    return ref.split("@", 1)[0].split("/", 1)[0]


# -- the models -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FastModel:
    """The online model: its registry name and version, and its scorer."""

    name: str
    version: str
    scorer: Scorer

    @classmethod
    def of(cls, model: ProbabilisticModel, name: str, version: str, **kw: Any) -> FastModel:
        return cls(name, str(version), Scorer(model, **kw))


class HeavyLookup(Protocol):
    """The heavy model's latest batch scores (:class:`~loopline.stream.heavy.HeavyScores`)."""

    name: str

    @property
    def version(self) -> str | None: ...

    def available(self) -> bool: ...

    def lookup(self, record: Mapping[str, Any]) -> tuple[float, str] | None: ...


@dataclass(slots=True)
class Verdict:
    """What the policy decided about one transaction."""

    action: str
    score: float | None  # the score compared with the thresholds (None: a rule decided)
    fast_score: float | None
    heavy_score: float | None
    heavy_version: str | None
    reason: str
    fallback: tuple[str, ...]
    priority: float

    @property
    def flagged(self) -> bool:
        return self.action != "allow"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class DecisionPolicy:
    """Turns feature rows into :class:`Verdict` s (see the module's docstring).

    ``fast`` is None while the fast model is unavailable (``fast_name`` still names it in
    the decision rows); ``heavy`` is None when no heavy model is configured. The consumer
    calls :meth:`decide` once per batch; :meth:`set_fast` swaps the model between batches
    (a new champion, a rollback).
    """

    def __init__(
        self,
        config: FraudSettings,
        *,
        fast: FastModel | None,
        fast_name: str | None = None,
        heavy: HeavyLookup | None = None,
    ) -> None:
        self.config = config
        self.fast = fast
        self.fast_name = (
            fast.name if fast is not None else (fast_name or model_name(config.fast_model))
        )
        self.fast_error: str | None = None if fast is not None else "not loaded"
        self.heavy = heavy
        self.thresholds = config.thresholds.as_dict()
        self._rule_p = (
            config.fallback.rule_probability
            if config.fallback.rule_probability is not None
            else config.thresholds.review
        )

    @classmethod
    def single(
        cls,
        model: ProbabilisticModel,
        *,
        threshold: float = 0.5,
        name: str = "model",
        version: str = "1",
        columns: Sequence[str] | None = None,
    ) -> DecisionPolicy:
        """One model, one threshold, no fallback: a score at or above ``threshold`` is
        flagged (action ``review``), a store or model failure stops the consumer."""
        config = FraudSettings(
            fast_model=name,
            heavy_model=None,
            thresholds=Thresholds(review=threshold, block=None),
            review_queue=None,
            combine="fast",
            fallback=Fallback(features_down="stop", fast_down="stop"),
            prediction_log=False,
            model_poll_s=None,
        )
        return cls(config, fast=FastModel.of(model, name, version, columns=columns))

    # -- state ---------------------------------------------------------------------------
    def set_fast(self, fast: FastModel | None, error: str | None = None) -> None:
        """Swap the fast model (None: unavailable, with ``error`` saying why)."""
        self.fast = fast
        self.fast_error = error if fast is None else None
        if fast is not None:
            self.fast_name = fast.name

    @property
    def fast_columns(self) -> list[str]:
        return list(self.fast.scorer.columns) if self.fast is not None else []

    @property
    def strict_features(self) -> bool:
        """True when a feature store failure must stop the consumer."""
        return self.config.fallback.features_down == "stop"

    def warm_up(self) -> None:
        """Pay the fast model's first call (and its lean-path check) before any message."""
        if self.fast is None:
            return
        columns = self.fast.scorer.columns
        probes = [dict.fromkeys(columns, 0.0)]
        for i, column in enumerate(columns):
            probes.append({**probes[0], column: float(i + 1)})
        self.fast.scorer.score(probes)

    # -- deciding ------------------------------------------------------------------------
    def decide(
        self,
        rows: Sequence[Mapping[str, Any]],
        records: Sequence[Mapping[str, Any]],
        degraded: Sequence[bool],
    ) -> list[Verdict]:
        """One verdict per transaction: ``rows`` are the model inputs (the message's numbers
        and the store's features), ``records`` the masked transactions, ``degraded`` True
        where the feature store gave nothing."""
        n = len(rows)
        fast_scores: list[float | None] = [None] * n
        fast_problem: str | None = None
        fast = self.fast
        if fast is None:
            fast_problem = f"fast model {self.fast_name} unavailable ({self.fast_error})"
            if self.config.fallback.fast_down == "stop":
                raise StreamError(
                    fast_problem, hint="register the model, or set fraud.fallback.fast_down: rule"
                )
        else:
            columns = fast.scorer.columns
            scorable = [
                i
                for i in range(n)
                if not degraded[i] or all(_finite(rows[i].get(c)) for c in columns)
            ]
            if scorable:
                try:
                    scores = fast.scorer.score([rows[i] for i in scorable])
                except StreamError as exc:
                    if self.config.fallback.fast_down == "stop":
                        raise
                    fast_problem = f"fast model {fast.name} v{fast.version} failed: {exc.message}"
                else:
                    for i, score in zip(scorable, scores, strict=True):
                        value = float(score)
                        fast_scores[i] = value if math.isfinite(value) else None

        heavy = self.heavy
        heavy_on = heavy is not None and heavy.available() and self.config.combine == "max"
        heavy_off = heavy is not None and not heavy.available()
        return [
            self._verdict(
                rows[i],
                records[i],
                fast_scores[i],
                degraded=degraded[i],
                fast_problem=fast_problem,
                heavy=heavy.lookup(records[i]) if heavy_on and heavy is not None else None,
                heavy_off=heavy_off,
            )
            for i in range(n)
        ]

    def _action(self, score: float) -> str:
        block = self.config.thresholds.block
        if block is not None and score >= block:
            return "block"
        return "review" if score >= self.config.thresholds.review else "allow"

    def _verdict(
        self,
        row: Mapping[str, Any],
        record: Mapping[str, Any],
        fast: float | None,
        *,
        degraded: bool,
        fast_problem: str | None,
        heavy: tuple[float, str] | None,
        heavy_off: bool,
    ) -> Verdict:
        th = self.config.thresholds
        flags: list[str] = []
        notes: list[str] = []
        if degraded:
            flags.append(DEGRADED_FEATURES)
        if fast is None and fast_problem is not None:
            flags.append(FAST_UNAVAILABLE)
        if heavy_off:
            flags.append(HEAVY_UNAVAILABLE)
            notes.append("heavy model unavailable: fast only")
        heavy_score, heavy_version = heavy if heavy is not None else (None, None)
        amount = _amount(row, record, self.config.cost.amount_field)

        if fast is not None:
            score = fast
            source = f"fast score {fast:.3f}"
            if heavy_score is not None and heavy_score > fast:
                score, source = heavy_score, f"heavy score {heavy_score:.3f} (customer's latest)"
            action = self._action(score)
            if action == "block":
                why = f"{source} >= block {th.block}"
            elif action == "review":
                why = f"{source} >= review {th.review}"
            else:
                why = f"{source} < review {th.review}"
            if degraded:
                notes.insert(0, "feature store unavailable: scored on the message's own fields")
            p = score
        else:
            # The amount rule, documented in the module and the README.
            fb = self.config.fallback
            if fast_problem is not None:
                cause = fast_problem
            else:
                cause = "feature store unavailable and the fast model needs its features"
            if fb.block_amount is not None and amount >= fb.block_amount:
                action, bound = "block", f"amount {amount:.2f} >= {fb.block_amount} (rule)"
            elif amount >= fb.review_amount:
                action, bound = "review", f"amount {amount:.2f} >= {fb.review_amount} (rule)"
            else:
                action, bound = "allow", f"amount {amount:.2f} < {fb.review_amount} (rule)"
            score, p = None, self._rule_p
            why = f"{bound}: {cause}"
            if heavy_score is not None:
                heavy_action = self._action(heavy_score)
                if ACTIONS.index(heavy_action) > ACTIONS.index(action):
                    action = heavy_action
                    limit = th.block if heavy_action == "block" else th.review
                    why = (
                        f"heavy score {heavy_score:.3f} (customer's latest) >= {heavy_action} "
                        f"{limit}; {why}"
                    )
                    p = heavy_score
        reason = "; ".join([why, *notes])
        priority = p * amount if self.config.cost.kind == "expected_loss" else p
        return Verdict(
            action=action,
            score=score,
            fast_score=fast,
            heavy_score=heavy_score,
            heavy_version=heavy_version,
            reason=reason,
            fallback=tuple(flags),
            priority=float(priority),
        )


def _amount(row: Mapping[str, Any], record: Mapping[str, Any], field: str) -> float:
    for source in (row, record):
        value = source.get(field)
        if value is not None and _finite(value):
            return float(value)
    return 0.0
