"""Alert rules, schedules and the watch loop's triggers, back-off and state."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from loopline.config import load_settings
from loopline.core.metadata import MetadataStore
from loopline.errors import ConfigError
from loopline.orchestrate.rules import load_monitoring
from loopline.orchestrate.watch import Schedule, Watcher


def test_monitoring_config_is_validated_with_the_field_named(project: Path) -> None:
    settings = load_settings(
        project, monitoring={"rules": [{"name": "r", "model": "m", "metric": "speed"}]}
    )
    with pytest.raises(ConfigError, match=r"rules\.0\.metric"):
        load_monitoring(settings)
    ok = load_settings(
        project,
        monitoring={
            "rules": [{"name": "r", "model": "m", "metric": "accuracy", "threshold": 0.8}],
            "retrain": {"pipeline": "sentiment"},
        },
    )
    config = load_monitoring(ok)
    assert config.rules[0].op == "<" and config.rules[0].actions == ["log"]


@pytest.mark.parametrize(
    ("expression", "when", "due"),
    [
        ("0 3 * * *", datetime(2026, 11, 26, 3, 0, tzinfo=UTC), True),
        ("0 3 * * *", datetime(2026, 11, 26, 4, 0, tzinfo=UTC), False),
        ("*/15 * * * *", datetime(2026, 11, 26, 4, 30, tzinfo=UTC), True),
        ("*/15 * * * *", datetime(2026, 11, 26, 4, 31, tzinfo=UTC), False),
        ("0 9 * * 1-5", datetime(2026, 11, 28, 9, 0, tzinfo=UTC), False),  # a Saturday
        ("0 9 * * 1-5", datetime(2026, 11, 27, 9, 0, tzinfo=UTC), True),  # a Friday
    ],
)
def test_cron_schedule(expression: str, when: datetime, due: bool) -> None:
    assert Schedule(expression).due(None, when) is due


def test_every_schedule_and_bad_expressions() -> None:
    every = Schedule("@every 2h")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert every.due(None, start)
    assert not every.due(start, start.replace(hour=1))
    assert every.due(start, start.replace(hour=2))
    for bad in ("0 3 * *", "61 * * * *", "@every soon", "x * * * *"):
        with pytest.raises(ConfigError, match="cannot read the schedule"):
            Schedule(bad)


def _watcher(
    project: Path, data: Path, calls: list[str], monkeypatch: pytest.MonkeyPatch, fail: int = 0
) -> Watcher:
    """A watcher whose retraining is recorded instead of run (the pipeline is tested
    elsewhere); the first ``fail`` runs raise."""
    import loopline.orchestrate.actions as actions

    failures = iter(range(fail))

    def fake_retrain(settings: Any, config: Any, *, reason: str) -> dict[str, Any]:
        calls.append(reason)
        if next(failures, None) is not None:
            raise RuntimeError("training blew up")
        return {"version": str(len(calls))}

    monkeypatch.setattr(actions, "retrain", fake_retrain)
    settings = load_settings(project, monitoring={"retrain": {"pipeline": "sentiment"}})
    return Watcher(
        settings,
        MetadataStore(settings.metadata_url or ""),
        on_new_data=data,
        state_path=project / "state.json",
        backoff_s=0.0,
    )


def test_new_files_trigger_a_run_and_failures_are_retried(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = project / "incoming"
    data.mkdir()
    (data / "a.csv").write_text("text,label\nx,positive\n")
    calls: list[str] = []
    watcher = _watcher(project, data, calls, monkeypatch, fail=1)
    assert watcher.run_once() == []  # what is there at the start is not new
    (data / "b.csv").write_text("text,label\ny,negative\n")
    failed = watcher.run_once()
    assert failed[0]["status"] == "failed" and "training blew up" in failed[0]["error"]
    retried = watcher.run_once()  # nothing new, but the data still needs a good run
    assert retried[0]["status"] == "completed"
    assert watcher.run_once() == []
    assert len(calls) == 2 and all("new data" in c for c in calls)


def test_seen_data_survives_a_restart(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = project / "incoming"
    data.mkdir()
    (data / "a.csv").write_text("1")
    calls: list[str] = []
    _watcher(project, data, calls, monkeypatch).run_once()
    (data / "b.csv").write_text("2")  # arrives while no watcher runs
    second = _watcher(project, data, calls, monkeypatch)
    assert second.run_once()[0]["status"] == "completed"
