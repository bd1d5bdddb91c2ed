"""June through the decision service, one simulated day at a time.

Each day:

1. the day's transactions (their labels left out) are a file that the decision service
   consumes (:func:`loopline.stream.service.open_consumer`, what ``loopline stream
   consume FILE`` runs): masked at the door, online features, fraud-fast decides with
   the heavy model's latest scores, decisions and review tasks committed;
2. the heavy model re-scores the day in batch (:func:`loopline.stream.rescore.rescore`,
   its inputs the heavy features the batch side computed offline), which also logs each
   transaction's first heavy score as fraud-heavy's prediction (request id = transaction
   id);
3. the analyst works the review queue: the ``budget`` highest expected losses, answered
   from the simulator's truth, applied as feedback (for both models) and late labels
   (:func:`loopline.stream.reviews.apply_reviews`);
4. the true labels of the transactions of ``delay`` days ago arrive
   (:func:`loopline.stream.reviews.record_labels`, source ``delayed``, feedback for both
   models);
5. the plan's events: the heavy model's retrain through the gate; a bad release promoted
   by hand; the watcher (``loopline watch --on-drift --once``) with its automatic
   rollback on delayed-label average precision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.examples.fraud.data import LABELS, World

if TYPE_CHECKING:
    import pandas as pd

    from loopline.config import Settings
    from loopline.core.metadata import MetadataStore
    from loopline.stream.policy import FraudSettings

__all__ = ["ANALYST", "HEAVY", "Plan", "Simulation"]

HEAVY = "fraud-heavy"
ANALYST = "analyst-sim"


class _Clock:
    """Seconds per phase of a day."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, phase: str, fn: Any, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[phase] = round(time.perf_counter() - started, 3)


@dataclass(frozen=True)
class Plan:
    """What happens when (days are June's, 1-based; events at the end of the day)."""

    budget: int = 10  # reviews a day: the handbook's 100 cards a day, for a tenth of them
    delay: int = 7  # days until a transaction's true label is known
    retrain_day: int = 14
    bad_release_day: int = 16


