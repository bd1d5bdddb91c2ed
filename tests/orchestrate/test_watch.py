"""Alert rules, schedules and the watch loop's triggers, back-off and state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Next fire times after START, as the hand-written parser before croniter computed them
# (a minute-by-minute scan of its field sets; day of month AND weekday when both are set).
START = datetime(2027, 12, 30, 22, 10, 30, tzinfo=UTC)  # a Thursday
NEXT_FIRE_TIMES = {
    "0 3 * * *": ["2027-12-31 03:00", "2028-01-01 03:00", "2028-01-02 03:00"],
    "*/15 * * * *": ["2027-12-30 22:15", "2027-12-30 22:30", "2027-12-30 22:45"],
    "0 9 * * 1-5": ["2027-12-31 09:00", "2028-01-03 09:00", "2028-01-04 09:00"],  # Fri, Mon
    "30 8-17/3 * * *": ["2027-12-31 08:30", "2027-12-31 11:30", "2027-12-31 14:30"],
    "0,30 6,18 * * *": ["2027-12-31 06:00", "2027-12-31 06:30", "2027-12-31 18:00"],
    "5-10/2 * * * *": ["2027-12-30 23:05", "2027-12-30 23:07", "2027-12-30 23:09"],
    "0 0 1 * *": ["2028-01-01 00:00", "2028-02-01 00:00", "2028-03-01 00:00"],
    "0 0 31 * *": ["2027-12-31 00:00", "2028-01-31 00:00", "2028-03-31 00:00"],  # no Feb
    "59 23 28-31 * *": ["2027-12-30 23:59", "2027-12-31 23:59", "2028-01-28 23:59"],
    "0 0 29 2 *": ["2028-02-29 00:00", "2032-02-29 00:00", "2036-02-29 00:00"],
    "15 10 * 1-3 0": ["2028-01-02 10:15", "2028-01-09 10:15", "2028-01-16 10:15"],  # Sundays
    "0 12 13 * 5": ["2028-10-13 12:00", "2029-04-13 12:00", "2029-07-13 12:00"],  # Fri 13th
    "0 0 * * 0,6": ["2028-01-01 00:00", "2028-01-02 00:00", "2028-01-08 00:00"],
    "0 0 1 */4 *": ["2028-01-01 00:00", "2028-05-01 00:00", "2028-09-01 00:00"],
}


@pytest.mark.parametrize("expression", sorted(NEXT_FIRE_TIMES))
def test_cron_next_fire_times_are_unchanged_and_croniters(expression: str) -> None:
    from croniter import croniter

    schedule = Schedule(expression)
    expected = [_utc(text) for text in NEXT_FIRE_TIMES[expression]]
    ours, theirs, when = [], [], START
    it = croniter(expression, START, day_or=False)
    for _ in expected:
        when = schedule.next_run(when)
        ours.append(when)
        theirs.append(it.get_next(datetime))
    assert ours == expected
    assert theirs == expected
    for fire in expected:  # due in that minute, once
        assert schedule.due(None, fire)
        assert schedule.due(None, fire.replace(second=59))
        assert not schedule.due(fire, fire.replace(second=30))
    assert not schedule.due(None, START)  # 22:10 fires for none of them


def test_cron_names_and_sunday_seven_read_like_numbers() -> None:
    pairs = [
        ("0 9 * * mon-fri", "0 9 * * 1-5"),
        ("0 0 1 jan,jul *", "0 0 1 1,7 *"),
        ("0 0 * * 7", "0 0 * * 0"),
        ("0 0 * * SUN", "0 0 * * 0"),
    ]
    for named, numeric in pairs:
        a, b, when_a, when_b = Schedule(named), Schedule(numeric), START, START
        for _ in range(5):
            when_a, when_b = a.next_run(when_a), b.next_run(when_b)
            assert when_a == when_b


def test_cron_ranges_with_equal_bounds_are_one_value() -> None:
    # croniter alone reads "5-5" as the whole cycle; cron (and Loopline before it) as 5.
    for odd, plain in (("5-5 3-3 * * *", "5 3 * * *"), ("0 0 * * sat-SAT", "0 0 * * 6")):
        a, b, when_a, when_b = Schedule(odd), Schedule(plain), START, START
        for _ in range(3):
            when_a, when_b = a.next_run(when_a), b.next_run(when_b)
            assert when_a == when_b
    assert Schedule("5-5 3-3 * * *").next_run(START) == _utc("2027-12-31 03:05")
    assert Schedule("59/15 * * * *").next_run(START) == _utc("2027-12-30 22:59")


def test_every_schedule_next_run() -> None:
    assert Schedule("@every 6h").next_run(START) == START + timedelta(hours=6)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0 3 * *",  # four fields
        "0 3 * * * *",  # croniter's seconds field is not ours
        "61 * * * *",
        "0 24 * * *",
        "0 0 0 * *",
        "0 0 * 13 *",
        "0 0 * * 8",
        "*/0 * * * *",
        "*/x * * * *",
        "1,,2 * * * *",
        "x * * * *",
        "0 0 30 2 *",  # a day February never has: it would never fire
        "0 0 31 4,6 *",
        "@daily",
        "@every soon",
    ],
)
def test_invalid_schedules_fail_clearly(bad: str) -> None:
    with pytest.raises(ConfigError, match="cannot read the schedule") as info:
        Schedule(bad)
    assert "five cron fields" in (info.value.hint or "")


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
