"""Hyperparameter search (loopline.train.search, the ``search`` step) on real tabular data:
scikit-learn's copy of the Wisconsin breast cancer set (569 rows, 30 measurements).

A 4-trial search registers its best model through evaluate -> gate -> register, and gives
the same trials, scores and best settings on the thread executor and on the Ray executor,
where its trials run as Ray tasks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from loopline import pipeline
from loopline.config import load_settings
from loopline.errors import LooplineError
from loopline.registry.project import open_registry
from loopline.steps import evaluate, gate, read_table, register, search, split
from loopline.train.search import search_model

SPACE = {"clf__C": {"low": 0.001, "high": 10.0, "log": True}, "clf__fit_intercept": [True, False]}
ESTIMATOR = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(max_iter=500))])


@pipeline
def tumours(source: str, trials: int = 4) -> None:
    data = read_table(source, dataset="tumours")
    train_df, test_df = split(data, by="stratified", label="diagnosis", test_size=0.3)
    model, _ = search(
        train_df, model=ESTIMATOR, space=SPACE, target="diagnosis", trials=trials, batch=2
    )
    metrics = evaluate(model, test_df)
    decision = gate(model, test_df, metrics, model_name="tumours", min_value=0.9)
    register(model, decision, example=test_df)


@pytest.fixture(scope="module")
def cancer_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns=lambda c: c.replace(" ", "_"))
    frame["diagnosis"] = frame.pop("target").map({0: "malignant", 1: "benign"})
    path = tmp_path_factory.mktemp("data") / "cancer.csv"
    frame.to_csv(path, index=False)
    return path


def run_project(root: Path, source: Path, executor: str) -> tuple[Any, pd.DataFrame]:
    """Run the pipeline in a fresh project; the run and the search's trials."""
    root.mkdir()
    settings = load_settings(root)
    result = tumours.run(settings, executor=executor, source=str(source))
    return result, result.load("search", "trials")


@pytest.fixture(scope="module")
def on_threads(tmp_path_factory: pytest.TempPathFactory, cancer_csv: Path) -> tuple[Any, Path]:
    """The pipeline run once on the thread executor, and its project."""
    root = tmp_path_factory.mktemp("threads") / "project"
    return run_project(root, cancer_csv, "threads"), root


@pytest.fixture(scope="module")
def ray_instance() -> Any:
    """One local Ray instance for the module (Ray's start-up takes seconds)."""
    ray = pytest.importorskip("ray")
    from loopline.core.ray_executor import RayExecutor

    RayExecutor()  # starts Ray in this process the way the Ray executor does
    yield ray


def test_search_registers_the_best_model_through_the_gate(on_threads: tuple[Any, Path]) -> None:
    (result, trials), root = on_threads
    assert len(trials) == 4 and trials["score"].notna().all()
    assert list(trials["score"]) == sorted(trials["score"], reverse=True)
    version = result.load("register")
    assert (version.version, version.promoted) == ("1", True)
    model = result.load("search", "model")
    best = trials.iloc[0]
    assert model.estimator.get_params()["clf__C"] == pytest.approx(best["param.clf__C"])
    assert model.estimator.get_params()["clf__fit_intercept"] == best["param.clf__fit_intercept"]
    registered = open_registry(load_settings(root)).resolve("tumours@champion")
    assert registered.version == "1"
    assert registered.metrics["macro_f1"] > 0.9


def test_the_same_search_on_the_ray_executor_runs_trials_as_tasks_with_the_same_result(
    tmp_path: Path, cancer_csv: Path, on_threads: tuple[Any, Path], ray_instance: Any
) -> None:
    ray_run, on_ray = run_project(tmp_path / "ray", cancer_csv, "ray")
    pd.testing.assert_frame_equal(on_threads[0][1], on_ray)
    assert ray_run.load("register").promoted

    # Inside a Ray task (as a step on the Ray executor) the trials are Ray tasks themselves.
    data = pd.read_csv(cancer_csv)

    def in_task() -> tuple[str, dict[str, Any]]:
        found = search_model(data, ESTIMATOR, SPACE, target="diagnosis", trials=4, batch=2)
        return found.parallel, found.best_params

    parallel, params = ray_instance.get(ray_instance.remote(in_task).remote())
    here = search_model(data, ESTIMATOR, SPACE, target="diagnosis", trials=4, batch=2)
    assert (parallel, here.parallel) == ("ray", "sequential")
    assert params == here.best_params


def test_a_bad_search_space_is_a_clear_error(cancer_csv: Path) -> None:
    data = pd.read_csv(cancer_csv)
    with pytest.raises(LooplineError, match="'clf__C' must be a list of choices or low/high"):
        search_model(data, ESTIMATOR, {"clf__C": 3}, target="diagnosis")
    with pytest.raises(LooplineError, match="trials >= 1"):
        search_model(data, ESTIMATOR, SPACE, target="diagnosis", trials=0)
    with pytest.raises(LooplineError, match="no parameter 'C'") as raised:
        search_model(data, ESTIMATOR, {"C": [1.0]}, target="diagnosis")
    assert raised.value.hint == "did you mean 'clf__C'?"
    with pytest.raises(LooplineError, match="unknown scoring 'f2'"):
        search_model(data, ESTIMATOR, SPACE, target="diagnosis", scoring="f2")
