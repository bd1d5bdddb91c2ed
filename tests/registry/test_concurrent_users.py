"""Two users at once on one team's stores (PostgreSQL, an S3 API server, an MLflow server).

Each user is its own process with its own checkout of the project; both start together and
each runs the pipeline with 10 settings of its own, every setting registering a new version
that passes the gate and is promoted. A run whose gate compared with a champion the other
user replaced in the meantime must not promote (it says so) and is run again. Nothing may be
lost or mixed up: every run recorded, 20 distinct versions each promoted once, and an alias
history in which every move starts where the one before it ended, ending where MLflow's
aliases are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _team_stores import PIPELINE, TeamStores

from loopline.config import load_settings
from loopline.core.metadata import MetadataStore
from loopline.registry.project import open_registry

pytestmark = pytest.mark.postgres

RUNS = 10


# One user: wait for the starting signal, then run the pipeline with RUNS settings, each until
# its version is promoted (a run whose gate compared with a champion that the other user
# replaced meanwhile does not promote: it is run again); one line per run.
USER = """
import json, sys, time
from pathlib import Path

from loopline.config import load_settings
from loopline.project import resolve_pipeline

root, user, go = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
settings = load_settings(root)
_, spam = resolve_pipeline(settings, "spam")
while not go.exists():
    time.sleep(0.01)
for i in range(int(sys.argv[4])):
    params = {**settings.params["spam"], "alpha": round(0.05 + 0.1 * i + 0.05 * user, 3)}
    for attempt in range(5):
        result = spam.run(settings, **params)
        version = result.load("register")
        print(json.dumps({"run_id": result.run_id, "status": result.status, "setting": i,
                          "version": version.version, "promoted": version.promoted,
                          "reasons": version.reasons}), flush=True)
        if version.promoted:
            break
"""


def test_two_users_run_and_promote_at_once_without_losing_anything(
    team_stores: TeamStores, tmp_path: Path, shared_data: Path
) -> None:
    (tmp_path / "user.py").write_text(USER)
    go = tmp_path / "go"
    users = []
    for user in (0, 1):
        root = tmp_path / f"user{user}"
        root.mkdir()
        (root / "pipeline.py").write_text(PIPELINE)
        team_stores.configure(
            root,
            "pipelines:\n  spam: pipeline.py:spam\n"
            f"params:\n  spam:\n    source: {shared_data / 'spam_youtube'}\n",
        )
        users.append(
            subprocess.Popen(
                [sys.executable, str(tmp_path / "user.py"), str(root), str(user), str(go), "10"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        )
    time.sleep(3)  # both have imported Loopline and wait for the signal
    go.touch()
    reports = []
    for process in users:
        out, err = process.communicate(timeout=400)
        assert process.returncode == 0, err[-4000:]
        reports.append([json.loads(line) for line in out.splitlines()])

    # No error and no lost run: each user's runs completed and are all in the shared store;
    # each setting was promoted in the end, and a run that was not says why.
    mine = [line for report in reports for line in report]
    promoted = [line for line in mine if line["promoted"]]
    assert [sorted({line["setting"] for line in r if line["promoted"]}) for r in reports] == [
        list(range(RUNS)),
        list(range(RUNS)),
    ]
    for line in mine:
        if not line["promoted"]:
            assert "became champion after the gate compared with" in line["reasons"][-1]
    assert {line["status"] for line in mine} == {"completed"}
    metadata = MetadataStore(team_stores.metadata_url, create=False)
    try:
        runs = metadata.list_runs(limit=100, pipeline="spam")
        assert {r["id"] for r in runs} == {line["run_id"] for line in mine}
        assert {r["status"] for r in runs} == {"completed"}
        history = metadata.alias_history("spam")
        lineage = [metadata.model_version("spam", str(v)) for v in range(1, 2 * RUNS + 1)]
    finally:
        metadata.close()

    # Versions unique: 20 settings, 20 versions numbered 1..20 (a setting run again reuses
    # its version), each with Loopline's lineage pointing at the run that registered it.
    versions = sorted(int(line["version"]) for line in promoted)
    assert versions == list(range(1, 2 * RUNS + 1))
    assert all(row is not None for row in lineage)
    assert {row["run_id"] for row in lineage if row} <= {line["run_id"] for line in mine}
    registry = open_registry(load_settings(tmp_path / "user0"))
    registered = registry.list_models()
    assert sorted(int(v.version) for v in registered) == versions

    # Alias history complete and ordered: every promotion is recorded, each move of an alias
    # starts from where that alias was left by the move before, and the last moves are
    # where MLflow's aliases point now.
    champion = [e for e in history if e["alias"] == "champion"]
    previous = [e for e in history if e["alias"] == "previous"]
    assert len(champion) == 2 * RUNS and len(previous) == 2 * RUNS - 1
    assert sorted(int(e["version"]) for e in champion) == versions
    for events in (champion, previous):
        assert [e["previous_version"] for e in events[1:]] == [e["version"] for e in events[:-1]]
    assert champion[0]["previous_version"] is None and previous[0]["previous_version"] is None
    # "previous" always moves to the champion it replaces, just before the champion moves.
    for before, moved in zip(champion, previous, strict=False):
        assert moved["version"] == before["version"]
    assert [e["id"] for e in history] == sorted(e["id"] for e in history)
    times = [e["created_at"] for e in history]
    assert times == sorted(times)
    assert registry.aliases("spam") == {
        "champion": champion[-1]["version"],
        "previous": previous[-1]["version"],
    }


def test_a_promotion_overtaken_by_another_is_not_made(tmp_path: Path) -> None:
    """promote_if (what register uses) moves nothing when the champion is no longer the one
    the gate compared with; the alias history records only the moves made."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from loopline.train.model import fit_model

    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": ["a", "a", "b", "b"]})
    model = fit_model(frame, LogisticRegression(), target="y")
    registry = open_registry(load_settings(tmp_path))
    for _ in range(2):
        registry.register(
            model, name="m", params={}, metrics={}, dataset_version=None, input_example=frame[["x"]]
        )
    registry.promote("m", "1", reason="first", actor="alice")
    assert not registry.promote_if("m", "2", None, reason="beat nothing", actor="bob")
    assert registry.aliases("m") == {"champion": "1"}
    assert registry.promote_if("m", "2", "1", reason="beat 1", actor="bob")
    assert registry.aliases("m") == {"champion": "2", "previous": "1"}
    moves = [(e["alias"], e["version"], e["previous_version"]) for e in registry.alias_history("m")]
    assert moves == [("champion", "1", None), ("previous", "1", None), ("champion", "2", "1")]
