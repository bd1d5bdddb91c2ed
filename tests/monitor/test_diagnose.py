"""`loopline monitor diagnose`: instrumentation first, then data drift, then concept drift.

Each test writes a realistic project on disk: a reference profile stored with model
version 1, eight days of predictions in the prediction log (Parquet segments written by the
real sink) and feedback labels for about half of them in the metadata store.

The "fraud" model flags transactions of more than 150 (or more than 100 in the app). The
true rule agrees inside the training range, but amounts above 400 are business accounts,
never fraud: the model never saw them, so it errs once amounts drift upwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import typer
from rich.console import Console
from typer.testing import CliRunner

from loopline.cli.monitor import monitor_app
from loopline.config import Settings, load_settings
from loopline.core import schema
from loopline.core.artifacts import ArtifactStore
from loopline.core.feedback import record_feedback
from loopline.core.metadata import MetadataStore
from loopline.core.predlog import ParquetSink, PredictionRecord
from loopline.errors import ConfigError, LooplineError
from loopline.monitor.diagnose import (
    DiagnoseThresholds,
    diagnose,
    diagnose_data,
    diagnose_thresholds,
)
from loopline.monitor.profile import build_profile
from loopline.monitor.report import load_monitor_data
from loopline.orchestrate.rules import load_monitoring

MODEL = "fraud"
T0 = datetime(2026, 5, 1, tzinfo=UTC)
DAYS, PER_DAY, CHANGE_DAY = 8, 300, 4
CHANGE = (T0 + timedelta(days=CHANGE_DAY)).isoformat()


def transactions(rng: np.random.Generator, n: int, scale: float = 1.0) -> pd.DataFrame:
    """Inputs, the model's prediction and the true label under the original concept."""
    amount = rng.gamma(2.0, 50.0, n) * scale
    channel = rng.choice(["web", "app", "pos"], n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south"], n)
    threshold = np.where(channel == "app", 100.0, 150.0)
    predicted = amount > threshold
    truth = predicted & (amount <= 400)
    noise = rng.random(n) < 0.06
    label = np.where(noise, ~truth, truth)
    return pd.DataFrame(
        {
            "amount": amount.round(2),
            "channel": channel,
            "region": region,
            "prediction": np.where(predicted, "1", "0"),
            "label": np.where(label, "1", "0"),
        }
    )


Tweak = Callable[[int, pd.DataFrame, np.random.Generator], pd.DataFrame]


def build_project(root: Path, tweak: Tweak | None = None, *, feedback: bool = True) -> Settings:
    """A project whose log and feedback follow ``tweak(day, frame, rng)`` day by day."""
    settings = load_settings(root)
    assert settings.metadata_url is not None and settings.prediction_log_url is not None
    store = MetadataStore(settings.metadata_url)
    rng = np.random.default_rng(7)
    store_profile(settings, store, transactions(rng, 4000))
    sink = ParquetSink(settings.prediction_log_url)
    for day in range(DAYS):
        frame = transactions(rng, PER_DAY)
        if tweak is not None:
            frame = tweak(day, frame, rng)
        if frame.empty:
            continue  # nothing logged that day: a gap
        sink.write(list(records(frame, T0 + timedelta(days=day), f"d{day}-")))
        if feedback:
            for row in frame.sample(frac=0.5, random_state=day).itertuples():
                record_feedback(store, f"d{day}-{row.Index}", row.label, model_name=MODEL)
    store.close()
    return settings


def store_profile(settings: Settings, store: MetadataStore, train: pd.DataFrame) -> None:
    """Register version 1 with the reference profile of its training data."""
    profile = build_profile(
        train,
        numeric=["amount"],
        categorical=["channel", "region"],
        prediction="prediction",
        labels="label",
        slices=["channel"],
    )
    stored = ArtifactStore(str(settings.artifact_root)).save(profile.to_dict())
    store.record_model_version(
        model_name=MODEL,
        version="1",
        model_hash="0" * 64,
        dataset_hash=None,
        dataset_version=None,
        mlflow_run_id=None,
        run_id=None,
    )
    versions = schema.model_versions
    with store.engine.begin() as conn:
        conn.execute(
            sa.update(versions)
            .where(versions.c.model_name == MODEL, versions.c.version == "1")
            .values(profile_hash=stored.hash)
        )


def records(frame: pd.DataFrame, start: datetime, prefix: str) -> Any:
    step = timedelta(days=1) / len(frame)
    for i, row in enumerate(frame.to_dict("records")):
        inputs = {k: row[k] for k in ("amount", "channel", "region") if k in row}
        p1 = 0.8 if row["prediction"] == "1" else 0.2
        yield PredictionRecord(
            request_id=f"{prefix}{frame.index[i]}",
            ts=start + i * step,
            model_name=MODEL,
            model_version=str(row.get("version", "1")),
            route="champion",
            inputs=inputs,
            label=row["prediction"],
            probabilities={"0": 1 - p1, "1": p1},
            latency_ms=2.0,
        )


# --- scenarios ----------------------------------------------------------------------------


def concept_shift(day: int, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """From CHANGE_DAY on, fraud on the web moves to small amounts: same inputs, new labels."""
    if day >= CHANGE_DAY:
        web = frame["channel"] == "web"
        small = frame["amount"] < 90
        frame.loc[web, "label"] = np.where(small[web], "1", "0")
    return frame


def amount_shift(day: int, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """From CHANGE_DAY on, amounts are 2.5x larger; the true rule stays the same."""
    if day < CHANGE_DAY:
        return frame
    shifted = transactions(rng, len(frame), scale=2.5)
    shifted.index = frame.index
    return shifted


def amount_dropped(day: int, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """From CHANGE_DAY on, the client stops sending the amount; the model sees 0."""
    if day >= CHANGE_DAY:
        frame = frame.drop(columns=["amount"]).assign(prediction="0")
    return frame


def amount_null(day: int, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """From CHANGE_DAY on, the amount is logged as null (a broken feature join)."""
    if day >= CHANGE_DAY:
        frame = frame.assign(amount=None, prediction="0")
    return frame


def amount_as_text(day: int, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """From CHANGE_DAY on, the amount arrives as text with a currency ("12.50 EUR")."""
    if day >= CHANGE_DAY:
        frame = frame.assign(amount=[f"{a:.2f} EUR" for a in frame["amount"]], prediction="0")
    return frame


def worse_version(canary: bool) -> Tweak:
    """From CHANGE_DAY on, version 2 serves (all traffic, or half as a canary) and gets
    a quarter of its predictions wrong on top of the noise."""

    def tweak(day: int, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        if day < CHANGE_DAY:
            return frame
        v2 = rng.random(len(frame)) < 0.5 if canary else np.ones(len(frame), dtype=bool)
        wrong = v2 & (rng.random(len(frame)) < 0.25)
        flipped = np.where(frame["prediction"] == "1", "0", "1")
        return frame.assign(
            prediction=np.where(wrong, flipped, frame["prediction"]),
            version=np.where(v2, "2", "1"),
        )

    return tweak


# --- tests --------------------------------------------------------------------------------


def test_concept_drift_is_diagnosed_and_retrain_recommended(project: Path) -> None:
    settings = build_project(project, concept_shift)

    result = diagnose(MODEL, settings, window="1D")

    assert result.cause == "concept_drift"
    assert result.recommendation == "retrain"
    assert result.drifted_features == []
    assert not [f for f in result.stage("instrumentation") if f.severity == "problem"]
    concept = result.stage("concept_drift")[0]
    assert concept.severity == "problem"
    assert concept.since == CHANGE
    assert result.performance["dropped"]
    assert result.performance["recent"] < result.performance["baseline"] - 0.1
    # The per-slice evidence points at the web channel, where the relation changed.
    assert concept.data["slices"][0]["value"] == "web"
    assert result.to_dict()["findings"]["concept_drift"][0]["since"] == CHANGE


def test_data_drift_names_the_feature_and_when_it_started(project: Path) -> None:
    settings = build_project(project, amount_shift)

    result = diagnose(MODEL, settings, window="1D")

    assert result.cause == "data_drift"
    assert result.recommendation == "retrain"
    assert result.drifted_features == ["amount"]
    finding = next(f for f in result.stage("data_drift") if f.column == "amount")
    assert finding.since == CHANGE
    assert finding.data["first_flagged"] == CHANGE
    assert finding.data["windows_flagged"] == DAYS - CHANGE_DAY
    assert result.performance["dropped"]
    assert "amount" in result.summary


@pytest.mark.parametrize(
    ("tweak", "title"),
    [
        (amount_dropped, "input 'amount' went missing"),
        (amount_null, "input 'amount' went missing"),
        (amount_as_text, "input 'amount' changed type"),
    ],
    ids=["column-dropped", "all-null", "type-changed"],
)
def test_broken_instrumentation_comes_first(project: Path, tweak: Tweak, title: str) -> None:
    settings = build_project(project, tweak)

    result = diagnose(MODEL, settings, window="1D")

    assert result.cause == "instrumentation"
    assert result.recommendation == "fix_pipeline"
    problem = next(f for f in result.stage("instrumentation") if f.severity == "problem")
    assert problem.title == title
    assert problem.column == "amount"
    assert problem.since == CHANGE
    # The broken column is not reported as drift: the pipeline explains it.
    assert "amount" not in result.drifted_features
    assert "fix it first" in result.summary.lower()


@pytest.mark.parametrize("canary", [False, True], ids=["switch", "canary"])
def test_a_worse_new_version_is_rolled_back(project: Path, canary: bool) -> None:
    settings = build_project(project, worse_version(canary))

    result = diagnose(MODEL, settings, window="1D")

    assert result.versions == ["1", "2"]
    assert result.cause == "model_version"
    assert result.recommendation == "rollback"
    finding = result.stage("model_version")[0]
    assert finding.data["same_windows"] is canary
    assert finding.since == CHANGE
    assert "Roll back to version 1" in result.summary
    assert result.drifted_features == []


def test_no_feedback_at_all_still_checks_instrumentation_and_drift(project: Path) -> None:
    settings = build_project(project, amount_shift, feedback=False)

    result = diagnose(MODEL, settings, window="1D")

    assert result.n_labeled == 0
    assert result.performance["baseline"] is not None  # from the reference profile
    assert result.performance["dropped"] is False
    concept = result.stage("concept_drift")[0]
    assert concept.severity == "info" and "not enough feedback" in concept.title
    assert result.drifted_features == ["amount"]
    assert result.recommendation == "retrain"


def test_gap_in_the_log_and_unknown_feedback_are_reported(project: Path) -> None:
    def gap(day: int, frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        return frame.iloc[:0] if day == 2 else frame

    settings = build_project(project, gap)
    store = MetadataStore(str(settings.metadata_url))
    record_feedback(store, "no-such-request", "1", model_name=MODEL)

    data = load_monitor_data(MODEL, settings)
    result = diagnose_data(data, "1D")

    assert data.unmatched_feedback == 1
    titles = {f.title: f for f in result.stage("instrumentation")}
    assert titles["gaps in the prediction log"].since == (T0 + timedelta(days=2)).isoformat()
    assert titles["feedback for unknown request ids"].severity == "info"
    # The stray label was attached to nothing.
    assert int(data.frame["label_true"].notna().sum()) == result.n_labeled
    assert result.recommendation == "none"


def test_diagnose_cli_json_and_errors(project: Path) -> None:
    settings = build_project(project, concept_shift)
    app = _cli()

    result = CliRunner().invoke(app, ["-C", str(project), "monitor", "diagnose", MODEL, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["recommendation"] == "retrain"
    assert payload["cause"] == "concept_drift"

    text = CliRunner().invoke(app, ["-C", str(project), "monitor", "diagnose", MODEL])
    assert text.exit_code == 0, text.output
    assert "Recommendation: RETRAIN" in text.output

    unknown = CliRunner().invoke(app, ["-C", str(project), "monitor", "diagnose", "nope"])
    assert isinstance(unknown.exception, LooplineError)
    assert "no predictions of model 'nope'" in str(unknown.exception)
    bad = CliRunner().invoke(app, ["-C", str(project), "monitor", "diagnose", MODEL, "-w", "x"])
    assert isinstance(bad.exception, LooplineError)
    assert settings.project_root == project.resolve()


def test_thresholds_in_loopline_yaml_change_the_verdict(project: Path) -> None:
    settings = build_project(project, concept_shift)
    default = diagnose(MODEL, settings, window="1D")
    assert (default.cause, default.recommendation) == ("concept_drift", "retrain")
    fall = default.performance["baseline"] - default.performance["recent"]
    assert 0.1 < fall < 0.5  # accuracy fell about 0.34: below a 0.5 threshold

    (project / "loopline.yaml").write_text(
        "monitoring:\n  diagnose:\n    metric_drop: 0.5\n    min_labels: 30\n"
    )
    tolerant = load_settings(project)
    assert diagnose_thresholds(tolerant).metric_drop == 0.5
    load_monitoring(tolerant)  # the alert rules' loader accepts the diagnose section
    result = diagnose(MODEL, tolerant, window="1D")

    assert result.performance["dropped"] is False
    assert (result.cause, result.recommendation) == ("none", "none")
    assert result.stage("concept_drift")[0].severity != "problem"
    # An explicit argument wins over the settings.
    again = diagnose(MODEL, tolerant, window="1D", thresholds=DiagnoseThresholds())
    assert (again.cause, again.recommendation) == ("concept_drift", "retrain")


def test_diagnose_thresholds_defaults_and_bad_settings(project: Path) -> None:
    assert diagnose_thresholds(load_settings(project)) == DiagnoseThresholds()
    assert DiagnoseThresholds().min_labels == 30 and DiagnoseThresholds().slice_drop == 0.1

    typo = load_settings(project, monitoring={"diagnose": {"min_label": 10}})
    with pytest.raises(ConfigError, match="unknown key 'min_label'") as info:
        diagnose_thresholds(typo)
    assert "min_labels" in (info.value.hint or "") and "slice_drop" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="unknown key 'min_label'"):
        diagnose(MODEL, typo, window="1D")  # before any data is read

    out_of_range = load_settings(project, monitoring={"diagnose": {"slice_drop": 2}})
    with pytest.raises(ConfigError, match=r"slice_drop: .*\(found 2\)"):
        diagnose_thresholds(out_of_range)
    not_a_mapping = load_settings(project, monitoring={"diagnose": [0.1]})
    with pytest.raises(ConfigError, match="must be a mapping"):
        diagnose_thresholds(not_a_mapping)


def _cli() -> typer.Typer:
    """A root command with ``-C`` like the real one, with the monitor group mounted."""
    root = typer.Typer()

    @root.callback()
    def _root(project: Path = typer.Option(None, "--project", "-C")) -> None:
        """Test root."""

    root.add_typer(monitor_app, name="monitor")
    return root


def test_an_instrumentation_finding_is_reflected_in_the_conclusion_and_said_once(
    project: Path,
) -> None:
    settings = build_project(project)
    store = MetadataStore(str(settings.metadata_url))
    record_feedback(store, "no-such-request", "1", model_name=MODEL)
    store.close()

    result = diagnose(MODEL, settings, window="1D")
    console = Console(record=True, width=200)
    result.print(console)
    printed = console.export_text()

    listed = [f for f in result.stage("instrumentation")]
    assert [f.title for f in listed] == ["feedback for unknown request ids"]
    assert listed[0].severity != "problem" and result.recommendation == "none"
    # The conclusion names the finding and says why it does not count as a problem ...
    assert "feedback for unknown request ids" in result.summary
    assert "ignored" in result.summary
    # ... and the stray label is reported once, not again as a note.
    assert printed.count("name request ids that are not in the log") == 1
    assert not any("request ids" in note for note in result.notes)


def test_drift_findings_show_the_score_with_its_meaning_and_threshold(project: Path) -> None:
    settings = build_project(project, amount_shift)

    result = diagnose(MODEL, settings, window="1D")

    finding = next(f for f in result.stage("data_drift") if f.column == "amount")
    line = next(line for line in finding.evidence if "drift score" in line)
    assert f"{finding.data['score']:.2f}" in line
    assert "threshold" in line and "Wasserstein" in line


def test_below_the_reference_from_the_start_is_concluded_as_the_evidence_says(
    project: Path,
) -> None:
    def worse_from_the_start(day: int, frame: pd.DataFrame, rng: np.random.Generator) -> Any:
        wrong = rng.random(len(frame)) < 0.25
        flipped = np.where(frame["prediction"] == "1", "0", "1")
        return frame.assign(prediction=np.where(wrong, flipped, frame["prediction"]))

    settings = build_project(project, worse_from_the_start)

    result = diagnose(MODEL, settings, window="1D")

    concept = result.stage("concept_drift")[0]
    assert concept.severity == "problem"
    assert any("skew" in line for line in concept.evidence)
    # The conclusion says what the evidence says: a gap from the start, not a change since.
    assert "skew" in result.summary and "rather than a change over time" in result.summary
    assert "changed since" not in result.summary
