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
from datetime import UTC, datetime
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


class Schedule:
    """``@every <duration>`` or a five-field cron expression (minute hour day month weekday)."""

    def __init__(self, expression: str) -> None:
        self.expression = expression.strip()
        self.every_s: float | None = None
        self.fields: list[set[int]] = []
        if self.expression.startswith("@every"):
            import pandas as pd

            try:
                span = pd.Timedelta(self.expression.removeprefix("@every").strip())
            except ValueError:
                raise self._error() from None
            self.every_s = span.total_seconds()
            return
        parts = self.expression.split()
        ranges = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
        if len(parts) != 5:
            raise self._error()
        self.fields = [self._parse(p, lo, hi) for p, (lo, hi) in zip(parts, ranges, strict=True)]

    def _error(self) -> ConfigError:
        return ConfigError(
            f"cannot read the schedule {self.expression!r}",
            hint='use five cron fields like "0 3 * * *" or "@every 6h"',
        )

    def _parse(self, part: str, lo: int, hi: int) -> set[int]:
        values: set[int] = set()
        for item in part.split(","):
            base, _, step_text = item.partition("/")
            step = int(step_text) if step_text.isdigit() else 1
            if base == "*":
                start, end = lo, hi
            elif "-" in base:
                a, b = base.split("-", 1)
                start, end = int(a), int(b)
            elif base.isdigit():
                start = end = int(base)
            else:
                raise self._error()
            if not lo <= start <= end <= hi:
                raise self._error()
            values.update(range(start, end + 1, step))
        return values

    def due(self, last: datetime | None, now: datetime) -> bool:
        """Whether a run is due at ``now`` given the last scheduled run."""
        if self.every_s is not None:
            return last is None or (now - last).total_seconds() >= self.every_s
        minute, hour, day, month, weekday = self.fields
        matches = (
            now.minute in minute
            and now.hour in hour
            and now.day in day
            and now.month in month
            and (now.weekday() + 1) % 7 in weekday
        )
        same_minute = last is not None and last.replace(second=0, microsecond=0) == now.replace(
            second=0, microsecond=0
        )
        return matches and not same_minute


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
