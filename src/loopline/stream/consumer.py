"""The streaming consumer: validate → mask PII → features → decide → commit → acknowledge.

For each batch a :class:`Consumer` takes from its :class:`~loopline.stream.source.Source`:

1. **decode and validate** every message against the transaction schema
   (:mod:`loopline.stream.schema`); a body that is not a JSON object, a schema violation,
   or a message delivered more than ``max_attempts`` times is *refused*;
2. **mask PII** (the masker's ``mask_record``) of every record, refused ones included:
   nothing leaves this step unmasked, not even a dead letter;
3. refused messages go to the source's **dead-letter** destination with their reason and
   are settled there (one ``MULTI``/``EXEC`` with the ``XACK`` on Redis);
4. transactions already in the **decision log** (a redelivery after a crash) and repeats of
   an id within the batch are only acknowledged: decided once, never twice;
5. **features**: the online store's ``update_and_read`` per transaction (idempotent by
   transaction id, so a transaction whose features were updated just before a crash is not
   counted twice when it comes back);
6. **decide** the batch with the :class:`~loopline.stream.policy.DecisionPolicy` (the fast
   model's score, the heavy model's latest score, thresholds, fallbacks) and write every
   decision, with the review-queue tasks of those sent to review, in ONE database
   transaction (:class:`~loopline.stream.decisions.DecisionLog`);
7. only then **acknowledge** the batch, and hand the fast model's decisions to the
   prediction log (asynchronous: monitoring's copy; the decision log is the record).

A crash (even SIGKILL) before step 6 commits leaves the batch pending at the broker, which
delivers it again; a crash between 6 and 7 makes step 4 acknowledge it on redelivery. So
every transaction is decided exactly once, and every acknowledged one is in the log.

**A feature store that fails** (Redis down, or an answer without its state): with the
policy's ``fallback.features_down: degrade`` (the fraud default) the transaction is decided
on the message's own fields or the amount rule, flagged ``degraded_features``, and kept
aside; the store is tried again after ``fallback.retry_s`` and, once it answers, those
transactions are added to it first (late, but counted), so later windows are complete.
With ``stop`` (a bare ``Consumer(model=...)``) the consumer stops with
:class:`~loopline.stream.source.SourceUnavailable` before anything of the batch is decided
or acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from loopline.errors import LooplineError
from loopline.features import DEGRADED, StoreUnavailable
from loopline.features.online import to_microseconds
from loopline.stream.decisions import Decision, DecisionLog, ReviewItem
from loopline.stream.message import DeadLetter, Message
from loopline.stream.policy import UNAVAILABLE, DecisionPolicy, Verdict
from loopline.stream.schema import Transaction, check
from loopline.stream.scoring import ProbabilisticModel, Scorer
from loopline.stream.source import Source, SourceUnavailable, StreamError

if TYPE_CHECKING:
    from loopline.core.predlog import PredictionLogger

__all__ = [
    "BatchOutcome",
    "Consumer",
    "ConsumerStats",
    "OnlineFeatures",
    "RecordMasker",
]

_log = logging.getLogger("loopline.stream")
# Transactions decided while the feature store was down, kept to add once it is back.
_MAX_MISSED = 200_000


class RecordMasker(Protocol):
    """Masks the personal data of one record (``loopline.data.pii.PiiMasker``)."""

    def mask_record(self, record: Mapping[str, Any]) -> dict[str, Any]: ...


class OnlineFeatures(Protocol):
    """Online features (``loopline.features.OnlineFeatureStore``): updates the state with
    the transaction and returns its features; a second call with the same transaction id
    returns the same features without counting it again."""

    def update_and_read(self, tx: Mapping[str, Any]) -> dict[str, float]: ...


@dataclass(slots=True)
class BatchOutcome:
    """What happened to one batch."""

    decided: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    flagged: int = 0
    reviews: int = 0
    committed_at: float | None = None


@dataclass
class ConsumerStats:
    """Counts since the consumer started, and latencies from producer stamp to commit."""

    batches: int = 0
    messages: int = 0
    decided: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    flagged: int = 0
    reviews: int = 0
    started: float = field(default_factory=time.time)
    first_commit: float | None = None
    last_commit: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)
    actions: dict[str, int] = field(default_factory=dict)
    fallbacks: dict[str, int] = field(default_factory=dict)
    features_backfilled: int = 0

    def summary(self) -> dict[str, Any]:
        """JSON-able counts, rates and latency percentiles."""
        import numpy as np

        span = (self.last_commit or 0.0) - (self.first_commit or 0.0)
        out: dict[str, Any] = {
            "batches": self.batches,
            "messages": self.messages,
            "decided": self.decided,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "flagged": self.flagged,
            "reviews": self.reviews,
            "actions": dict(self.actions),
            "fallbacks": dict(self.fallbacks),
            "features_backfilled": self.features_backfilled,
            "seconds": round(time.time() - self.started, 3),
            "decided_per_s": round(self.decided / span, 1) if span > 0 else None,
            "dead_letter_reasons": dict(self.reasons),
        }
        if self.latencies_ms:
            values = np.asarray(self.latencies_ms)
            out["latency_ms"] = {
                "p50": round(float(np.percentile(values, 50)), 3),
                "p99": round(float(np.percentile(values, 99)), 3),
                "max": round(float(values.max()), 3),
                "n": len(values),
            }
        return out


def _numbers(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record's numeric fields (a model may read raw inputs such as TX_AMOUNT)."""
    return {
        k: v for k, v in record.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


class _StoreDown(Exception):
    """The feature store failed or answered without its state (``why``)."""


class Consumer:
    """Decides every transaction of ``source`` exactly once (see the module's docstring).

    ``policy`` decides (:class:`~loopline.stream.policy.DecisionPolicy`); or ``model``,
    anything with ``predict_proba(DataFrame)`` (a registry ``Model``, a scikit-learn
    estimator fitted on a DataFrame), flags a transaction when its score is at least
    ``threshold`` and stops on any failure (``DecisionPolicy.single``). ``features`` is the
    online feature store (None: the model reads the transaction's own numeric fields);
    ``masker`` the PII masker (None only for data that holds no personal data);
    ``prediction_log`` receives the fast model's decisions after each commit.
    """

    def __init__(
        self,
        source: Source,
        *,
        decisions: DecisionLog,
        model: ProbabilisticModel | None = None,
        policy: DecisionPolicy | None = None,
        features: OnlineFeatures | None = None,
        masker: RecordMasker | None = None,
        threshold: float = 0.5,
        schema: type[BaseModel] = Transaction,
        id_field: str = "TRANSACTION_ID",
        batch_size: int = 256,
        poll_timeout: float = 0.1,
        max_attempts: int = 10,
        columns: Sequence[str] | None = None,
        prediction_log: PredictionLogger | None = None,
    ) -> None:
        if batch_size < 1:
            raise StreamError(f"batch_size must be at least 1, found {batch_size}")
        if policy is None:
            if model is None:
                raise StreamError("a consumer needs a policy or a model")
            policy = DecisionPolicy.single(
                model,
                threshold=threshold,
                name=decisions.model_name or "model",
                version=decisions.model_version or "1",
                columns=columns,
            )
        self.source = source
        self.policy = policy
        self.decisions = decisions
        self.features = features
        self.masker = masker
        self.threshold = threshold
        self.schema = schema
        self.id_field = id_field
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.max_attempts = max_attempts
        self.prediction_log = prediction_log
        self.stats = ConsumerStats()
        self._retry_at = 0.0  # the feature store is not asked before this (monotonic)
        self._down_since: float | None = None
        self._down_why = ""
        self._missed: deque[dict[str, Any]] = deque()
        self._fast_state: str | None = None  # the fast model's last problem, for the log
        # What close() stops first (the service's model watcher, heavy scores, ...).
        self.on_close: list[Callable[[], None]] = []

    @property
    def scorer(self) -> Scorer | None:
        """The fast model's scorer (None while it is unavailable)."""
        return self.policy.fast.scorer if self.policy.fast is not None else None

    # -- one batch ---------------------------------------------------------------------------
    def _mask(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return dict(record) if self.masker is None else self.masker.mask_record(record)

    def _mask_refused(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """The masked payload of a refused message, or None when it cannot be masked."""
        if not payload:
            return None
        try:
            return self._mask(payload)
        except Exception:  # a record the policy cannot handle is kept out entirely
            return None

    async def process(self, batch: Sequence[Message]) -> BatchOutcome:
        """Run one batch through every step and settle each of its messages."""
        outcome = BatchOutcome()
        refused: list[DeadLetter] = []
        accepted: list[tuple[Message, dict[str, Any]]] = []
        for message in batch:
            if message.error is not None:
                refused.append(DeadLetter(message, message.error, None))
                continue
            if self.max_attempts and message.attempt > self.max_attempts:
                reason = (
                    f"delivered {message.attempt} times without a decision "
                    f"(max_attempts={self.max_attempts})"
                )
                refused.append(DeadLetter(message, reason, self._mask_refused(message.payload)))
                continue
            record, problem = check(self.schema, message.payload)
            if record is None:
                why = problem or "schema violation"
                refused.append(DeadLetter(message, why, self._mask_refused(message.payload)))
                continue
            try:
                masked = self._mask(record)
            except Exception as exc:
                reason = f"PII masking failed: {type(exc).__name__}"
                refused.append(DeadLetter(message, reason, None))
                continue
            accepted.append((message, masked))

        if refused:
            await self.source.dead_letter(refused)
            outcome.dead_lettered = len(refused)
            for letter in refused:
                kind = letter.reason.split(":", 1)[0]
                self.stats.reasons[kind] = self.stats.reasons.get(kind, 0) + 1

        todo: list[tuple[Message, str, dict[str, Any]]] = []
        repeats: list[Message] = []
        if accepted:
            ids = [self._tx_id(masked) for _, masked in accepted]
            already = self.decisions.decided(ids)
            seen: set[str] = set()
            for (message, masked), tx_id in zip(accepted, ids, strict=True):
                if tx_id in already or tx_id in seen:
                    repeats.append(message)
                else:
                    seen.add(tx_id)
                    todo.append((message, tx_id, masked))

        decisions: list[Decision] = []
        if todo:
            rows: list[dict[str, Any]] = []
            answers: list[dict[str, float] | None] = []
            for _, tx_id, masked in todo:
                row, answer = self._inputs(tx_id, masked)
                rows.append(row)
                answers.append(answer)
            records = [masked for _, _, masked in todo]
            degraded = [answer is None and self.features is not None for answer in answers]
            verdicts = self.policy.decide(rows, records, degraded)
            self._note_fast_state()
            decisions = [
                self._decision(message, tx_id, masked, answer, verdict)
                for (message, tx_id, masked), answer, verdict in zip(
                    todo, answers, verdicts, strict=True
                )
            ]
            outcome.committed_at = self.decisions.write(decisions)
            outcome.decided = len(decisions)
            outcome.flagged = sum(d.flagged for d in decisions)
            outcome.reviews = sum(d.review is not None for d in decisions)
            for d, verdict in zip(decisions, verdicts, strict=True):
                if d.produced_at is not None:
                    self.stats.latencies_ms.append((outcome.committed_at - d.produced_at) * 1000)
                self.stats.actions[verdict.action] = self.stats.actions.get(verdict.action, 0) + 1
                for flag in verdict.fallback:
                    self.stats.fallbacks[flag] = self.stats.fallbacks.get(flag, 0) + 1
            if self.stats.first_commit is None:
                self.stats.first_commit = outcome.committed_at
            self.stats.last_commit = outcome.committed_at

        settled = [message for message, _, _ in todo] + repeats
        if settled:
            await self.source.ack(settled)
        if decisions and self.prediction_log is not None:
            self._log_predictions(decisions, rows, outcome.committed_at or time.time())
        outcome.duplicates = len(repeats)
        self.stats.batches += 1
        self.stats.messages += len(batch)
        self.stats.decided += outcome.decided
        self.stats.duplicates += outcome.duplicates
        self.stats.dead_lettered += outcome.dead_lettered
        self.stats.flagged += outcome.flagged
        self.stats.reviews += outcome.reviews
        return outcome

    def _decision(
        self,
        message: Message,
        tx_id: str,
        masked: dict[str, Any],
        answer: dict[str, float] | None,
        verdict: Verdict,
    ) -> Decision:
        policy = self.policy
        config = policy.config
        features = {k: v for k, v in masked.items() if v is not None}  # no empty optionals
        if answer:
            features.update(answer)
        fast = policy.fast
        heavy = policy.heavy
        tx_time = masked.get(config.time_field)
        review = None
        if verdict.action == "review" and config.review_queue is not None:
            review = ReviewItem(
                priority=verdict.priority,
                payload={
                    "features": features,
                    "action": verdict.action,
                    "score": verdict.score,
                    "fast_score": verdict.fast_score,
                    "heavy_score": verdict.heavy_score,
                    "reason": verdict.reason,
                    "fallback": list(verdict.fallback),
                    "expected_loss": verdict.priority,
                },
            )
        return Decision(
            tx_id=tx_id,
            score=verdict.score,
            flagged=verdict.flagged,
            message_id=message.id,
            attempt=message.attempt,
            features=features,
            produced_at=message.produced_at,
            action=verdict.action,
            reason=verdict.reason,
            fallback=",".join(verdict.fallback) or None,
            fast_score=verdict.fast_score,
            model_name=policy.fast_name,
            model_version=fast.version if fast is not None else UNAVAILABLE,
            heavy_model=heavy.name if heavy is not None else None,
            heavy_version=(
                None if heavy is None else verdict.heavy_version or heavy.version or UNAVAILABLE
            ),
            heavy_score=verdict.heavy_score,
            thresholds=policy.thresholds,
            tx_time=tx_time if isinstance(tx_time, datetime) else None,
            review=review,
        )

    def _log_predictions(
        self, decisions: Sequence[Decision], rows: Sequence[Mapping[str, Any]], committed: float
    ) -> None:
        """The fast model's decisions as prediction-log rows (monitoring's copy).

        One column-wise :class:`~loopline.core.predlog.PredictionBatch` per batch: the log's
        writer thread turns its columns into Arrow arrays without visiting a record each.
        With a record per decision, that conversion held the GIL 10-40 ms once a second
        at 1,000 decisions/s, and every batch being decided meanwhile waited (a
        once-a-second bump in ``benchmarks/fraud_latency.py``'s p99).
        """
        from loopline.core.predlog import PredictionBatch

        assert self.prediction_log is not None
        fast = self.policy.fast
        if fast is None:
            return  # the fast model scored nothing: no prediction of that model
        scored = [
            (d, row) for d, row in zip(decisions, rows, strict=True) if d.fast_score is not None
        ]
        if not scored:
            return
        p = [d.fast_score for d, _ in scored if d.fast_score is not None]
        review = self.policy.config.thresholds.review
        now_us = to_microseconds(datetime.now(UTC))
        self.prediction_log.log_batch(
            PredictionBatch(
                model_name=fast.name,
                model_version=fast.version,
                route="champion",
                request_ids=[d.tx_id for d, _ in scored],
                ts_us=[
                    now_us if d.tx_time is None else to_microseconds(d.tx_time) for d, _ in scored
                ],
                inputs={
                    k: [row.get(k, (d.features or {}).get(k)) for d, row in scored]
                    for k in self._logged_inputs()
                },
                labels=["1" if x >= review else "0" for x in p],
                probabilities={"0": [1.0 - x for x in p], "1": p},
                latency_ms=[
                    0.0 if d.produced_at is None else (committed - d.produced_at) * 1000
                    for d, _ in scored
                ],
            )
        )

    def _logged_inputs(self) -> list[str]:
        """What the prediction log records as inputs: the amount and the store's features
        (without a store, the fast model's inputs), and the feature set's data subject
        (the customer, pseudonymised at the door) so that monitoring can rank cards for
        card precision@100 as labels arrive."""
        feature_set = getattr(self.features, "features", None)
        names = getattr(feature_set, "names", None)
        chosen = list(names) if names else self.policy.fast_columns
        amount = self.policy.config.cost.amount_field
        subject = getattr(feature_set, "subject", None)
        logged = [amount, *(c for c in chosen if c != amount)]
        return logged if subject is None or subject in logged else [*logged, subject]

    def _note_fast_state(self) -> None:
        problem = None if self.policy.fast is not None else self.policy.fast_error
        if problem != self._fast_state:
            if problem is not None:
                _log.warning(
                    "fast model %s unavailable (%s): deciding by the amount rule (fallback "
                    "fast_unavailable)",
                    self.policy.fast_name,
                    problem,
                )
            else:
                _log.warning("fast model %s is back: scoring again", self.policy.fast_name)
            self._fast_state = problem

    def _tx_id(self, masked: Mapping[str, Any]) -> str:
        value = masked.get(self.id_field)
        if value is None:
            raise StreamError(
                f"the PII policy removed {self.id_field}, the transaction id the consumer "
                "decides by",
                hint=f"keep {self.id_field} (or pseudonymise it: a keyed hash stays unique)",
            )
        return str(value)

    def _inputs(
        self, tx_id: str, masked: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, float] | None]:
        """The model inputs (the message's numbers and the store's features) and the
        store's answer (None when the store is down and the policy degrades)."""
        row = _numbers(masked)
        if self.features is None:
            return row, {}
        if time.monotonic() < self._retry_at:
            self._miss(masked)
            return row, None
        try:
            if self._missed:
                self._catch_up()
            answer = self._update(tx_id, masked)
        except _StoreDown as down:
            if self.policy.strict_features:
                raise SourceUnavailable(
                    str(down),
                    hint="nothing of this batch was decided or acknowledged; bring the store "
                    "back (is Redis running?) and start the consumer again: the batch is "
                    "delivered again",
                ) from None
            self._store_failed(str(down))
            self._miss(masked)
            return row, None
        if self._down_since is not None:
            _log.warning(
                "feature store is back after %.1f s: %d transaction(s) decided meanwhile "
                "were added to it",
                time.monotonic() - self._down_since,
                self.stats.features_backfilled,
            )
            self._down_since = None
        row.update(answer)
        return row, answer

    def _update(self, tx_id: str, masked: dict[str, Any]) -> dict[str, float]:
        assert self.features is not None
        try:
            answer = self.features.update_and_read(masked)
        except StoreUnavailable as exc:
            raise _StoreDown(
                f"the feature store failed for transaction {tx_id}: {exc.message}"
            ) from None
        except LooplineError:
            raise
        except Exception as exc:
            raise _StoreDown(
                f"the feature store failed for transaction {tx_id}: {type(exc).__name__}: {exc}"
            ) from None
        if answer.get(DEGRADED):
            # The store answered without its state (its "degraded" fallback): its features
            # are NaN and it did not count the transaction.
            raise _StoreDown(
                f"the feature store answered without its state for transaction {tx_id} "
                "(degraded: it cannot reach its data)"
            )
        return answer

    def _store_failed(self, why: str) -> None:
        self._retry_at = time.monotonic() + self.policy.config.fallback.retry_s
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._down_why = why
            _log.warning(
                "%s; deciding without the store (fallback degraded_features) and trying it "
                "again every %.1f s",
                why,
                self.policy.config.fallback.retry_s,
            )

    def _miss(self, masked: dict[str, Any]) -> None:
        if len(self._missed) < _MAX_MISSED:
            self._missed.append(masked)

    def _catch_up(self) -> None:
        """Add the transactions decided while the store was down (oldest first)."""
        while self._missed:
            masked = self._missed[0]
            self._update(self._tx_id(masked), masked)
            self._missed.popleft()
            self.stats.features_backfilled += 1

    # -- the loop ------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Pay the one-time costs before the first message: the fast model's first call and
        the check of its lean path on ``1 + inputs`` points (zero, then each input alone:
        an affine function equal at those points is equal everywhere), and the decision
        log's first query."""
        self.policy.warm_up()
        self.decisions.decided(["(warm-up)"])

    async def run(
        self,
        *,
        max_messages: int | None = None,
        idle_timeout: float | None = None,
        stop: asyncio.Event | None = None,
        freeze_gc: bool = False,
    ) -> ConsumerStats:
        """Open the source and process batches until it is exhausted, ``max_messages`` were
        read, nothing came for ``idle_timeout`` seconds, or ``stop`` is set.

        ``freeze_gc`` (for a process that only consumes: ``loopline stream consume``) moves
        every object allocated before the loop (model, masker, stores) out of the garbage
        collector's way (``gc.freeze``), so its full collections scan only what the loop
        allocates.
        """
        self.warm_up()
        if freeze_gc:
            import gc

            gc.collect()
            gc.freeze()
        async with self.source:
            last = time.monotonic()
            while not (stop is not None and stop.is_set()) and not self.source.exhausted:
                limit = self.batch_size
                if max_messages is not None:
                    limit = min(limit, max_messages - self.stats.messages)
                    if limit <= 0:
                        break
                batch = await self.source.fetch(limit, self.poll_timeout)
                if not batch:
                    if idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                        break
                    continue
                await self.process(batch)
                last = time.monotonic()
        return self.stats

    def close(self) -> None:
        """Stop what the service started beside the consumer, flush the prediction log and
        close the decision log (idempotent)."""
        closers, self.on_close = self.on_close, []
        for closer in reversed(closers):
            try:
                closer()
            except Exception as exc:  # closing must go on: the decision log is next
                _log.warning("closing the consumer: %s", exc)
        if self.prediction_log is not None:
            self.prediction_log.close()
            self.prediction_log = None
        self.decisions.close()
