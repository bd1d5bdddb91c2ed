"""Tests for the MLflow Model Registry wrapper (real MLflow, SQLite store in tmp_path)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loopline.errors import DataError, LooplineError, ModelNotFound
from loopline.registry import (
    CHAMPION,
    PREVIOUS,
    LoadedModel,
    ModelRegistry,
    ModelVersionInfo,
    parse_ref,
)
from loopline.registry.models import flatten_metrics, flatten_params
from loopline.train.text import TextClassifierParams, train_text_classifier

TRAIN = pd.DataFrame(
    {
        "text": [
            "I love this, great day",
            "what a wonderful surprise",
            "happy and thankful",
            "awesome, best thing ever",
            "I hate this, awful day",
            "what a terrible mess",
            "sad and tired",
            "worst thing ever, horrible",
        ]
        * 3,
        "label": (["positive"] * 4 + ["negative"] * 4) * 3,
    }
)
PARAMS = TextClassifierParams(min_df=1)
METRICS = {
    "accuracy": 0.9,
    "macro_f1": 0.88,
    "roc_auc": None,
    "passed": True,
    "confusion_matrix": {"labels": ["a", "b"], "matrix": [[1, 0], [0, 1]]},
    "slices": {"short": {"n": 3, "accuracy": 1.0}},
}


class ListHistory:
    """List-backed fake of the AliasHistory protocol: records calls for assertions."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def record_alias_event(
        self,
        *,
        model_name: str,
        alias: str,
        version: str | None,
        previous_version: str | None,
        reason: str,
        actor: str,
        run_id: str | None,
    ) -> None:
        self.events.append(
            {
                "model_name": model_name,
                "alias": alias,
                "version": version,
                "previous_version": previous_version,
                "reason": reason,
                "actor": actor,
                "run_id": run_id,
            }
        )

    def alias_history(self, model_name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["model_name"] == model_name]


@pytest.fixture(scope="module")
def model():
    return train_text_classifier(TRAIN, PARAMS)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One SQLite store per module: creating MLflow's schema costs ~1-2 s; each test uses
    # its own model name instead.
    return tmp_path_factory.mktemp("loopline")


@pytest.fixture
def history() -> ListHistory:
    return ListHistory()


@pytest.fixture
def registry(store: Path, history: ListHistory) -> ModelRegistry:
    return ModelRegistry(
        f"sqlite:///{store}/mlflow.db",
        artifact_location=(store / "artifacts").as_uri(),
        history=history,
    )


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    return request.node.name.replace("[", "-").replace("]", "")


def _register(registry: ModelRegistry, model: Any, name: str, **overrides: Any) -> ModelVersionInfo:
    kwargs: dict[str, Any] = {
        "name": name,
        "params": PARAMS.to_dict(),
        "metrics": METRICS,
        "dataset_version": "ds-1",
        "input_example": TRAIN[["text"]].head(3),
        "tags": {"loopline.model_hash": "h1", "loopline.run_id": "pipeline-run-1"},
    }
    kwargs.update(overrides)
    return registry.register(model, **kwargs)


@pytest.fixture
def two_versions(registry: ModelRegistry, model: Any, name: str) -> list[ModelVersionInfo]:
    first = _register(registry, model, name)
    second = _register(
        registry, model, name, dataset_version="ds-2", tags={"loopline.model_hash": "h2"}
    )
    return [first, second]


def test_register_creates_numbered_versions_with_lineage(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo], name: str
) -> None:
    first, second = two_versions
    assert (first.name, first.version, second.version) == (name, "1", "2")
    assert first.dataset_version == "ds-1" and second.dataset_version == "ds-2"
    assert first.tags["loopline.model_hash"] == "h1"
    assert first.tags["loopline.mlflow_run_id"] == first.run_id
    assert first.tags["loopline.run_id"] == "pipeline-run-1"  # the caller's tag is kept
    assert first.aliases == []
    assert first.created_at is not None
    # Nested numbers are flattened; None, bools and the confusion matrix are skipped.
    assert first.metrics == {
        "accuracy": 0.9,
        "macro_f1": 0.88,
        "slices.short.n": 3.0,
        "slices.short.accuracy": 1.0,
    }
    assert registry.resolve(f"{name}/1").metrics == first.metrics


