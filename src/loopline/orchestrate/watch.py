"""``loopline watch``: a long-lived process that retrains when something calls for it.

Triggers, checked every ``interval_s``:

- **new data**: the files under a data path changed (new, removed or rewritten files);
- **drift and alerts**: the project's monitoring rules fire (their actions run, ``retrain``
  included), and the automatic-rollback rules are checked;
- **schedule**: a cron expression (``"0 3 * * *"``) or ``"@every 6h"``.

The training pipeline's own gate decides whether a new model becomes champion. A failing
run is logged and retried with exponential back-off; the loop keeps going. SIGINT/SIGTERM
stop it cleanly between checks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.errors import ConfigError

if TYPE_CHECKING:
    from loopline.config import Settings
    from loopline.core.metadata import MetadataStore

log = logging.getLogger("loopline.watch")


def _fingerprint(path: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the files under ``path`` (cheap to poll)."""
    if not path.exists():
        return ()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def _single_value_ranges(expression: str) -> str:
    """``expression`` with each range of equal bounds (``5-5``, ``mon-mon/2``) as one value.

    croniter reads an equal-bound range as the whole cycle (``5-5`` in the minute field is
    every minute); in cron, and in Loopline's schedules before croniter, it is that value.
    """
    fields = []
    for part in expression.split():
        items = []
        for item in part.split(","):
            base = item.partition("/")[0]
            low, dash, high = base.partition("-")
            items.append(low if dash and low and low.lower() == high.lower() else item)
        fields.append(",".join(items))
    return " ".join(fields)


class Schedule:
    """``@every <duration>`` or a five-field cron expression (minute hour day month weekday).

    Cron fields are read by the ``croniter`` package: ``*``, numbers, ranges (``1-5``),
    steps (``*/15``, ``0-30/10``, ``5/15`` = ``5-59/15``), lists (``1,15``), month and
    weekday names (``jan``, ``mon-fri``; weekday 0 and 7 are Sunday). When both the day of
    month and the weekday are restricted a time must match both (``0 9 13 * 5``: Friday
    the 13th), as Loopline's schedules always did; vixie cron would take either. Times are
    read in the time zone of the datetimes given (the watch loop uses UTC).
    """

    def __init__(self, expression: str) -> None:
        self.expression = expression.strip()
        self.every_s: float | None = None
        self._cron = ""
        if self.expression.startswith("@every"):
            import pandas as pd

            try:
                span = pd.Timedelta(self.expression.removeprefix("@every").strip())
            except ValueError:
                raise self._error() from None
            self.every_s = span.total_seconds()
            return
        from croniter import croniter

        # croniter also reads six- and seven-field forms (seconds, year) and @daily-style
        # names: keep to five fields. strict=True rejects a day that none of the months
        # has (``0 0 30 2 *``), which would never fire.
        self._cron = _single_value_ranges(self.expression)
        if len(self.expression.split()) != 5 or not croniter.is_valid(self._cron, strict=True):
            raise self._error()

    def _error(self) -> ConfigError:
        return ConfigError(
            f"cannot read the schedule {self.expression!r}",
            hint='use five cron fields like "0 3 * * *" or "@every 6h"',
        )

    def due(self, last: datetime | None, now: datetime) -> bool:
        """Whether a run is due at ``now`` given the last scheduled run.

        Cron: ``now`` falls in a matching minute and ``last`` was not in that minute.
        ``@every``: at least the interval has passed since ``last`` (or there is none).
        """
        if self.every_s is not None:
            return last is None or (now - last).total_seconds() >= self.every_s
        from croniter import croniter

        matches = bool(croniter.match(self._cron, now, day_or=False))
        same_minute = last is not None and last.replace(second=0, microsecond=0) == now.replace(
            second=0, microsecond=0
        )
        return matches and not same_minute

    def next_run(self, after: datetime) -> datetime:
        """The first scheduled time strictly after ``after``, in ``after``'s time zone.

        ``@every``: ``after`` plus the interval. Cron: the next matching minute.

        Raises:
            ConfigError: no matching time in croniter's search horizon (a day-and-weekday
                combination that practically never occurs, such as ``0 0 29 2 1``).
        """
        if self.every_s is not None:
            return after + timedelta(seconds=self.every_s)
        from croniter import CroniterBadDateError, croniter

        try:
            found: datetime = croniter(self._cron, after, day_or=False).get_next(datetime)
        except CroniterBadDateError:
            raise ConfigError(
                f"the schedule {self.expression!r} never fires after {after.isoformat()}",
                hint="the day of month and the weekday must both match; relax one of them",
            ) from None
        return found


