"""``loopline watch``: a long-lived process that retrains when something calls for it.

Triggers, checked every ``interval_s``:

- **new data**: the files under a data path changed (new, removed or rewritten files), once
  they have stopped changing for ``settle_s`` (a folder receiving 500 files triggers once,
  after the copy). Version control, DVC's cache and Loopline's own state (``.git``, ``.dvc``,
  ``.loopline`` and the project's home) are not data: a run writing there triggers nothing.
  For a folder that DVC tracks (or its ``.dvc`` file) the new version is the one DVC records:
  a changed ``.dvc`` file triggers (``dvc add`` run again, or a ``git pull`` that brought a new
  one), once DVC says the folder holds what it records (files copied but not ``dvc add``-ed
  yet, or a ``.dvc`` file pulled without its data, wait for ``dvc add`` / ``dvc pull``);
- **drift and alerts**: the project's monitoring rules fire (their actions run, ``retrain``
  included), and the automatic-rollback rules are checked;
- **schedule**: a cron expression (``"0 3 * * *"``) or ``"@every 6h"``.

The training pipeline's own gate decides whether a new model becomes champion. Each run the
watcher starts is recorded in the audit trail (``alert_events``, rule ``watch``) with what
triggered it: the files added, removed and changed, the DVC file with its hash before and
after and the git revision, or the schedule; ``loopline lineage`` shows it. A failing run is
logged and retried with exponential back-off; the loop keeps going. SIGINT/SIGTERM stop it
cleanly between checks.
"""

from __future__ import annotations

import logging
import os
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
    from loopline.data.dvc import DvcVersion

log = logging.getLogger("loopline.watch")

Fingerprint = tuple[tuple[str, int, int], ...]
# Version control, DVC's cache and Loopline's own state: what is written there is no new data.
_NOT_DATA = frozenset({".git", ".dvc", ".loopline"})
_SHOWN_FILES = 20
#: The rule name of the watcher's runs in the audit trail (``alert_events``).
WATCH_RULE = "watch"