def test_run_records_params_metrics_and_dataset_tag(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo]
) -> None:
    run_id = two_versions[0].run_id
    assert run_id is not None
    run = registry.client.get_run(run_id)
    assert run.data.params["C"] == "1.0"
    assert run.data.params["word_ngram_range"] == "[1, 2]"
    assert run.data.metrics["macro_f1"] == 0.88
    assert run.data.tags["loopline.dataset_version"] == "ds-1"
    assert run.info.status == "FINISHED"


def test_logged_model_has_signature_example_and_pickle_format(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo], name: str
) -> None:
    import mlflow.artifacts
    from mlflow.models import Model

    uri = registry.client.get_model_version_download_uri(name, "1")
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    mlmodel = Model.load(str(local / "MLmodel"))
    assert mlmodel.signature.inputs.input_names() == ["text"]
    assert mlmodel.flavors["sklearn"]["serialization_format"] == "cloudpickle"
    assert (local / "input_example.json").exists()
    requirements = (local / "requirements.txt").read_text()
    assert "scikit-learn==" in requirements and "loopline==" in requirements


def test_registering_a_saved_model_folder_adds_signature_and_example(
    registry: ModelRegistry, model: Any, name: str, tmp_path: Path
) -> None:
    import mlflow.artifacts
    import mlflow.pyfunc
    from mlflow.models import Model

    from loopline.train.mlflow_io import save_model

    saved = tmp_path / "model"
    save_model(model, saved)  # as the pipeline's artifact store holds it
    assert Model.load(str(saved / "MLmodel")).signature is None
    info = _register(registry, model, name, saved_model=saved)
    uri = registry.client.get_model_version_download_uri(name, info.version)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    assert Model.load(str(local / "MLmodel")).signature.inputs.input_names() == ["text"]
    assert (local / "input_example.json").exists()
    frame = pd.DataFrame({"text": ["great day", "awful day"]})
    assert list(mlflow.pyfunc.load_model(uri).predict(frame)) == list(model.predict(frame))


def test_pyfunc_predicts_one_row_per_input_row(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo], name: str
) -> None:
    # The trap from the dependency notes: pyfunc passes a one-column DataFrame.
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(registry.client.get_model_version_download_uri(name, "2"))
    frame = pd.DataFrame({"text": ["great day", "awful day", "happy"]})
    assert list(pyfunc.predict(frame)) == ["positive", "negative", "positive"]


def test_promote_moves_champion_and_previous_and_records_history(
    registry: ModelRegistry,
    two_versions: list[ModelVersionInfo],
    name: str,
    history: ListHistory,
) -> None:
    registry.promote(name, "1", reason="first model", actor="alice", run_id="r1")
    assert registry.resolve(name).version == "1"
    registry.promote(name, "2", reason="better f1", actor="bob", run_id="r2")

    champion = registry.resolve(f"{name}@{CHAMPION}")
    assert (champion.version, champion.aliases) == ("2", [CHAMPION])
    assert registry.resolve(f"{name}@{PREVIOUS}").version == "1"
    assert [(e["alias"], e["version"], e["previous_version"]) for e in history.events] == [
        (CHAMPION, "1", None),
        (PREVIOUS, "1", None),
        (CHAMPION, "2", "1"),
    ]
    assert history.events[-1]["reason"] == "better f1"
    assert history.events[-1]["actor"] == "bob"
    assert history.events[-1]["run_id"] == "r2"
    assert registry.alias_history(name) == history.events


