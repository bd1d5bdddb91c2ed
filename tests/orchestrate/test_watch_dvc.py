"""`loopline watch` on DVC-tracked data: a new DVC version retrains, registers and promotes
only through the gate; files still being written trigger once; the watcher's own writes
trigger nothing; each run it starts is recorded with what triggered it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loopline.config import load_settings
from loopline.core.metadata import MetadataStore
from loopline.data.dvc import dvc_version
from loopline.examples.sentiment.synthetic import generate_tweets
from loopline.orchestrate.watch import WATCH_RULE, Watcher, trigger_of

SETTLE_S = 5.0


class Clock:
    """The watcher's clock, moved by the test: settling is decided on it, not on sleeps."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def watcher(root: Path, data: Path, clock: Clock) -> Watcher:
    settings = load_settings(root)
    return Watcher(
        settings,
        MetadataStore(settings.metadata_url or ""),
        on_new_data=data,
        state_path=settings.home_dir / "watch-state.json",
        settle_s=SETTLE_S,
        clock=clock,
        backoff_s=0.0,
    )


def settle(watch: Watcher, clock: Clock) -> list[dict[str, Any]]:
    """Checks until the data has been quiet for the settle time: the events of the last."""
    assert watch.run_once() == []  # a change is seen, not acted on
    clock.tick(SETTLE_S)
    return watch.run_once()


def test_a_folder_receiving_500_files_triggers_once_after_the_copy(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain folder (no DVC): the run is recorded here, the pipeline is tested below."""
    import loopline.orchestrate.actions as actions

    calls: list[str] = []

    def recorded_retrain(settings: Any, config: Any, *, reason: str) -> dict[str, Any]:
        calls.append(reason)
        return {"run_id": f"run{len(calls)}", "model": "m", "version": str(len(calls))}

    monkeypatch.setattr(actions, "retrain", recorded_retrain)
    incoming = project / "incoming"
    incoming.mkdir()
    (project / "loopline.yaml").write_text("monitoring:\n  retrain: {pipeline: sentiment}\n")
    clock = Clock()
    watch = watcher(project, incoming, clock)
    assert watch.run_once() == []  # what is there at the start is not new
    for batch in range(5):  # the copy: 100 files a second, checked every second
        for i in range(100):
            (incoming / f"{batch:02d}-{i:03d}.csv").write_text(f"text,label\nx{i},positive\n")
        assert watch.run_once() == []
        assert watch.next_wait(30.0) == SETTLE_S  # checked again sooner while it settles
        clock.tick(1.0)
    assert watch.run_once() == []  # quiet for 1 s only
    watch = watcher(project, incoming, clock)  # a restart (`watch --once` run by cron, say)
    assert watch.run_once() == []  # it knows the files were changing, and since when
    clock.tick(SETTLE_S)
    [event] = watch.run_once()
    assert event["status"] == "completed" and calls == [event["trigger"]]
    assert event["trigger"] == (
        f"new data in {incoming}: 500 added files (incoming/00-000.csv, incoming/00-001.csv, "
        "incoming/00-002.csv and 497 more)"
    )
    clock.tick(60)
    assert watch.run_once() == [] and len(calls) == 1  # once
    [audit] = [a for a in watch.store.alerts("m") if a["rule"] == WATCH_RULE]
    [trigger] = audit["details"]["triggers"]
    assert (
        trigger["files"]["added"] == 500 and trigger["files"]["files"][0] == "incoming/00-000.csv"
    )
    assert (audit["status"], audit["model_version"], audit["value"]) == ("completed", "1", 500)
    assert trigger_of(watch.store, "m", "run1") == audit["details"]


def test_a_new_dvc_version_retrains_and_the_runs_own_writes_do_not_trigger(
    dvc_project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Watching the project's root: `.loopline/`, `.dvc/` and `.git/` are not data."""
    root = dvc_project.root
    monkeypatch.chdir(root)
    clock = Clock()
    watch = watcher(root, root, clock)
    assert watch.run_once() == []
    dvc_project.write_tweets("part-2.csv", 300, seed=3)
    second = dvc_project.add_version("300 more tweets")
    [event] = settle(watch, clock)
    assert event["status"] == "completed", event
    assert (event["model"], event["version"], event["promoted"]) == ("tweets", "1", True)
    assert "data/tweets.dvc" in event["trigger"] and "part-2.csv" in event["trigger"]
    run = watch.store.get_run(event["run_id"])
    assert run["status"] == "completed" and run["code_commit"] == second
    assert (root / ".loopline" / "artifacts").is_dir()  # the run wrote its state here
    for _ in range(3):
        clock.tick(SETTLE_S * 2)
        assert watch.run_once() == []


def test_dvc_data_waits_for_dvc_add_and_dvc_pull_and_bad_data_is_not_promoted(
    dvc_project: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = dvc_project.root
    monkeypatch.chdir(root)
    clock = Clock()
    watch = watcher(root, root / "data" / "tweets.dvc", clock)  # the .dvc file: its output
    assert watch.run_once() == []
    first_md5 = dvc_version(root / "data" / "tweets").md5

    # Files copied in, not `dvc add`-ed: not a version DVC knows yet.
    dvc_project.write_tweets("part-2.csv", 300, seed=3)
    [waiting] = settle(watch, clock)
    assert waiting["status"] == "waiting" and "dvc add data/tweets" in waiting["reason"]
    clock.tick(SETTLE_S)
    assert watch.run_once() == []  # said once
    added = dvc_project.add_version("300 more tweets", push=False)
    [event] = settle(watch, clock)
    assert (event["status"], event["version"], event["promoted"]) == ("completed", "1", True)
    [audit] = [a for a in watch.store.alerts("tweets") if a["rule"] == WATCH_RULE]
    [trigger] = audit["details"]["triggers"]
    assert trigger["dvc"]["file"] == "data/tweets.dvc" and trigger["dvc"]["git_rev"] == added
    assert trigger["dvc"]["md5_before"] == first_md5 != trigger["dvc"]["md5"]
    assert trigger["files"]["files"] == ["data/tweets/part-2.csv", "data/tweets.dvc"]
    assert audit["details"]["run_id"] == event["run_id"]

    # Elsewhere someone replaces the tweets by ones with random labels and pushes; here
    # `git pull` brings the new .dvc file first, and its data only with `dvc pull`.
    other = tmp_path / "other"
    dvc_project.git("clone", "-q", str(root), str(other))
    (other / "data" / "tweets").mkdir(parents=True)
    for seed, name in enumerate(("part-1.csv", "part-2.csv")):
        noisy = generate_tweets(400, seed=11 + seed)
        noisy["label"] = noisy["label"].sample(frac=1.0, random_state=seed).to_numpy()
        noisy.to_csv(other / "data" / "tweets" / name, index=False)
    type(dvc_project)(other, dvc_project.first).add_version("relabelled tweets")
    dvc_project.git("pull", "-q", str(other), "HEAD")
    [waiting] = settle(watch, clock)
    assert waiting["status"] == "waiting" and "dvc pull data/tweets" in waiting["reason"]
    dvc_project.dvc("pull", "-q", "data/tweets")
    [event] = settle(watch, clock)
    assert event["status"] == "completed", event
    assert (event["version"], event["promoted"], event["champion"]) == ("2", False, "1")
    assert pd.read_csv(root / "data" / "tweets" / "part-2.csv").equals(noisy)
    reasons = trigger_of(watch.store, "tweets", event["run_id"])
    assert reasons is not None and reasons["promoted"] is False
    assert "data/tweets.dvc: md5" in reasons["message"]
