"""The artifact store: content addressing, round trips, no half-written artifact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

from loopline.core.artifacts import META, ArtifactStore


def test_round_trips_and_same_content_same_hash(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    frame = pd.DataFrame({"text": ["a", "b"], "label": ["x", "y"]})
    stored = store.save(frame)
    assert stored.materializer == "pandas.parquet"
    assert store.save(frame.copy()).hash == stored.hash
    pd.testing.assert_frame_equal(store.load(stored.hash), frame)
    array = np.arange(6).reshape(2, 3)
    np.testing.assert_array_equal(store.load(store.save(array).hash), array)
    assert store.load(store.save({"b": 1, "a": [1, 2]}).hash) == {"a": [1, 2], "b": 1}
    assert store.save({"a": 1}).hash != store.save({"a": 2}).hash
    assert set(store.list_hashes()) >= {stored.hash}


def test_sklearn_model_is_stored_in_mlflow_format(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    store = ArtifactStore(str(tmp_path / "a"))
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    stored = store.save(model)
    assert stored.materializer == "mlflow.model"
    assert (store.local_folder(stored.hash) / "model" / "MLmodel").is_file()
    assert list(store.load(stored.hash).predict([[0.0], [3.0]])) == [0, 1]
    # MLflow's random model_uuid and save time are not in the bytes: one model, one hash
    # (a re-run, a reproduction or an orchestrated step can match).
    again = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    assert ArtifactStore(str(tmp_path / "b")).save(again).hash == stored.hash
    other = LogisticRegression(C=0.5).fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    assert store.save(other).hash != stored.hash


def test_killed_writer_leaves_no_visible_artifact(tmp_path: Path) -> None:
    root = tmp_path / "a"
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from loopline.core import materializers
        from loopline.core.artifacts import ArtifactStore

        class Slow:
            name = "slow"
            def can_save(self, obj): return True
            def save(self, obj, folder):
                (folder / "part1").write_text("x" * 1000)
                Path({str(tmp_path / "started")!r}).write_text("1")
                time.sleep(60)
            def load(self, folder): return None

        materializers.register_materializer(Slow())
        ArtifactStore({str(root)!r}).save(object())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline, "writer never started"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = ArtifactStore(str(root))  # opening sweeps the dead writer's temp folder
    assert store.list_hashes() == []
    assert list((root / ".tmp").iterdir()) == []
    assert not [p for p in root.glob("*/*") if not (p / META).exists()]


def test_a_frame_read_from_the_store_is_the_frame_that_was_saved(tmp_path: Path) -> None:
    # Parquet has no seconds unit: without the saved units restored, a step fed from the
    # store (--step, processes, Ray) would get datetime64[ms] where one fed the object in
    # memory gets datetime64[s], and would hash other outputs.
    store = ArtifactStore(str(tmp_path / "a"))
    seconds = pd.to_datetime(["2018-04-01 00:00:31", "2018-04-01 07:19:05"]).as_unit("s")
    frame = pd.DataFrame(
        {"ts": seconds, "ts_utc": seconds.tz_localize("UTC"), "amount": [57.2, 81.5]},
        index=pd.DatetimeIndex(seconds, name="at"),
    )
    loaded = store.load(store.save(frame).hash)
    pd.testing.assert_frame_equal(loaded, frame)
    assert store.save(loaded).hash == store.save(frame).hash


def test_a_text_model_saved_in_two_processes_has_one_hash(tmp_path: Path) -> None:
    # What a process's history leaks into a pickle: scikit-learn's vectorizers remember
    # id(stop_words) (an address) and a set pickles in the order of its strings' hashes
    # (seeded per process). A thread run and a Ray, processes or orchestrated run of one
    # pipeline, or a reproduction, must store one model.
    script = textwrap.dedent(
        """
        import sys
        import pandas as pd
        from loopline.core.artifacts import ArtifactStore
        from loopline.train.text import build_text_classifier

        texts = ["i love it :)", "worst day ever", "not good at all", "so happy!!"] * 5
        labels = ["positive", "negative", "negative", "positive"] * 5
        model = build_text_classifier().fit(pd.DataFrame({"text": texts}), labels)
        print(ArtifactStore(sys.argv[1]).save(model).hash)
        """
    )
    hashes = {
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / seed)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(hashes) == 1