def test_promoting_the_champion_again_changes_nothing(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo], name: str, history: ListHistory
) -> None:
    registry.promote(name, "2", reason="r", actor="a")
    registry.promote(name, "2", reason="again", actor="a")
    assert len(history.events) == 1
    with pytest.raises(ModelNotFound):
        registry.resolve(f"{name}@{PREVIOUS}")


def test_rollback_swaps_champion_and_previous(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo], name: str, history: ListHistory
) -> None:
    registry.promote(name, "1", reason="r", actor="a")
    registry.promote(name, "2", reason="r", actor="a")
    history.events.clear()

    restored = registry.rollback(name, reason="accuracy dropped", actor="oncall")

    assert (restored.version, restored.aliases) == ("1", [CHAMPION])
    assert registry.resolve(f"{name}/2").aliases == [PREVIOUS]
    assert [(e["alias"], e["version"], e["previous_version"]) for e in history.events] == [
        (CHAMPION, "1", "2"),
        (PREVIOUS, "2", "1"),
    ]
    assert {e["reason"] for e in history.events} == {"accuracy dropped"}


def test_rollback_without_previous_explains_what_to_do(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo], name: str
) -> None:
    registry.promote(name, "1", reason="r", actor="a")
    with pytest.raises(LooplineError, match="no 'previous' version") as exc:
        registry.rollback(name, reason="r", actor="a")
    assert exc.value.hint is not None and "promote" in exc.value.hint


def test_set_alias_records_the_move(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo], name: str, history: ListHistory
) -> None:
    registry.set_alias(name, "challenger", "2", reason="canary", actor="ci")
    registry.set_alias(name, "challenger", "1", reason="swap", actor="ci")
    assert registry.resolve(f"{name}@challenger").version == "1"
    assert [(e["version"], e["previous_version"]) for e in history.events] == [
        ("2", None),
        ("1", "2"),
    ]


def test_reserved_alias_is_a_user_error(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo], name: str
) -> None:
    with pytest.raises(LooplineError, match="cannot set alias 'latest'"):
        registry.set_alias(name, "latest", "1", reason="r", actor="a")


def test_unknown_name_alias_and_version_raise_model_not_found(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo], name: str
) -> None:
    registry.promote(name, "1", reason="r", actor="a")
    with pytest.raises(ModelNotFound, match="no registered model named 'nope'") as exc:
        registry.resolve("nope@champion")
    assert exc.value.hint is not None and name in exc.value.hint
    with pytest.raises(ModelNotFound, match=r"no alias 'staging' \(aliases: champion\)"):
        registry.resolve(f"{name}@staging")
    with pytest.raises(ModelNotFound, match=r"no version '7' \(versions: 1, 2\)"):
        registry.load(f"{name}/7")
    with pytest.raises(ModelNotFound, match="no registered model"):
        registry.load("nope/1")
    with pytest.raises(ModelNotFound, match="no version '9'"):
        registry.promote(name, "9", reason="r", actor="a")
    with pytest.raises(ModelNotFound, match="no version '9'"):
        registry.set_alias(name, "challenger", "9", reason="r", actor="a")


def test_name_without_champion_tells_how_to_promote(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo], name: str
) -> None:
    with pytest.raises(ModelNotFound, match=r"no alias 'champion' \(aliases: none yet\)") as exc:
        registry.resolve(name)
    assert exc.value.hint is not None and "loopline models promote" in exc.value.hint


def test_load_returns_a_model_that_scores_dataframes(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo], name: str
) -> None:
    registry.promote(name, "2", reason="r", actor="a")
    loaded = registry.load(name)
    assert isinstance(loaded, LoadedModel)
    assert (loaded.info.version, loaded.input_columns, loaded.classes) == (
        "2",
        ["text"],
        ["negative", "positive"],
    )
    frame = pd.DataFrame({"id": [1, 2], "text": ["great day, love it", "awful, I hate it"]})
    proba = loaded.predict_proba(frame)  # the extra id column is dropped
    assert proba.shape == (2, 2)
    assert proba[0, 1] > 0.5 > proba[1, 1]
    with pytest.raises(DataError, match=r"missing \['text'\]"):
        loaded.predict_proba(pd.DataFrame({"tweet": ["x"]}))


