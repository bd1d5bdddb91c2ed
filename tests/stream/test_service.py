"""The decision service on a project: fraud-fast trained and registered by a pipeline,
fraud-heavy registered; decisions traced by ``loopline lineage --request-id``; the heavy
model's batch re-score and its effect on the next transactions; analysts' labels applied
as feedback and late labels; the heavy model retrained on the labelled cases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from _support import PII_KEY, POLICY, customer_counts, transactions
from typer.testing import CliRunner

from loopline import pipeline, step
from loopline.config import Settings, load_settings
from loopline.core.metadata import MetadataStore
from loopline.errors import LooplineError

FRAUD = {
    "fast_model": "fraud-fast@champion",
    "heavy_model": "fraud-heavy@champion",
    "thresholds": {"review": 0.5, "block": 0.9},
    "review_queue": "fraud-review",
    "features": "embedded",
    "model_poll_s": None,
}


@step(dataset="transactions")
def history(rows: int = 800) -> pd.DataFrame:
    """Amounts and labels: fraud is likelier the larger the amount."""
    rng = np.random.default_rng(5)
    amounts = rng.uniform(0, 400, rows)
    fraud = (amounts + rng.normal(0, 60, rows) > 200).astype(int)
    return pd.DataFrame({"TX_AMOUNT": amounts, "TX_FRAUD": fraud})


@pipeline(name="fraud-fast")
def fraud_fast(model_name: str = "fraud-fast") -> None:
    from sklearn.linear_model import LogisticRegression

    from loopline.steps import evaluate, gate, profile, register, split, train

    data = history()
    train_df, test_df = split(data, by="random", test_size=0.3)
    model = train(train_df, model=LogisticRegression(), features=["TX_AMOUNT"], target="TX_FRAUD")
    metrics = evaluate(model, test_df)
    decision = gate(model, test_df, metrics, model_name=model_name, metric="average_precision")
    register(model, decision, example=test_df, reference=profile(model, test_df))


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project: fraud-fast trained by a pipeline (with lineage), fraud-heavy registered
    (a model that finds fraud from 150 on: stricter than the fast one)."""
    from sklearn.linear_model import LogisticRegression

    from loopline.registry.project import open_registry
    from loopline.train.model import as_model

    root = tmp_path_factory.mktemp("fraud-service")
    config = {"pii": {"policy": POLICY}, "fraud": FRAUD}
    (root / "loopline.yaml").write_text(yaml.safe_dump(config))
    settings = load_settings(root)
    fraud_fast.run(settings)
    amounts = np.linspace(0, 400, 400)
    labels = (amounts > 150).astype(int)
    heavy = LogisticRegression().fit(pd.DataFrame({"TX_AMOUNT": amounts}), labels)
    registry = open_registry(settings)
    info = registry.register(
        as_model(heavy),
        name="fraud-heavy",
        params={},
        metrics={},
        dataset_version=None,
        input_example=pd.DataFrame({"TX_AMOUNT": [12.5, 250.0]}),
    )
    registry.promote("fraud-heavy", info.version, reason="tests", actor="tests")
    return root