def _fingerprint(path: Path, skip: frozenset[Path] = frozenset()) -> Fingerprint:
    """Names, sizes and modification times of the files under ``path`` (cheap to poll),
    without the folders of version control, DVC and Loopline, and those in ``skip``."""
    if not path.exists():
        return ()
    files = [path] if path.is_file() else []
    for folder, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if d not in _NOT_DATA and Path(folder, d) not in skip]
        files.extend(Path(folder, name) for name in names)
    found = []
    for file in sorted(files):
        try:
            stat = file.stat()
        except FileNotFoundError:  # removed since it was listed
            continue
        found.append((str(file), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


def _changes(before: Fingerprint, after: Fingerprint, root: Path) -> dict[str, Any]:
    """How many files were added, removed and changed, and the first of them by name
    (relative to ``root``, the project's folder, when inside it)."""
    old = {path: rest for path, *rest in before}
    new = {path: rest for path, *rest in after}
    added = sorted(new.keys() - old.keys())
    removed = sorted(old.keys() - new.keys())
    changed = sorted(p for p in new.keys() & old.keys() if new[p] != old[p])
    shown = [
        os.path.relpath(p, root) if Path(p).is_relative_to(root) else p
        for p in [*added, *removed, *changed][:_SHOWN_FILES]
    ]
    return {"added": len(added), "removed": len(removed), "changed": len(changed), "files": shown}


def _files_text(files: dict[str, Any]) -> str:
    """``": 500 added files (a.csv, b.csv, c.csv and 497 more)"``, for the run's reason."""
    counts = ", ".join(f"{files[k]} {k}" for k in ("added", "removed", "changed") if files[k])
    if not counts:
        return ""
    total = files["added"] + files["removed"] + files["changed"]
    named = ", ".join(files["files"][:3]) + (f" and {total - 3} more" if total > 3 else "")
    return f": {counts} files ({named})"


def _dvc_holds(version: DvcVersion) -> bool:
    """Whether the workspace holds what DVC records for the output (``dvc status``): False
    while files are copied but not ``dvc add``-ed, or a ``.dvc`` file came without its data."""
    try:
        from dvc.repo import Repo
    except ImportError:
        log.warning("dvc is not installed: not checking that %s is in sync", version.output)
        return True
    with Repo(version.repo) as repo:
        # DVC reads a relative target from the working directory, not the repository.
        return not repo.status(targets=[str(Path(version.repo) / version.tracked_by)])


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
    """Checks the triggers and runs the pipeline; :meth:`run_once` is one pass.

    ``on_new_data`` is a file or folder, or a ``.dvc`` file (the output it tracks is
    watched). A change triggers once no file has changed for ``settle_s`` seconds (0: at
    once), measured on ``clock``.
    """

    settings: Settings
    store: MetadataStore
    on_new_data: Path | None = None
    on_drift: bool = False
    schedule: Schedule | None = None
    state_path: Path | None = None  # remembers the data seen, across restarts
    backoff_s: float = 5.0
    max_backoff_s: float = 600.0
    settle_s: float = 0.0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _seen: Fingerprint | None = None
    _pending: set[str] = field(default_factory=set)  # reasons waiting for a successful run
    _triggers: list[dict[str, Any]] = field(default_factory=list)  # what they were, in full
    _candidate: tuple[Fingerprint, float] | None = None  # changed files, and since when
    _waiting: Fingerprint | None = None  # seen, but DVC does not record it (yet)
    _target: tuple[Path, Path | None] | None = None  # (data, the DVC file tracking it)
    _md5: str | None = None  # DVC's hash of the data last accepted
    _last_scheduled: datetime | None = None
    _failures: int = 0
    _retry_at: float = 0.0

    def run_once(self) -> list[dict[str, Any]]:
        """Check every trigger once; returns what happened (for logs and tests)."""
        from loopline.orchestrate.actions import check_auto_rollback, retrain, run_actions
        from loopline.orchestrate.rules import evaluate_rules, load_monitoring

        config = load_monitoring(self.settings)
        events: list[dict[str, Any]] = []
        for trigger in self._data_and_schedule_triggers():
            if trigger.get("status") == "waiting":
                events.append(trigger)
                continue
            self._pending.add(trigger["reason"])
            self._triggers.append(trigger)
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

    def _data_and_schedule_triggers(self) -> list[dict[str, Any]]:
        triggers = []
        if self.on_new_data is not None:
            found = self._new_data()
            if found is not None:
                triggers.append(found)
        now = self.clock()
        if self.schedule is not None and self.schedule.due(self._last_scheduled, now):
            expression = self.schedule.expression
            triggers.append(
                {"kind": "schedule", "reason": f"schedule {expression}", "schedule": expression}
            )
            self._last_scheduled = now
        return triggers

    def _new_data(self) -> dict[str, Any] | None:
        """A settled change of the watched data (or a note that it waits for DVC), or None."""
        data, dvcfile = self._watched()
        current = self._current(data, dvcfile)
        if self._seen is None:
            self._seen = self._load_seen()
            if self._seen is None:  # what is there at the start is not new
                self._accept(current, self._dvc_version(data).md5 if dvcfile else None)
                return None
        if current == self._seen:
            if self._candidate is not None:  # changed, and changed back
                self._accept(current, None)
            return None
        now = self.clock().timestamp()
        if self._candidate is None or self._candidate[0] != current:
            self._changing(current, now)  # still being written, perhaps: wait for quiet
            since = now
        else:
            since = self._candidate[1]
        if now - since < self.settle_s:
            return None
        change: dict[str, Any] = {
            "kind": "new_data",
            "path": str(data),
            "files": _changes(self._seen, current, self.settings.project_root.absolute()),
        }
        reason = f"new data in {self.on_new_data}"
        if dvcfile is not None:
            if self._waiting == current:
                return None  # DVC did not record these files: checked already
            version = self._dvc_version(data)
            if not _dvc_holds(version):
                self._waiting = current
                why = (
                    f"{version.tracked_by} records md5 {version.md5} but {version.output} holds "
                    f"other files: waiting for `dvc add {version.output}` (new files) or "
                    f"`dvc pull {version.output}` (a new {version.tracked_by})"
                )
                log.warning("watch: %s", why)
                return {"trigger": reason, "status": "waiting", "reason": why}
            before = self._md5
            if before == version.md5:  # the same version as DVC sees it (files touched)
                self._accept(current, version.md5)
                return None
            change["dvc"] = {
                "file": version.tracked_by,
                "md5_before": before,
                "md5": version.md5,
                "git_rev": version.git_rev,
                "dirty": version.dirty,
            }
            reason += f" ({version.tracked_by}: md5 {before} -> {version.md5})"
            self._accept(current, version.md5)
        else:
            self._accept(current, None)
        change["reason"] = reason + _files_text(change["files"])
        return change

    def _watched(self) -> tuple[Path, Path | None]:
        """(the data path, the DVC file tracking it or None), found once."""
        if self._target is None:
            from loopline.data.dvc import dvc_version, is_dvc_tracked

            assert self.on_new_data is not None
            data = self.on_new_data.absolute()
            if data.suffix == ".dvc" and data.is_file():
                data = _tracked_output(data)
            dvcfile = None
            if is_dvc_tracked(data):
                version = dvc_version(data)
                dvcfile = Path(version.repo) / version.tracked_by
            self._target = (data, dvcfile)
        return self._target

    def _current(self, data: Path, dvcfile: Path | None) -> Fingerprint:
        skip = frozenset({self.settings.home_dir.absolute()})
        root = self.settings.artifact_root or ""
        if "://" not in root:
            skip |= {Path(root).absolute()}
        return _fingerprint(data, skip) + (_fingerprint(dvcfile) if dvcfile else ())

    @staticmethod
    def _dvc_version(data: Path) -> DvcVersion:
        from loopline.data.dvc import dvc_version

        return dvc_version(data)

    def _accept(self, current: Fingerprint, md5: str | None) -> None:
        """Take ``current`` (and DVC's ``md5`` of it) as the data seen: no longer new."""
        self._seen, self._candidate, self._waiting = current, None, None
        self._md5 = md5 or self._md5
        key = str(self.on_new_data)
        dvc = {f"{self._watched()[0]}#dvc": md5} if md5 is not None else {}
        self._save_state({key: current, **dvc}, drop=f"{key}#changing")

    def _changing(self, current: Fingerprint, since: float) -> None:
        """Files changed and may still be changing: remembered across restarts, so that
        ``loopline watch --once`` run again later sees that they have settled."""
        self._candidate = (current, since)
        self._save_state({f"{self.on_new_data}#changing": {"files": current, "since": since}})

    def _save_state(self, values: dict[str, Any], drop: str | None = None) -> None:
        if self.state_path is None:
            return
        import orjson

        state = {k: v for k, v in self._load_state().items() if k != drop}
        state.update(values)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(state))
        tmp.replace(self.state_path)

    def _load_state(self) -> dict[str, Any]:
        if self.state_path is None or not self.state_path.is_file():
            return {}
        import orjson

        return dict(orjson.loads(self.state_path.read_bytes()))

    def _load_seen(self) -> Fingerprint | None:
        """The data seen before a restart (and the DVC hash and files changing then)."""
        state = self._load_state()
        changing = state.get(f"{self.on_new_data}#changing")
        if changing is not None:
            self._candidate = (_as_fingerprint(changing["files"]), float(changing["since"]))
        self._md5 = state.get(f"{self._watched()[0]}#dvc")
        saved = state.get(str(self.on_new_data))
        return None if saved is None else _as_fingerprint(saved)

    def _retrain(self, config: Any, reason: str, retrain: Callable[..., Any]) -> dict[str, Any]:
        try:
            outcome = retrain(self.settings, config, reason=reason)
        except Exception as exc:  # keep watching: log, back off, try again later
            self._failures += 1
            delay = min(self.backoff_s * 2 ** (self._failures - 1), self.max_backoff_s)
            self._retry_at = time.monotonic() + delay
            log.error("run failed (%s); retrying in %.0f s", exc, delay)
            failed = {"run_id": getattr(exc, "run_id", None), "error": str(exc)}
            self._record(config, reason, "failed", failed)
            return {"trigger": reason, "status": "failed", "error": str(exc), "retry_in_s": delay}
        self._record(config, reason, "completed", outcome)
        self._failures = 0
        self._pending.clear()
        self._triggers.clear()
        return {"trigger": reason, "status": "completed", **outcome}

    def _record(self, config: Any, reason: str, status: str, outcome: dict[str, Any]) -> None:
        """Put the run and what triggered it in the audit trail, for lineage and people."""
        pipeline = config.retrain.pipeline if config.retrain is not None else None
        kinds = sorted({t["kind"] for t in self._triggers})
        files = sum(
            sum(t["files"][k] for k in ("added", "removed", "changed"))
            for t in self._triggers
            if t["kind"] == "new_data"
        )
        self.store.record_alert(
            model_name=str(outcome.get("model") or pipeline or "-"),
            model_version=outcome.get("version"),
            rule=WATCH_RULE,
            metric="+".join(kinds) or "retrain",
            value=float(files) if "new_data" in kinds else None,
            threshold=None,
            window_start=None,
            window_end=None,
            action="retrain",
            status=status,
            details={
                "message": reason,
                "pipeline": pipeline,
                "triggers": self._triggers,
                **outcome,
            },
        )

    def next_wait(self, interval_s: float) -> float:
        """Seconds until the next check: sooner while changed files settle."""
        return interval_s if self._candidate is None else min(interval_s, self.settle_s)

    def run_forever(self, interval_s: float, stop: threading.Event) -> None:
        """Check the triggers every ``interval_s`` until ``stop`` is set."""
        while not stop.is_set():
            try:
                for event in self.run_once():
                    log.warning("watch: %s", event)
            except Exception as exc:  # a broken check must not end the watch
                log.error("watch check failed: %s", exc)
            stop.wait(self.next_wait(interval_s))


def _as_fingerprint(saved: list[list[Any]]) -> Fingerprint:
    return tuple((str(path), int(size), int(mtime)) for path, size, mtime in saved)


def _tracked_output(dvcfile: Path) -> Path:
    """The path a ``.dvc`` file tracks (its first output), beside it."""
    import yaml

    from loopline.errors import DataError

    try:
        outs = (yaml.safe_load(dvcfile.read_text(encoding="utf-8")) or {}).get("outs") or []
        return dvcfile.parent / str(outs[0]["path"])
    except (OSError, yaml.YAMLError, AttributeError, IndexError, KeyError, TypeError):
        raise DataError(
            f"cannot read the output {dvcfile} tracks (expected `outs: [{{path: ...}}]`)",
            hint="watch the DVC-tracked folder itself, or write the file again with `dvc add`",
        ) from None


def trigger_of(store: MetadataStore, model_name: str, run_id: str) -> dict[str, Any] | None:
    """What made the watcher start run ``run_id`` of ``model_name`` (its audit record's
    details: ``message``, ``triggers``...), or None when no watcher started it."""
    for event in store.alerts(model_name, limit=1000):
        if event["rule"] == WATCH_RULE and event["details"].get("run_id") == run_id:
            return dict(event["details"])
    return None