def test_find_version_by_tag(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo], model: Any, name: str
) -> None:
    found = registry.find_version(name, "loopline.model_hash", "h2")
    assert found is not None and found.version == "2"
    assert registry.find_version(name, "loopline.model_hash", "h3") is None
    assert registry.find_version("never-registered", "loopline.model_hash", "h1") is None
    _register(registry, model, name, tags={"loopline.model_hash": 'it\'s "quoted"'})
    found = registry.find_version(name, "loopline.model_hash", 'it\'s "quoted"')
    assert found is not None and found.version == "3"


def test_list_models_newest_first_with_aliases(
    registry: ModelRegistry, two_versions: list[ModelVersionInfo], name: str
) -> None:
    registry.promote(name, "1", reason="r", actor="a")
    mine = [i for i in registry.list_models() if i.name == name]
    assert [(i.version, i.aliases) for i in mine] == [("2", []), ("1", [CHAMPION])]
    assert mine[0].metrics["macro_f1"] == 0.88
    as_dict = mine[1].to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert as_dict["dataset_version"] == "ds-1"


def test_alias_history_is_empty_without_a_history_store(store: Path) -> None:
    assert ModelRegistry(f"sqlite:///{store}/mlflow.db").alias_history("anything") == []


def test_register_rejects_bad_input_before_creating_a_run(
    registry: ModelRegistry, model: Any, name: str
) -> None:
    with pytest.raises(DataError, match="input_example must be a non-empty pandas DataFrame"):
        _register(registry, model, name, input_example=TRAIN["text"].head(3))
    with pytest.raises(LooplineError, match="invalid model name"):
        _register(registry, model, "a/b")
    assert not [i for i in registry.list_models() if i.name == name]


def test_default_artifact_location_sits_next_to_the_sqlite_file(tmp_path: Path) -> None:
    registry = ModelRegistry(f"sqlite:///{tmp_path}/.loopline/mlflow.db")
    assert registry.artifact_location == (tmp_path / ".loopline" / "mlartifacts").as_uri()


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        ("sentiment", ("sentiment", CHAMPION, None)),
        ("sentiment@challenger", ("sentiment", "challenger", None)),
        ("sentiment/3", ("sentiment", None, "3")),
        ("my.model-v2/03", ("my.model-v2", None, "3")),
    ],
)
def test_parse_ref(ref: str, parsed: tuple[str, str | None, str | None]) -> None:
    assert parse_ref(ref) == parsed


@pytest.mark.parametrize("ref", ["", "@champion", "sentiment@", "sentiment/latest", "/3"])
def test_parse_ref_rejects_malformed_references(ref: str) -> None:
    with pytest.raises(LooplineError, match="cannot read the model reference"):
        parse_ref(ref)


def test_flatteners() -> None:
    assert flatten_metrics({"a": {"b": 1, "c": [1]}, "d e": 2.5, "f": float("nan")}) == {
        "a.b": 1.0,
        "d e": 2.5,
    }
    assert flatten_metrics({"per_class": {"très+bien": {"f1": 0.5}}}) == {
        "per_class.très_bien.f1": 0.5
    }
    assert flatten_params({"model": {"C": 1.0, "grams": (1, 2)}, "empty": {}}) == {
        "model.C": "1.0",
        "model.grams": "(1, 2)",
        "empty": "{}",
    }


def test_importing_loopline_modules_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, json\n"
        "import loopline.registry, loopline.evaluate.gate, loopline.evaluate.metrics\n"
        "import loopline.train.text\n"
        "heavy = ('mlflow', 'sklearn', 'scipy')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(result.stdout) == []
