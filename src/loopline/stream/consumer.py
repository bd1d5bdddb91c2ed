"""The streaming consumer: validate → mask PII → features → score → decide → acknowledge.

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
6. **score** the batch with the model (``predict_proba``) and write every decision in ONE
   database transaction (:class:`~loopline.stream.decisions.DecisionLog`);
7. only then **acknowledge** the batch.

A crash (even SIGKILL) before step 6 commits leaves the batch pending at the broker, which
delivers it again; a crash between 6 and 7 makes step 4 acknowledge it on redelivery. So
every transaction is decided exactly once. A feature store that fails (Redis down) stops
the consumer with :class:`~loopline.stream.source.SourceUnavailable` before anything of
the batch is decided or acknowledged: there is no fallback that could score with a
feature the store did not give, and skipping the update would leave later features wrong.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from loopline.errors import LooplineError
from loopline.features import DEGRADED
from loopline.stream.decisions import Decision, DecisionLog
from loopline.stream.message import DeadLetter, Message
from loopline.stream.schema import Transaction, check
from loopline.stream.scoring import ProbabilisticModel, Scorer
from loopline.stream.source import Source, SourceUnavailable, StreamError

__all__ = [
    "BatchOutcome",
    "Consumer",
    "ConsumerStats",
    "OnlineFeatures",
    "RecordMasker",
]


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
    started: float = field(default_factory=time.time)
    first_commit: float | None = None
    last_commit: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

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


class Consumer:
    """Decides every transaction of ``source`` exactly once (see the module's docstring).

    ``model`` is anything with ``predict_proba(DataFrame)`` (a registry ``Model``, a
    scikit-learn estimator fitted on a DataFrame); ``features`` the online feature store
    (None: the model reads the transaction's own numeric fields); ``masker`` the PII masker
    (None only for data that holds no personal data). A transaction is flagged when its
    score is at least ``threshold``.
    """

    def __init__(
        self,
        source: Source,
        *,
        model: ProbabilisticModel,
        decisions: DecisionLog,
        features: OnlineFeatures | None = None,
        masker: RecordMasker | None = None,
        threshold: float = 0.5,
        schema: type[BaseModel] = Transaction,
        id_field: str = "TRANSACTION_ID",
        batch_size: int = 256,
        poll_timeout: float = 0.1,
        max_attempts: int = 10,
        columns: Sequence[str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise StreamError(f"batch_size must be at least 1, found {batch_size}")
        self.source = source
        self.scorer = Scorer(model, columns=columns)
        self.decisions = decisions
        self.features = features
        self.masker = masker
        self.threshold = threshold
        self.schema = schema
        self.id_field = id_field
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.max_attempts = max_attempts
        self.stats = ConsumerStats()

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

        if todo:
            rows = [self._inputs(tx_id, masked) for _, tx_id, masked in todo]
            scores = self.scorer.score(rows)
            columns = self.scorer.columns
            decisions = [
                Decision(
                    tx_id=tx_id,
                    score=float(score),
                    flagged=bool(score >= self.threshold),
                    message_id=message.id,
                    attempt=message.attempt,
                    features={c: row[c] for c in columns},
                    produced_at=message.produced_at,
                )
                for (message, tx_id, _), row, score in zip(todo, rows, scores, strict=True)
            ]
            outcome.committed_at = self.decisions.write(decisions)
            outcome.decided = len(decisions)
            outcome.flagged = sum(d.flagged for d in decisions)
            for d in decisions:
                if d.produced_at is not None:
                    self.stats.latencies_ms.append((outcome.committed_at - d.produced_at) * 1000)
            if self.stats.first_commit is None:
                self.stats.first_commit = outcome.committed_at
            self.stats.last_commit = outcome.committed_at

        settled = [message for message, _, _ in todo] + repeats
        if settled:
            await self.source.ack(settled)
        outcome.duplicates = len(repeats)
        self.stats.batches += 1
        self.stats.messages += len(batch)
        self.stats.decided += outcome.decided
        self.stats.duplicates += outcome.duplicates
        self.stats.dead_lettered += outcome.dead_lettered
        self.stats.flagged += outcome.flagged
        return outcome

    def _tx_id(self, masked: Mapping[str, Any]) -> str:
        value = masked.get(self.id_field)
        if value is None:
            raise StreamError(
                f"the PII policy removed {self.id_field}, the transaction id the consumer "
                "decides by",
                hint=f"keep {self.id_field} (or pseudonymise it: a keyed hash stays unique)",
            )
        return str(value)

    def _inputs(self, tx_id: str, masked: dict[str, Any]) -> dict[str, Any]:
        row = _numbers(masked)
        if self.features is None:
            return row
        try:
            answer = self.features.update_and_read(masked)
        except LooplineError:
            raise
        except Exception as exc:
            raise SourceUnavailable(
                f"the feature store failed for transaction {tx_id}: {type(exc).__name__}: {exc}",
                hint="nothing of this batch was decided or acknowledged; bring the store back "
                "(is Redis running?) and start the consumer again: the batch is delivered again",
            ) from None
        if answer.get(DEGRADED):
            # The store answered without its state (its "degraded" fallback): deciding with
            # it would score NaN features and never count the transaction. Stop instead.
            raise SourceUnavailable(
                f"the feature store answered without its state for transaction {tx_id} "
                "(degraded: it cannot reach its data)",
                hint="nothing of this batch was decided or acknowledged; bring the store back "
                "and start the consumer again: the batch is delivered again",
            )
        row.update(answer)
        return row

    # -- the loop ------------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Pay the one-time costs before the first message: the model's first call, and
        the check of its lean path on ``1 + inputs`` points (zero, then each input alone:
        an affine function equal at those points is equal everywhere), and the decision
        log's first query."""
        columns = self.scorer.columns
        probes = [dict.fromkeys(columns, 0.0)]
        for i, column in enumerate(columns):
            probes.append({**probes[0], column: float(i + 1)})
        self.scorer.score(probes)
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
