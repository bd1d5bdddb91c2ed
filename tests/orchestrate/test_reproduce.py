"""`loopline runs reproduce`: a recorded run computed again, every output compared."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from typer.testing import CliRunner

from loopline.cli import app
from loopline.config import load_settings
from loopline.core.artifacts import ArtifactStore
from loopline.core.metadata import MetadataStore
from loopline.errors import LooplineError
from loopline.examples.sentiment.synthetic import generate_tweets
from loopline.orchestrate.reproduce import reproduce_run
from loopline.project import resolve_pipeline
from loopline.templates import write_template


def cli(project: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["-C", str(project), *args])
    return result.exit_code, result.output


def results(checks: list[dict[str, Any]]) -> dict[str, str]:
    return {f"{c['step']}.{c['output']}": c["result"] for c in checks}


@pytest.fixture(scope="module")
def sentiment_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`loopline init --template sentiment` with 600 tweets, run once: (project, run id)."""
    project = tmp_path_factory.mktemp("sentiment") / "project"
    write_template(project, "sentiment")
    generate_tweets(600, seed=1).to_csv(project / "data" / "tweets.csv", index=False)
    settings = load_settings(project)
    _, pipe = resolve_pipeline(settings, "sentiment")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        run = pipe.run(settings, source="data/tweets.csv", audit_rows=0)
    return project, run.run_id


