"""DVC-tracked inputs: the output, its hash and git revision, reads at a revision, lineage.

One real git + DVC repository (made with the `dvc` command, as its users do) serves the
module: four coco8 images `dvc add`-ed and pushed to a local remote, then a fifth image
added and the folder added and pushed again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from _git_dvc import sh
from loopline.config import load_settings
from loopline.core.metadata import MetadataStore
from loopline.data.dvc import (
    FolderVersion,
    checkout_dvc,
    dvc_version,
    find_dvc_repo,
    folder_version,
    folder_versions_among,
    is_dvc_tracked,
    open_dvc,
)
from loopline.data.snapshot import take_snapshot
from loopline.errors import DataError

pytest.importorskip("dvc")


@dataclass(frozen=True)
class Repo:
    root: Path
    first: str  # the commit with four images
    second: str  # HEAD: five images
    train: list[Path]  # the four coco8 images of the first commit
    added: Path  # the image the second commit added


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    coco8 = Path(__file__).resolve().parents[3] / "shared" / "data" / "images" / "coco8"
    if not coco8.is_dir():
        pytest.skip(f"shared data not found at {coco8}")
    base = tmp_path_factory.mktemp("dvc")
    root, remote = base / "repo", base / "remote"
    root.mkdir()
    remote.mkdir()
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    sh(root, "dvc", "remote", "add", "-d", "local", str(remote))
    train = sorted((coco8 / "images" / "train").glob("*.jpg"))
    (root / "images").mkdir()
    for image in train:
        shutil.copy(image, root / "images" / image.name)
    sh(root, "dvc", "add", "-q", "images")
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-q", "-m", "four images")
    sh(root, "dvc", "push", "-q")
    first = sh(root, "git", "rev-parse", "HEAD")
    added = sorted((coco8 / "images" / "val").glob("*.jpg"))[0]
    shutil.copy(added, root / "images" / added.name)
    sh(root, "dvc", "add", "-q", "images")
    sh(root, "git", "commit", "-q", "-am", "a fifth image")
    sh(root, "dvc", "push", "-q")
    second = sh(root, "git", "rev-parse", "HEAD")
    return Repo(root, first, second, train, added)


def recorded_md5(dvcfile: Path) -> str:
    return str(yaml.safe_load(dvcfile.read_text())["outs"][0]["md5"])


def test_the_hash_and_git_revision_of_a_tracked_folder_are_read(repo: Repo) -> None:
    found = dvc_version(repo.root / "images")
    assert found.md5 == recorded_md5(repo.root / "images.dvc")
    assert found.md5.endswith(".dir")
    assert (found.output, found.tracked_by, found.repo) == ("images", "images.dvc", str(repo.root))
    assert (found.git_rev, found.dirty, found.rev) == (repo.second, False, None)
    assert (found.nfiles, found.size) == (
        5,
        sum(p.stat().st_size for p in [*repo.train, repo.added]),
    )
    inside = dvc_version(repo.root / "images" / repo.added.name)  # a file of the folder
    assert (inside.output, inside.md5) == ("images", found.md5)
    assert is_dvc_tracked(repo.root / "images") and is_dvc_tracked(repo.root / "images" / "x")
    assert not is_dvc_tracked(repo.root / ".gitignore")
    assert find_dvc_repo(repo.root / "images") == repo.root


def test_at_an_older_revision_the_old_hash_and_commit(repo: Repo) -> None:
    old = dvc_version(repo.root / "images", rev=repo.first)
    now = dvc_version(repo.root / "images", rev="HEAD")
    assert old.git_rev == repo.first and now.git_rev == repo.second
    assert old.nfiles == 4 and now.md5 == dvc_version(repo.root / "images").md5 != old.md5
    assert dvc_version(repo.root / "images", rev="HEAD~1").md5 == old.md5
    assert old.rev == repo.first and not old.dirty


def test_reading_at_an_older_revision_gives_the_old_content(repo: Repo, tmp_path: Path) -> None:
    # No local cache: what DVC reads at the old revision comes from the remote.
    shutil.rmtree(repo.root / ".dvc" / "cache", ignore_errors=True)
    copy = checkout_dvc(repo.root / "images", repo.first, tmp_path / "old" / "images")
    assert copy == tmp_path / "old" / "images"
    assert sorted(p.name for p in copy.iterdir()) == [p.name for p in repo.train]
    assert all((copy / p.name).read_bytes() == p.read_bytes() for p in repo.train)
    assert not [p for p in (tmp_path / "old").iterdir() if p.name != "images"]  # no leftovers
    temporary = checkout_dvc(repo.root / "images", "HEAD")
    assert len(list(temporary.iterdir())) == 5
    shutil.rmtree(temporary.parent)
    name = repo.added.name
    with open_dvc(repo.root / "images" / name, rev="HEAD") as handle:
        assert handle.read() == repo.added.read_bytes()
    with (
        pytest.raises(DataError, match=f"images/{name} does not exist at git revision"),
        open_dvc(repo.root / "images" / name, rev=repo.first),  # it was added later
    ):
        pass


def test_an_uncommitted_dvc_file_is_dirty(repo: Repo) -> None:
    (repo.root / "notes").mkdir()
    (repo.root / "notes" / "a.txt").write_text("a")
    sh(repo.root, "dvc", "add", "-q", "notes")
    try:
        found = dvc_version(repo.root / "notes")
        assert (found.tracked_by, found.dirty, found.git_rev) == ("notes.dvc", True, repo.second)
        with pytest.raises(DataError, match="not tracked by DVC at git revision 'HEAD'"):
            dvc_version(repo.root / "notes", rev="HEAD")  # not committed: unknown to HEAD
    finally:
        shutil.rmtree(repo.root / "notes")
        (repo.root / "notes.dvc").unlink()
        sh(repo.root, "git", "checkout", "--", ".gitignore")  # `dvc add` listed notes there


def test_clear_errors_for_untracked_paths_and_unknown_revisions(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DataError, match=r"\.gitignore is not tracked by DVC in the workspace") as e:
        dvc_version(repo.root / ".gitignore")
    assert "dvc add .gitignore" in str(e.value.hint)
    with pytest.raises(DataError, match="unknown git revision 'no-such-tag'") as e:
        dvc_version(repo.root / "images", rev="no-such-tag")
    assert "git log" in str(e.value.hint)
    with pytest.raises(DataError, match="is not in a DVC repository") as e:
        dvc_version(tmp_path)
    assert "dvc init" in str(e.value.hint)
    with pytest.raises(DataError, match="exists already"):
        checkout_dvc(repo.root / "images", "HEAD", tmp_path)
    monkeypatch.setitem(sys.modules, "dvc.api", None)  # as if dvc were not installed
    with pytest.raises(DataError, match="needs the dvc package") as e:
        checkout_dvc(repo.root / "images", "HEAD")
    assert "pip install loopline[vision]" in str(e.value.hint)


def test_outputs_of_dvc_lock_stages_are_found_with_their_wdir(tmp_path: Path) -> None:
    """A pipeline's output (dvc.yaml + dvc.lock); outside git there is no revision."""
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "pipe" / "work" / "canvases").mkdir(parents=True)
    (tmp_path / "pipe" / "dvc.yaml").write_text(
        "stages:\n  make:\n    wdir: work\n    cmd: make\n    outs: [canvases]\n"
    )
    (tmp_path / "pipe" / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  make:\n    cmd: make\n    outs:\n"
        "    - path: canvases\n      hash: md5\n      md5: 0123456789abcdef.dir\n      nfiles: 2\n"
    )
    found = dvc_version(tmp_path / "pipe" / "work" / "canvases" / "a.png")
    assert (found.output, found.md5, found.tracked_by) == (
        "pipe/work/canvases",
        "0123456789abcdef.dir",
        "pipe/dvc.lock",
    )
    assert (found.git_rev, found.dirty, found.nfiles) == (None, False, 2)
    assert not is_dvc_tracked(tmp_path / "pipe" / "canvases")  # not in the stage's wdir