@dataclass
class Simulation:
    """The June loop (see the module); :attr:`days` and :attr:`events` say what happened."""

    settings: Settings
    store: MetadataStore
    world: World
    heavy: pd.DataFrame  # heavy features by TRANSACTION_ID
    config: FraudSettings
    folder: Path  # where the day files go (a temporary folder)
    plan: Plan = field(default_factory=Plan)
    retrain: Any = None  # called at retrain_day -> a summary dict
    bad_release: Any = None  # called at bad_release_day -> a summary dict
    days: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    truth: dict[str, int] = field(default_factory=dict)

    def run(self) -> None:
        june = self.world.june
        self.truth = dict(
            zip(june["TRANSACTION_ID"].astype(str), june["TX_FRAUD"].astype(int), strict=True)
        )
        day_of = june["TX_DATETIME"].dt.strftime("%Y-%m-%d")
        by_day = {day: june[day_of == day] for day in self.world.june_days}
        for i, day in enumerate(self.world.june_days, start=1):
            clock = _Clock()
            row: dict[str, Any] = {"day": day}
            row |= clock("decide", self._decide, day, by_day[day])
            row |= clock("rescore", self._rescore)
            row |= clock("analyst", self._analyst)
            late = i - self.plan.delay
            past = by_day[self.world.june_days[late - 1]] if late >= 1 else june.iloc[:0]
            row["delayed_labels"] = clock("labels", self._delayed, past)
            row["heavy_champion"] = self.store.current_alias(HEAVY, "champion")
            if i == self.plan.retrain_day and self.retrain is not None:
                self._event(day, "retrain", clock("retrain", self.retrain))
            if i == self.plan.bad_release_day and self.bad_release is not None:
                self._event(day, "bad_release", clock("release", self.bad_release))
            for event in clock("watch", self._watch):
                self._event(day, event.pop("trigger"), event)
            row["seconds"] = clock.seconds
            self.days.append(row)

    def _event(self, day: str, kind: str, details: dict[str, Any]) -> None:
        self.events.append({"day": day, "event": kind, **details})

    # -- 1. the decision service ------------------------------------------------------------
    def _decide(self, day: str, rows: pd.DataFrame) -> dict[str, Any]:
        from loopline.stream.service import open_consumer, run_consumer

        path = self.folder / f"transactions_{day}.parquet"
        rows.drop(columns=list(LABELS)).to_parquet(path, index=False)
        consumer = open_consumer(self.settings, str(path), config=self.config)
        stats = run_consumer(consumer).summary()
        path.unlink()
        return {
            "transactions": len(rows),
            "frauds": int(rows["TX_FRAUD"].sum()),
            "decided": stats["decided"],
            "duplicates": stats["duplicates"],
            "dead_lettered": stats["dead_lettered"],
            "actions": stats["actions"],
            "fallbacks": stats["fallbacks"],
            "decided_per_s": stats["decided_per_s"],
        }

    # -- 2. the heavy model's batch re-score ----------------------------------------------------
    def heavy_inputs(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The heavy model's inputs for the decisions' frame: the offline heavy features of
        each transaction (by id) beside what the decision recorded."""
        import pandas as pd

        ids = pd.to_numeric(frame["tx_id"], errors="coerce").to_numpy()
        found = self.heavy.reindex(ids).reset_index(drop=True)
        kept = frame.drop(columns=[c for c in found.columns if c in frame.columns])
        return pd.concat([kept.reset_index(drop=True), found], axis=1)

    def _rescore(self) -> dict[str, Any]:
        from loopline.stream.rescore import rescore

        result = rescore(self.settings, features=self.heavy_inputs, config=self.config)
        return {
            "rescored": result.scored,
            "rescore_version": result.version,
            "newly_suspicious": result.newly_suspicious,
            "heavy_logged": result.logged,
        }

    # -- 3. the analyst ---------------------------------------------------------------------------
    def _analyst(self) -> dict[str, Any]:
        from loopline.stream.reviews import apply_reviews, open_review_queue

        assert self.config.review_queue is not None
        queue = open_review_queue(self.store, self.config.review_queue)
        answers: list[tuple[str, str]] = []
        for _ in range(self.plan.budget):
            task = queue.next_task(ANALYST)
            if task is None:
                break
            truth = self.truth.get(str(task.item_id))
            label = "fraud" if truth == 1 else "legit"
            queue.submit(task.id, ANALYST, label)
            answers.append((str(task.item_id), label))
        applied = apply_reviews(self.settings, config=self.config)
        backlog = len(queue.tasks(status="open"))
        return {
            "reviewed": len(answers),
            "reviewed_fraud": sum(v == "fraud" for _, v in answers),
            "reviews_applied": applied.applied,
            "review_backlog": backlog,
        }

    # -- 4. the delayed labels --------------------------------------------------------------------
    def _delayed(self, rows: pd.DataFrame) -> int:
        import pandas as pd

        from loopline.stream.reviews import record_labels

        if rows.empty:
            return 0
        ids = rows["TRANSACTION_ID"].astype(str).tolist()
        labels = rows["TX_FRAUD"].astype(int).astype(str).tolist()
        known = (rows["TX_DATETIME"] + pd.Timedelta(days=self.plan.delay)).tolist()
        record_labels(
            self.settings,
            list(zip(ids, labels, known, strict=True)),
            source="delayed",
            store=self.store,
            config=self.config,
        )
        return len(ids)

    # -- 5. the watcher ----------------------------------------------------------------------------
    def _watch(self) -> list[dict[str, Any]]:
        from loopline.orchestrate.watch import Watcher

        if not self.settings.monitoring:
            return []
        return Watcher(self.settings, self.store, on_drift=True).run_once()