def test_a_run_reproduces_with_the_same_output_hashes(
    sentiment_run: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, run_id = sentiment_run
    monkeypatch.chdir(project)
    code, output = cli(project, "runs", "reproduce", run_id[:8], "--json")
    assert code == 0, output
    found = orjson.loads(output)
    assert found["matches"] and found["run_id"] == run_id
    assert found["reproduced_run_id"] != run_id and found["code"]["same"]
    checks = results(found["checks"])
    data_steps = ["read_text", "human_labels", "production_labels", "label", "split"]
    identical = [k for k in checks if k.split(".")[0] in data_steps]
    assert len(identical) == 7 and all(checks[k] == "identical" for k in identical)
    assert checks["evaluate.output"] == "identical"  # the model's metrics, to the last digit
    # A saved model never repeats byte for byte (MLflow stamps it, pickles order sets by
    # the process's string hashes): it must predict the same on every row it trained on.
    train = next(c for c in found["checks"] if c["step"] == "train")
    assert train["result"] in ("identical", "equivalent")
    if train["result"] == "equivalent":
        stamps = "differs only in model/MLmodel (model_uuid, utc_time_created)"
        assert train["note"] == stamps or "the same predictions on the 450 rows" in train["note"]
    assert checks["profile.output"] in ("identical", "equivalent")
    assert checks["gate.output"] == checks["register.output"] == "not re-run"
    store = MetadataStore(load_settings(project).metadata_url or "")
    again = store.get_run(found["reproduced_run_id"])
    assert again["status"] == "completed" and {s["step"] for s in again["steps"]} == {
        *data_steps,
        "train",
        "evaluate",
        "profile",
    }
    assert all(s["status"] == "completed" for s in again["steps"])  # computed, not cached


def test_an_edited_input_file_is_a_mismatch_naming_it(
    sentiment_run: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, run_id = sentiment_run
    monkeypatch.chdir(project)
    data = project / "data" / "tweets.csv"
    original = data.read_bytes()
    frame = pd.read_csv(data)
    frame.loc[3, "label"] = "negative" if frame.loc[3, "label"] == "positive" else "positive"
    frame.to_csv(data, index=False)
    try:
        code, output = cli(project, "runs", "reproduce", run_id)
        found = reproduce_run(load_settings(project), _store(project), run_id)
    finally:
        data.write_bytes(original)
    assert code == 1, output
    assert "the input source=data/tweets.csv changed since the run" in output
    assert not found.matches
    differing = {f"{c.step}.{c.output}" for c in found.differing}
    assert {"read_text.output", "split.train", "train.output", "evaluate.output"} <= differing
    assert "human_labels.output" not in differing
    roots = [c for c in found.causes if c.kind != "input"]
    assert [(c.step, c.kind, c.what) for c in roots] == [
        ("read_text", "file", "source=data/tweets.csv")
    ]
    assert any(c.step == "train" and c.what == "data" for c in found.causes)
    assert "read_text: the input source=data/tweets.csv changed" in found.summary()


def _store(project: Path) -> MetadataStore:
    return MetadataStore(load_settings(project).metadata_url or "")


def test_dvc_data_changed_and_committed_since_is_checked_out_at_the_recorded_revision(
    dvc_project: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dvc_project: the git + DVC project of tests/orchestrate/conftest.py."""
    root = dvc_project.root
    monkeypatch.chdir(root)
    settings = load_settings(root)
    _, pipe = resolve_pipeline(settings, "tweets")
    first = pipe.run(settings)
    recorded = first.load("version_images")
    assert recorded.dvc is not None and recorded.dvc.git_rev == dvc_project.first
    dvc_project.write_tweets("part-2.csv", 300, seed=7)
    second = dvc_project.add_version("300 more tweets", push=False)
    assert sorted(p.name for p in (root / "data" / "tweets").iterdir()) == [
        "part-1.csv",
        "part-2.csv",
    ]
    # No local cache: the recorded version can only come from the DVC remote.
    shutil.rmtree(root / ".dvc" / "cache")

    found = reproduce_run(settings, _store(root), first.run_id)

    assert found.matches, found.summary()
    # The commit moved (it holds the new .dvc file), the pipeline's code did not.
    assert not found.code["same"] and found.code["steps_changed"] == []
    assert found.code["recorded"] == dvc_project.first[:12]
    assert "no step's code did" in found.notes[0]
    [pin] = found.pins
    assert (pin.step, pin.md5, pin.git_rev) == (
        "version_images",
        recorded.dvc.md5,
        dvc_project.first,
    )
    assert pin.workspace_md5 is not None and pin.workspace_md5 != pin.md5
    assert second != pin.git_rev
    checks = {f"{c.step}.{c.output}": c for c in found.checks}
    assert checks["version_images.output"].result == "same data"
    assert recorded.dvc.md5 in checks["version_images.output"].note
    assert checks["read_tweets.output"].result == "identical"
    assert checks["split.train"].result == checks["evaluate.output"].result == "identical"
    again = ArtifactStore(settings.artifact_root or "").load(
        checks["version_images.output"].reproduced
    )
    assert again.rev == pin.git_rev and Path(again.path) != root / "data" / "tweets"
    assert sorted(p.name for p in Path(again.path).iterdir()) == ["part-1.csv"]


def test_unknown_and_unfinished_runs_are_clear_errors(
    sentiment_run: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, _ = sentiment_run
    monkeypatch.chdir(project)
    unknown = CliRunner().invoke(app, ["-C", str(project), "runs", "reproduce", "nosuchrun"])
    assert isinstance(unknown.exception, LooplineError)  # main() prints it on one line, exit 2
    assert "no run with id 'nosuchrun'" in unknown.exception.message
    store = _store(project)
    unfinished = store.start_run("sentiment", {}, None, None, "threads")
    store.finish_run(unfinished, "failed", error="boom")
    with pytest.raises(LooplineError, match="is failed: only a completed run") as info:
        reproduce_run(load_settings(project), store, unfinished)
    assert "loopline runs list" in str(info.value.hint)


def test_a_changed_folder_without_dvc_names_the_files_that_changed(
    dvc_template: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same pipeline on a plain copy of the folder: Loopline's snapshot tells."""
    root = tmp_path / "plain"
    shutil.copytree(
        dvc_template.root, root, ignore=shutil.ignore_patterns(".git", ".dvc", "*.dvc", ".loopline")
    )
    monkeypatch.chdir(root)
    settings = load_settings(root)
    _, pipe = resolve_pipeline(settings, "tweets")
    first = pipe.run(settings)
    assert first.load("version_images").dvc is None
    tweets = root / "data" / "tweets"
    (tweets / "part-1.csv").write_text(
        (tweets / "part-1.csv").read_text().replace(",positive", ",negative", 1)
    )
    generate_tweets(50, seed=9).to_csv(tweets / "part-2.csv", index=False)

    found = reproduce_run(settings, _store(root), first.run_id)

    assert not found.matches and found.pins == []
    [folder] = [c for c in found.checks if c.step == "version_images"]
    assert folder.result == "differs"
    assert folder.note == "files 1 added (part-2.csv); 1 changed (part-1.csv)"
    [root_cause] = [c for c in found.causes if c.kind != "input"]
    assert (root_cause.step, root_cause.kind, root_cause.what) == (
        "version_images",
        "file",
        "path=data/tweets",
    )
    assert root_cause.detail.endswith(folder.note)