@pytest.fixture
def project(registered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the registered project, and the PII key."""
    root = tmp_path / "project"
    shutil.copytree(registered, root)
    monkeypatch.setenv("LOOPLINE_PII_KEY", PII_KEY)
    return root


def consume(settings: Settings, records: list[dict[str, Any]], name: str) -> dict[str, Any]:
    from loopline.stream.service import open_consumer, run_consumer

    path = settings.project_root / f"{name}.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    consumer = open_consumer(settings, str(path))
    return run_consumer(consumer).summary()


def decisions(settings: Settings) -> dict[str, dict[str, Any]]:
    from loopline.stream.decisions import DecisionLog

    assert settings.metadata_url
    log = DecisionLog(settings.metadata_url, source="tests")
    try:
        return {r["tx_id"]: r for r in log.rows()}
    finally:
        log.close()


def test_lineage_of_a_request_id_names_the_versions_their_data_and_code(project: Path) -> None:
    from loopline.cli import app

    settings = load_settings(project)
    summary = consume(settings, transactions(40), "tx")
    assert summary["decided"] == 40 and summary["fallbacks"] == {"heavy_unavailable": 40}
    review = next(k for k, r in decisions(settings).items() if r["action"] == "review")

    runner = CliRunner()
    shown = runner.invoke(app, ["-C", str(project), "lineage", "--request-id", review])
    assert shown.exit_code == 0, shown.output
    text = shown.output
    assert f"decision {review}: review · decided " in text
    assert "(transaction time 2018-04-01T00:00:" in text
    assert "reason: fast score 0." in text and ">= review 0.5" in text
    assert "thresholds: review 0.5, block 0.9" in text
    assert "fallback: heavy_unavailable" in text
    assert "CUSTOMER_ID=pn1_" in text and "@example.com" not in text
    assert "fast: fraud-fast version 1: run " in text and "data transactions:v1" in text
    assert ", code untracked, data" in text  # the project is no git work tree
    assert "heavy: fraud-heavy version 1: no lineage for fraud-heavy version 1" in text

    as_json = runner.invoke(app, ["-C", str(project), "lineage", "--request-id", review, "--json"])
    found = json.loads(as_json.stdout)
    fast = found["models"][0]
    assert (fast["role"], fast["name"], fast["version"]) == ("fast", "fraud-fast", "1")
    assert fast["datasets"] == ["transactions:v1"] and fast["pipeline"] == "fraud-fast"
    assert found["action"] == "review" and found["features"]["email"] == "[EMAIL]"

    missing = runner.invoke(app, ["-C", str(project), "lineage", "--request-id", "nope"])
    assert isinstance(missing.exception, LooplineError)  # `loopline` prints it, exit 2
    assert "no decision and no logged prediction with id 'nope'" in str(missing.exception)
    # `lineage MODEL` still works.
    model = runner.invoke(app, ["-C", str(project), "lineage", "fraud-fast"])
    assert model.exit_code == 0 and "fraud-fast version 1" in model.output


def test_rescore_writes_heavy_scores_and_sends_the_newly_suspicious_to_review(
    project: Path,
) -> None:
    from loopline.label.queue import LabelQueue
    from loopline.stream.rescore import rescore

    settings = load_settings(project)
    consume(settings, transactions(40), "tx")
    result = rescore(settings)
    assert (result.model, result.version, result.scored) == ("fraud-heavy", "1", 40)
    rows = decisions(settings)
    newly = {k for k, r in rows.items() if r["action"] == "allow" and r["batch_score"] >= 0.5}
    assert result.newly_suspicious == len(newly) > 0
    tasks = LabelQueue(MetadataStore(settings.metadata_url or ""), "fraud-review").tasks()
    by_source = tasks.groupby("source")["item_id"].apply(set).to_dict()
    assert by_source["rescore"] == newly
    assert by_source["stream"] == {k for k, r in rows.items() if r["action"] == "review"}
    payload = tasks[tasks["source"] == "rescore"]["payload"].iloc[0]
    assert payload["reason"].startswith("rescore: heavy score ")
    assert rescore(settings).scored == 0  # nothing new

    # The next transactions: a customer whose latest heavy score is suspicious is reviewed
    # even when the fast model alone would allow.
    later = transactions(10, start=40)
    summary = consume(settings, later, "later")
    assert "heavy_unavailable" not in summary["fallbacks"]
    rows = decisions(settings)
    latest = {}
    for tx in transactions(40):
        latest[tx["CUSTOMER_ID"]] = rows[str(tx["TRANSACTION_ID"])]["batch_score"]
    for tx in later:
        row = rows[str(tx["TRANSACTION_ID"])]
        heavy = latest[tx["CUSTOMER_ID"]]
        if heavy >= 0.5 and row["fast_score"] < 0.5:
            assert row["action"] in ("review", "block")
            assert row["heavy_score"] == pytest.approx(heavy)
            assert "(customer's latest)" in row["reason"]


def test_an_analysts_label_becomes_feedback_and_a_late_label_once(project: Path) -> None:
    from loopline.core.feedback import read_feedback
    from loopline.features import EmbeddedFeatureStore
    from loopline.label.queue import LabelQueue
    from loopline.stream.reviews import apply_reviews

    settings = load_settings(project)
    consume(settings, transactions(40), "tx")
    store = MetadataStore(settings.metadata_url or "")
    queue = LabelQueue(store, "fraud-review")
    tasks = queue.tasks().sort_values("priority", ascending=False)
    fraud_item, legit_item = tasks["item_id"].iloc[0], tasks["item_id"].iloc[1]
    ids = dict(zip(tasks["item_id"], tasks["id"], strict=True))
    queue.submit(ids[fraud_item], "ana", "fraud")
    queue.submit(ids[legit_item], "ana", "legit")

    applied = apply_reviews(settings)
    assert (applied.applied, applied.fraud, applied.legit) == (2, 1, 1)
    feedback = read_feedback(store, "fraud-fast").set_index("request_id")
    assert feedback.loc[fraud_item, "label"] == "1" and feedback.loc[legit_item, "label"] == "0"
    assert set(feedback["source"]) == {"review"}
    assert set(feedback["model_name"]) == {"fraud-fast"}
    assert apply_reviews(settings).applied == 0  # idempotent

    # The late label counts for terminal 7's risk from then on (one fraud among 40).
    masker_probe = {
        "TRANSACTION_ID": 999_999,
        "TX_DATETIME": "2018-04-08 12:00:00",
        "CUSTOMER_ID": "pn1_probe",
        "TERMINAL_ID": 7,
        "TX_AMOUNT": 1.0,
    }
    online = EmbeddedFeatureStore(settings.home_dir / "features")
    risk = online.update_and_read(masker_probe)
    assert risk["TERMINAL_TX_1D"] == 40 and risk["TERMINAL_RISK_1D"] == pytest.approx(1 / 40)
    online.close()

    queue.submit(ids[legit_item], "ana", "fraud")  # the analyst changed their mind
    again = apply_reviews(settings)
    assert (again.applied, again.fraud) == (1, 1)
    assert read_feedback(store).set_index("request_id").loc[legit_item, "label"] == "1"


def heavy_predictions(settings: Settings) -> pd.DataFrame:
    from loopline.core.predlog import read_predictions

    assert settings.prediction_log_url
    return read_predictions(settings.prediction_log_url, "fraud-heavy")


def feedback_rows(settings: Settings) -> pd.DataFrame:
    import sqlalchemy as sa

    from loopline.core import schema

    fb = schema.feedback
    store = MetadataStore(settings.metadata_url or "")
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(fb.c.request_id, fb.c.model_name, fb.c.label, fb.c.source))
        return pd.DataFrame(rows.all(), columns=["request_id", "model_name", "label", "source"])


def test_rescore_logs_each_first_heavy_score_once_as_the_heavy_models_prediction(
    project: Path,
) -> None:
    from sklearn.linear_model import LogisticRegression

    from loopline.registry.project import open_registry
    from loopline.stream.rescore import rescore
    from loopline.train.model import as_model

    settings = load_settings(project)
    records = transactions(40)
    consume(settings, records, "tx")
    result = rescore(settings)
    assert (result.scored, result.logged) == (40, 40)
    logged = heavy_predictions(settings).set_index("request_id")
    rows = decisions(settings)
    assert sorted(logged.index) == sorted(rows)
    assert set(logged["model_version"]) == {"1"} and set(logged["route"]) == {"champion"}
    for tx_id, row in rows.items():
        assert logged.loc[tx_id, "proba.1"] == pytest.approx(row["batch_score"])
        assert logged.loc[tx_id, "ts"] == pd.Timestamp(row["tx_time"], tz="UTC")
    # the heavy model's inputs, and the customer as the decision stored it (pseudonymised)
    amounts = {str(r["TRANSACTION_ID"]): r["TX_AMOUNT"] for r in records}
    assert logged["input.TX_AMOUNT"].to_dict() == amounts
    assert logged["input.CUSTOMER_ID"].str.startswith("pn1_").all()
    assert not any(c.startswith("input.email") for c in logged.columns)

    assert rescore(settings).logged == 0  # nothing new
    # A new champion re-scores the same transactions: their first score stays the one logged.
    registry = open_registry(settings)
    amounts_fit = np.linspace(0, 400, 400)
    newer = LogisticRegression().fit(pd.DataFrame({"TX_AMOUNT": amounts_fit}), amounts_fit > 50)
    info = registry.register(
        as_model(newer), name="fraud-heavy", params={}, metrics={}, dataset_version=None,
        input_example=pd.DataFrame({"TX_AMOUNT": [1.0]}),
    )  # fmt: skip
    registry.promote("fraud-heavy", info.version, reason="tests", actor="tests")
    again = rescore(settings)
    assert (again.version, again.scored, again.logged) == ("2", 40, 0)
    consume(settings, transactions(5, start=40), "later")
    later = rescore(settings)
    assert (later.version, later.scored, later.logged) == ("2", 5, 5)
    versions = heavy_predictions(settings).groupby("model_version")["request_id"].count()
    assert versions.to_dict() == {"1": 40, "2": 5}


def test_labels_and_reviews_are_feedback_for_both_models_and_the_heavy_one_is_monitored(
    project: Path,
) -> None:
    from sklearn.metrics import average_precision_score

    from loopline.label.queue import LabelQueue
    from loopline.monitor.report import build_report
    from loopline.stream.rescore import rescore
    from loopline.stream.reviews import apply_reviews, record_labels

    settings = load_settings(project)
    records = transactions(40)
    consume(settings, records, "tx")
    rescore(settings)
    queue = LabelQueue(MetadataStore(settings.metadata_url or ""), "fraud-review")
    truth = {str(r["TRANSACTION_ID"]): int(r["TX_AMOUNT"] > 200) for r in records}
    task = queue.tasks().iloc[0]
    answer = "fraud" if truth[task["item_id"]] else "legit"
    queue.submit(task["id"], "ana", answer)
    assert apply_reviews(settings).applied == 1
    reviewed = feedback_rows(settings)
    assert sorted(reviewed["model_name"]) == ["fraud-fast", "fraud-heavy"]
    assert set(reviewed["request_id"]) == {task["item_id"]}
    assert set(reviewed["label"]) == {str(truth[task["item_id"]])}

    late = [(tx_id, label, "2018-04-08") for tx_id, label in truth.items()]
    assert record_labels(settings, late, source="delayed") == 40
    delayed = feedback_rows(settings).query("source == 'delayed'")
    assert delayed.groupby("model_name")["request_id"].nunique().to_dict() == {
        "fraud-fast": 40,
        "fraud-heavy": 40,
    }

    # `loopline monitor report fraud-heavy`: delayed-label average precision of its scores
    report = build_report("fraud-heavy", settings, metrics=["average_precision"])
    assert (report.n_predictions, report.n_labeled) == (40, 40)
    by_version = report.performance["by_version"]
    scores = heavy_predictions(settings).set_index("request_id")["proba.1"]
    expected = average_precision_score([truth[t] for t in scores.index], scores)
    assert list(by_version) == ["1"]
    assert by_version["1"]["average_precision"] == pytest.approx(expected, abs=1e-4)


def test_the_heavy_model_retrains_on_reviewed_and_delayed_labels(project: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from loopline.stream.retrain import heavy_retrain
    from loopline.stream.reviews import record_labels

    settings = load_settings(project)
    records = transactions(60)
    consume(settings, records, "tx")
    labels = [
        (r["TRANSACTION_ID"], int(r["TX_AMOUNT"] > 200), "2018-04-08 00:00:00") for r in records
    ]
    assert record_labels(settings, labels, source="delayed") == 60

    retrain = heavy_retrain()
    result = retrain.run(
        settings,
        model=LogisticRegression(),
        features=["TX_AMOUNT", "CUSTOMER_TX_1D"],
        k=5,
        min_improvement=-1.0,
    )
    assert result.status == "completed"
    store = MetadataStore(settings.metadata_url or "")
    version = store.current_alias("fraud-heavy", "champion")
    assert version == "2"
    lineage = store.model_version("fraud-heavy", "2")
    assert lineage is not None and "labelled_decisions:v1" in lineage["datasets"]
    frame = result.load("labelled_decisions")
    assert len(frame) == 60 and set(frame["label_source"]) == {"delayed"}
    assert frame["CUSTOMER_ID"].str.startswith("pn1_").all()  # masked, as decided
    # Nothing new: every step is a cache hit.
    again = retrain.run(
        settings,
        model=LogisticRegression(),
        features=["TX_AMOUNT", "CUSTOMER_TX_1D"],
        k=5,
        min_improvement=-1.0,
    )
    assert all(s.status == "cached" for s in again.steps.values())
    # The features the store counted are untouched by labels (counts per customer).
    from loopline.features import EmbeddedFeatureStore

    online = EmbeddedFeatureStore(settings.home_dir / "features")
    from loopline.data.pii import PiiMasker

    counts = customer_counts(online, PiiMasker(POLICY, PII_KEY), range(100, 105))
    assert counts == dict.fromkeys(range(100, 105), 12)


def test_the_service_follows_a_new_champion_and_a_rollback(project: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    from loopline.registry.project import open_registry
    from loopline.stream.policy import DecisionPolicy, fraud_settings
    from loopline.stream.service import ModelWatcher, load_fast
    from loopline.train.model import as_model

    settings = load_settings(project)
    registry = open_registry(settings)
    policy = DecisionPolicy(fraud_settings(settings), fast=None)
    policy.set_fast(None, "not loaded yet")
    watcher = ModelWatcher(
        registry,
        policy,
        None,
        fast_ref="fraud-fast@champion",
        heavy_ref=None,
        interval=60,
        store=MetadataStore(settings.metadata_url or ""),  # the alias history: no MLflow call
    )
    watcher.check()  # the missing model is loaded
    assert policy.fast is not None and policy.fast.version == "1"

    amounts = np.linspace(0, 400, 200)
    newer = LogisticRegression().fit(pd.DataFrame({"TX_AMOUNT": amounts}), amounts > 100)
    info = registry.register(
        as_model(newer), name="fraud-fast", params={}, metrics={}, dataset_version=None,
        input_example=pd.DataFrame({"TX_AMOUNT": [1.0]}),
    )  # fmt: skip
    registry.promote("fraud-fast", info.version, reason="tests", actor="tests")
    watcher.check()
    assert policy.fast.version == "2"
    registry.rollback("fraud-fast", reason="tests", actor="tests")
    watcher.check()
    assert policy.fast.version == "1"
    assert load_fast(registry, "fraud-fast/2").version == "2"