# ------------------------------------------------------------------------------------------
# the version_images step: recorded as a dataset version, shown by lineage

PIPELINE = """
from loopline import pipeline, step
from loopline.core.lineage import ModelVersion
from loopline.steps import version_images


@step
def fit(images) -> dict:
    return {"files": len(images), "md5": images.dvc.md5 if images.dvc else None}


@step
def publish(model: dict) -> ModelVersion:
    return ModelVersion(name="vision", version=str(model["files"]), reference_input=None)


@pipeline
def vision(path: str, rev: str | None = None) -> None:
    publish(fit(version_images(path, rev=rev)))
"""


def run_pipeline(project: Path, **params: Any) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("dvc_test_pipeline", project / "pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.vision.run(load_settings(project), **params)


def test_a_dvc_input_records_its_hash_and_revision_in_the_dataset_version(
    repo: Repo, project: Path
) -> None:
    (project / "pipeline.py").write_text(PIPELINE)
    images = str(repo.root / "images")
    run_pipeline(project, path=images)
    run_pipeline(project, path=images)  # unchanged: the same dataset version
    run_pipeline(project, path=images, rev=repo.first)
    settings = load_settings(project)
    assert settings.metadata_url
    store = MetadataStore(settings.metadata_url)
    datasets = sorted(store.list_datasets("images"), key=lambda d: d["version"])
    assert [(d["version"], d["rows"]) for d in datasets] == [(1, 5), (2, 4)]
    recorded: dict[str, FolderVersion] = {}
    for model_version in ("5", "4"):  # the model of each run names its file count
        steps = store.lineage("vision", model_version)["steps"]
        assert [s["step"] for s in steps] == ["fit", "version_images"]  # from the model back
        found = folder_versions_among([s["output"] for s in steps], settings, store)
        assert list(found) == [steps[-1]["output"]]
        recorded[model_version] = found[steps[-1]["output"]]
    now, old = recorded["5"], recorded["4"]
    versions = folder_versions_among([d["artifact_hash"] for d in datasets], settings, store)
    assert [versions[d["artifact_hash"]] for d in datasets] == [now, old]
    assert now.dvc is not None and old.dvc is not None
    assert (now.dvc.md5, now.dvc.git_rev, now.dvc.dirty) == (
        recorded_md5(repo.root / "images.dvc"),
        repo.second,
        False,
    )
    assert now.source == now.path == images and now.snapshot is not None and now.rev is None
    assert (old.dvc.git_rev, old.rev, old.source, old.snapshot) == (
        repo.first,
        repo.first,
        images,
        None,
    )
    assert old.path.startswith(str(settings.home_dir / "dvc"))
    assert sorted(os.listdir(old.path)) == [p.name for p in repo.train]
    line = old.describe()
    assert old.dvc.md5 in line and repo.first[:12] in line and "4 files" in line


def test_a_folder_without_dvc_records_its_snapshot(tmp_path: Path, project: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not really a png")
    settings = load_settings(project)
    found = folder_version(folder, settings=settings)
    assert found.dvc is None and found.files == 1 and found.path == str(folder)
    assert found.snapshot == take_snapshot(folder, settings, store=False).id
    assert "snapshot" in found.describe() and "DVC" not in found.describe()
    assert json.loads(json.dumps(found.to_dict()))["snapshot"] == found.snapshot
    with pytest.raises(DataError, match="not in a DVC repository"):
        folder_version(folder, rev="HEAD", settings=settings)


# ------------------------------------------------------------------------------------------
# `loopline lineage` of a model trained on a DVC-tracked folder (real MLflow registry)

VISION = """
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.linear_model import LogisticRegression

from loopline import pipeline, step
from loopline.steps import evaluate, gate, register, split, train, version_images


@step
def pixels(images) -> pd.DataFrame:
    rows = []
    for path in sorted(Path(images.path).glob("*/*.png")):
        small = np.asarray(Image.open(path).resize((7, 7)), dtype=float).ravel() / 255
        rows.append({**{f"p{i}": v for i, v in enumerate(small)}, "label": path.parent.name})
    return pd.DataFrame(rows)


@pipeline
def vision(path: str) -> None:
    data = pixels(version_images(path, dataset="digits"))
    train_df, test_df = split(data, by="stratified", label="label", test_size=0.25)
    model = train(train_df, model=LogisticRegression(max_iter=300), target="label")
    metrics = evaluate(model, test_df)
    register(model, gate(model, test_df, metrics, model_name="vision"), example=test_df)
"""


@pytest.mark.slow
def test_lineage_shows_the_dvc_hash_and_git_revision(shared_data: Path, tmp_path: Path) -> None:
    import gzip

    import numpy as np
    from PIL import Image

    raw = gzip.decompress(
        (shared_data / "images" / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes()
    )
    labels = gzip.decompress(
        (shared_data / "images" / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes()
    )[8:]
    digits = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    (tmp_path / "digits").mkdir()
    for index in range(300):
        folder = tmp_path / "digits" / str(labels[index])
        folder.mkdir(exist_ok=True)
        Image.fromarray(digits[index]).save(folder / f"{index:04d}.png")
    sh(tmp_path, "git", "init", "-q")
    sh(tmp_path, "dvc", "init", "-q")
    sh(tmp_path, "dvc", "add", "-q", "digits")
    (tmp_path / "pipeline.py").write_text(VISION)
    (tmp_path / "loopline.yaml").write_text(
        "pipelines:\n  vision: pipeline.py:vision\nparams:\n  vision:\n    path: digits\n"
    )
    (tmp_path / ".gitignore").write_text("/digits\n/.loopline\n/mlruns\n")
    sh(tmp_path, "git", "add", "-A")
    sh(tmp_path, "git", "commit", "-q", "-m", "digits")
    head = sh(tmp_path, "git", "rev-parse", "HEAD")
    md5 = recorded_md5(tmp_path / "digits.dvc")

    def loopline(*args: str) -> str:
        return sh(tmp_path, sys.executable, "-m", "loopline", *args)

    loopline("run", "vision")
    shown = loopline("lineage", "vision")
    assert f"data: DVC md5 {md5} (digits.dvc) · git {head[:12]}" in shown
    assert "300 files" in shown and "(digits:v1)" in shown
    found = json.loads(loopline("lineage", "vision", "--json"))
    versions = [s["data_version"] for s in found["steps"] if s["data_version"]]
    assert len(versions) == 1 and versions[0]["dvc"]["md5"] == md5
    assert (versions[0]["dvc"]["git_rev"], versions[0]["dvc"]["dirty"]) == (head, False)
    assert found["model"]["dataset_version"] == "digits:v1"