@dataclass
class Watcher:
    """Checks the triggers and runs the pipeline; :meth:`run_once` is one pass."""

    settings: Settings
    store: MetadataStore
    on_new_data: Path | None = None
    on_drift: bool = False
    schedule: Schedule | None = None
    state_path: Path | None = None  # remembers the data seen, across restarts
    backoff_s: float = 5.0
    max_backoff_s: float = 600.0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _seen: tuple[tuple[str, int, int], ...] | None = None
    _pending: set[str] = field(default_factory=set)  # reasons waiting for a successful run
    _last_scheduled: datetime | None = None
    _failures: int = 0
    _retry_at: float = 0.0

    def run_once(self) -> list[dict[str, Any]]:
        """Check every trigger once; returns what happened (for logs and tests)."""
        from loopline.orchestrate.actions import check_auto_rollback, retrain, run_actions
        from loopline.orchestrate.rules import evaluate_rules, load_monitoring

        config = load_monitoring(self.settings)
        events: list[dict[str, Any]] = []
        self._pending.update(self._data_and_schedule_reasons())
        if self.on_drift:
            for alert in evaluate_rules(self.settings, self.store, config):
                outcome = run_actions(self.settings, self.store, alert, config)
                events.append({"trigger": "alert", "rule": alert.rule, "actions": outcome})
            for rule in config.auto_rollback:
                done = check_auto_rollback(self.settings, self.store, rule)
                if done is not None:
                    events.append({"trigger": "auto_rollback", **done})
        if self._pending and time.monotonic() >= self._retry_at:
            events.append(self._retrain(config, "; ".join(sorted(self._pending)), retrain))
        return events

    def _data_and_schedule_reasons(self) -> list[str]:
        reasons = []
        if self.on_new_data is not None:
            current = _fingerprint(self.on_new_data)
            if self._seen is None:
                self._seen = self._load_seen()
            if self._seen is not None and current != self._seen:
                reasons.append(f"new data in {self.on_new_data}")
            self._seen = current
            self._save_seen(current)
        now = self.clock()
        if self.schedule is not None and self.schedule.due(self._last_scheduled, now):
            reasons.append(f"schedule {self.schedule.expression}")
            self._last_scheduled = now
        return reasons

    def _load_seen(self) -> tuple[tuple[str, int, int], ...] | None:
        if self.state_path is None or not self.state_path.is_file():
            return None
        import orjson

        saved = orjson.loads(self.state_path.read_bytes()).get(str(self.on_new_data))
        return None if saved is None else tuple(tuple(entry) for entry in saved)

    def _save_seen(self, current: tuple[tuple[str, int, int], ...]) -> None:
        if self.state_path is None:
            return
        import orjson

        state = orjson.loads(self.state_path.read_bytes()) if self.state_path.is_file() else {}
        state[str(self.on_new_data)] = current
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(state))
        tmp.replace(self.state_path)

    def _retrain(self, config: Any, reason: str, retrain: Callable[..., Any]) -> dict[str, Any]:
        try:
            outcome = retrain(self.settings, config, reason=reason)
        except Exception as exc:  # keep watching: log, back off, try again later
            self._failures += 1
            delay = min(self.backoff_s * 2 ** (self._failures - 1), self.max_backoff_s)
            self._retry_at = time.monotonic() + delay
            log.error("run failed (%s); retrying in %.0f s", exc, delay)
            return {"trigger": reason, "status": "failed", "error": str(exc), "retry_in_s": delay}
        self._failures = 0
        self._pending.clear()
        return {"trigger": reason, "status": "completed", **outcome}

    def run_forever(self, interval_s: float, stop: threading.Event) -> None:
        """Check the triggers every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                for event in self.run_once():
                    log.warning("watch: %s", event)
            except Exception as exc:  # a broken check must not end the watch
                log.error("watch check failed: %s", exc)
            stop.wait(interval_s)
