"""Fraud: the heavy model retrained on reviewed cases replaces the old one through the gate,
and a worse one promoted by hand is rolled back automatically on delayed-label average
precision, recorded in the alias history with the numbers.

The test follows README.md, "Fraud: monitoring and rollback runbook", step by step, with
the same commands (the `loopline` CLI, called in-process through typer's runner).

Data: the Fraud Detection Handbook's simulated transactions (April and early May 2018),
with the handbook's 14 features computed offline over all of them. The decision service
is one region's: the customers whose id is a multiple of 10 (a tenth of the traffic,
about 950 transactions a day), so the test stays fast. Each decision is written to the
prediction log as the decision service writes it (request id = transaction id, the
model's inputs plus the pseudonymised CUSTOMER_ID, label and probabilities), and the true
label (TX_FRAUD) comes back later as feedback, from a review (flagged transactions) or the
chargeback window.

Timeline (weeks start on Thursdays, as `--window 7D` cuts them):

- v1 trains on the region's reviewed cases of 2018-04-05..11; the gate scores it on the
  whole of 2018-04-12..18 (every customer, labelled), with nothing to beat: champion.
- v1 decides 2018-04-19..25; its labels arrive. Its live average precision is under the
  alert rule's floor, so `loopline watch --on-drift` retrains: v2 learns from the reviewed
  cases plus the labels that came back (the `production_labels` step), beats v1 on the
  same held-out week and becomes champion.
- v2 decides 2018-04-26..05-02; v3 (a forest trained on shuffled labels) is promoted by hand
  and decides 2018-05-03..09. When their labels are in, the report and the diagnosis show
  v3 far below v2, and `loopline watch --on-drift` rolls back to v2 automatically.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from loopline.cli import app
from loopline.config import Settings, load_settings
from loopline.core.feedback import record_feedback
from loopline.core.metadata import MetadataStore
from loopline.core.predlog import PredictionRecord, open_sink
from loopline.data.pii import PiiMasker
from loopline.features import compute_offline, handbook_features
from loopline.registry.project import open_registry
from loopline.serve.server import ServeConfig, build_app, start_in_thread
from loopline.train.model import fit_model

MODEL = "fraud-heavy"
REGION = 10  # the decision service's customers: CUSTOMER_ID % REGION == 0
KEY = "test-only-pii-key-0123456789abcdef"
FEATURES = [
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    *(f"{kind}_{days}D" for days in (1, 7, 30) for kind in ("CUSTOMER_TX", "CUSTOMER_MEAN_AMOUNT")),
    *(f"{kind}_{days}D" for days in (1, 7, 30) for kind in ("TERMINAL_TX", "TERMINAL_RISK")),
]

# The project's pipeline file, as an operator's project has it: library steps plus one own
# step that adds the reviewed cases to the labelled history.
PIPELINE = f'''
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from loopline import pipeline, step
from loopline.steps import (
    evaluate, gate, production_labels, profile, read_table, register, train,
)

FEATURES = {FEATURES!r}


@step
def reviewed_cases(history: pd.DataFrame, reviewed: pd.DataFrame) -> pd.DataFrame:
    """The labelled history plus the decided transactions whose label came back."""
    columns = [*FEATURES, "TX_FRAUD"]
    if "TX_FRAUD" not in reviewed.columns or reviewed.empty:
        return history[columns]
    reviewed = reviewed.assign(TX_FRAUD=reviewed["TX_FRAUD"].astype(int))
    return pd.concat([history[columns], reviewed[columns]], ignore_index=True)


@pipeline
def fraud_heavy(history: str = "data/reviewed.parquet", holdout: str = "data/holdout.parquet",
                model_name: str = "{MODEL}") -> None:
    labelled = reviewed_cases(read_table(history, dataset="fraud-reviewed"),
                              production_labels(model_name=model_name, target="TX_FRAUD"))
    test = read_table(holdout, dataset="fraud-holdout")
    forest = RandomForestClassifier(n_estimators=100, max_depth=10, min_samples_leaf=2,
                                    random_state=0, n_jobs=1)
    model = train(labelled, model=forest, features=FEATURES, target="TX_FRAUD")
    metrics = evaluate(model, test, k=100)
    decision = gate(model, test, metrics, model_name=model_name, metric="average_precision")
    register(model, decision, example=test, reference=profile(model, test))
'''

CONFIG = f"""
pipelines:
  {MODEL}: pipeline.py:fraud_heavy
monitoring:
  retrain: {{pipeline: {MODEL}}}
  rules:
    - {{name: ap-floor, model: {MODEL}, metric: average_precision, op: "<", threshold: 0.5,
       window: "5000", min_rows: 2000, actions: [log, retrain], cooldown_s: 86400}}
  auto_rollback:
    - {{model: {MODEL}, metric: average_precision, margin: 0.1, min_labels: 1000}}
"""


def transactions(data: Path) -> pd.DataFrame:
    """April and 2018-05-01..09 with the handbook's features (computed over every customer)."""
    folder = data / "fraud" / "fraud_handbook_simulated"
    raw = pd.concat(
        [pd.read_csv(folder / f"transactions_2018-0{m}.csv.gz") for m in (4, 5)],
        ignore_index=True,
    )
    raw["TX_DATETIME"] = pd.to_datetime(raw["TX_DATETIME"])
    raw = raw[raw["TX_DATETIME"] < "2018-05-10"].reset_index(drop=True)
    features = compute_offline(raw, handbook_features())
    return raw.merge(features, on="TRANSACTION_ID", validate="one_to_one")


def period(tx: pd.DataFrame, start: str, end: str, *, region: bool = True) -> pd.DataFrame:
    """The transactions of ``start``..``end`` (inclusive days), the region's only."""
    days = tx["TX_DATETIME"].dt.normalize()
    rows = tx[(days >= start) & (days <= end)]
    return rows[rows["CUSTOMER_ID"] % REGION == 0] if region else rows


def cli(project: Path, *args: str) -> str:
    """`loopline -C PROJECT ARGS...`; its output (the command must succeed)."""
    result = CliRunner().invoke(app, ["-C", str(project), *args])
    assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result.stdout


def cli_json(project: Path, *args: str) -> Any:
    return json.loads(cli(project, *args, "--json"))


def decide(settings: Settings, store: MetadataStore, rows: pd.DataFrame, masker: PiiMasker) -> str:
    """Decide ``rows`` with the current champion as the decision service does, writing one
    prediction-log record per transaction; returns the version that decided."""
    registry = open_registry(settings, store)
    served = registry.load(f"{MODEL}@champion")
    proba = served.predict_proba(rows)[:, served.classes.index("1")]
    version = served.info.version
    customers = [masker.pseudonym(c) for c in rows["CUSTOMER_ID"]]
    records = [
        PredictionRecord(
            request_id=str(tx_id),
            ts=ts.to_pydatetime().replace(tzinfo=None),
            model_name=MODEL,
            model_version=version,
            route="champion",
            inputs={**{f: float(row[i]) for i, f in enumerate(FEATURES)}, "CUSTOMER_ID": cid},
            label="1" if p >= 0.5 else "0",
            probabilities={"0": 1.0 - float(p), "1": float(p)},
            latency_ms=0.2,
        )
        for tx_id, ts, row, cid, p in zip(
            rows["TRANSACTION_ID"],
            rows["TX_DATETIME"],
            rows[FEATURES].to_numpy(dtype=float),
            customers,
            proba,
            strict=True,
        )
    ]
    sink = open_sink(str(settings.prediction_log_url))
    sink.write(records)
    sink.close()
    return version


def labels_arrive(store: MetadataStore, rows: pd.DataFrame, flagged: pd.Series) -> None:
    """The true labels of decided transactions, as feedback: reviewers label the flagged
    ones, the chargeback window (a fraud reported, or none within the delay) the rest."""
    for tx_id, fraud, reviewed in zip(
        rows["TRANSACTION_ID"], rows["TX_FRAUD"], flagged, strict=True
    ):
        record_feedback(
            store,
            str(tx_id),
            str(int(fraud)),
            model_name=MODEL,
            source="review" if reviewed else "chargeback",
        )


def flagged(settings: Settings, rows: pd.DataFrame) -> pd.Series:
    """Which of ``rows`` the log says were flagged (predicted fraud)."""
    from loopline.core.predlog import read_predictions

    log = read_predictions(str(settings.prediction_log_url), MODEL)
    positive = set(log.loc[log["prediction"] == "1", "request_id"])
    return rows["TRANSACTION_ID"].astype(str).isin(positive)


def served_version(url: str) -> str:
    return str(httpx.get(f"{url}/model", timeout=5).json()["version"])


def wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def fraud_project(project: Path, shared_data: Path) -> Iterator[tuple[Path, pd.DataFrame]]:
    tx = transactions(shared_data)
    (project / "data").mkdir()
    columns = ["TRANSACTION_ID", "TX_DATETIME", *FEATURES, "TX_FRAUD"]
    period(tx, "2018-04-05", "2018-04-11")[columns].to_parquet(project / "data/reviewed.parquet")
    holdout = period(tx, "2018-04-12", "2018-04-18", region=False)
    holdout[columns].to_parquet(project / "data/holdout.parquet")
    (project / "pipeline.py").write_text(PIPELINE, encoding="utf-8")
    (project / "loopline.yaml").write_text(CONFIG, encoding="utf-8")
    yield project, tx


@pytest.mark.slow
def test_fraud_heavy_gate_then_automatic_rollback_on_delayed_average_precision(
    fraud_project: tuple[Path, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    project, tx = fraud_project
    monkeypatch.chdir(project)  # `loopline watch` works from the project folder
    settings = load_settings(project)
    store = MetadataStore(settings.metadata_url or "")
    masker = PiiMasker({"columns": {"CUSTOMER_ID": "identifier"}, "unknown": "keep"}, KEY)

    # v1: trained on a week of reviewed cases, gated on average precision: champion.
    first = cli(project, "run", MODEL)
    assert f"model {MODEL} version 1 registered · gate passed · now champion" in first

    server = start_in_thread(
        build_app(
            ServeConfig(
                model=f"{MODEL}@champion",
                project_root=str(project),
                options={"poll_interval_s": 0.2},
            )
        )
    )
    try:
        assert served_version(server.url) == "1"
        # v1 decides a week; the labels of its decisions arrive later.
        week1 = period(tx, "2018-04-19", "2018-04-25")
        assert decide(settings, store, week1, masker) == "1"
        labels_arrive(store, week1, flagged(settings, week1))

        # Its live average precision is under the floor: the rule retrains, and the
        # fresh model, trained on the reviewed cases that came back, passes the gate.
        events = cli_json(project, "watch", "--on-drift", "--once")
        alert = next(e for e in events if e.get("rule") == "ap-floor")
        retrained = next(a for a in alert["actions"] if a["action"] == "retrain")
        assert retrained["status"] == "done", retrained
        assert (retrained["version"], retrained["promoted"]) == ("2", True)
        wait_for(lambda: served_version(server.url) == "2", "the server to follow v2")

        week2 = period(tx, "2018-04-26", "2018-05-02")
        assert decide(settings, store, week2, masker) == "2"

        # v3, a forest trained on shuffled labels, is promoted by hand.
        history = pd.read_parquet(project / "data/reviewed.parquet")
        shuffled = history.assign(
            TX_FRAUD=history["TX_FRAUD"].sample(frac=1, random_state=1).to_numpy()
        )
        from sklearn.ensemble import RandomForestClassifier

        bad = open_registry(settings, store).register(
            fit_model(
                shuffled,
                RandomForestClassifier(n_estimators=20, max_depth=10, random_state=0, n_jobs=1),
                features=FEATURES,
                target="TX_FRAUD",
            ),
            name=MODEL,
            params={},
            metrics={},
            dataset_version="shuffled",
            input_example=shuffled[FEATURES].head(2),
        )
        assert bad.version == "3"
        cli(project, "models", "promote", MODEL, "3", "--reason", "manual: try v3")
        wait_for(lambda: served_version(server.url) == "3", "the server to follow v3")
        week3 = period(tx, "2018-05-03", "2018-05-09")
        assert decide(settings, store, week3, masker) == "3"
        labels_arrive(store, week2, flagged(settings, week2))
        labels_arrive(store, week3, flagged(settings, week3))

        # Runbook 1: the report, per week and version, as the labels arrived.
        report = cli_json(
            project, "monitor", "report", MODEL, "--window", "7D",
            "--metric", "average_precision", "--metric", "cp_at_100",
            "--group", "TX_AMOUNT", "--bands", "20,50,100,220",
        )  # fmt: skip
        perf = report["performance"]
        assert perf["metrics"] == ["average_precision", "cp_at_100"]
        assert perf["card_column"] == "CUSTOMER_ID"
        by_version = perf["by_version"]
        assert {v: by_version[v]["label_coverage"] for v in ("1", "2", "3")} == {
            "1": 1.0,
            "2": 1.0,
            "3": 1.0,
        }
        ap = {v: by_version[v]["average_precision"] for v in ("1", "2", "3")}
        assert ap["3"] < ap["2"] - 0.1, ap
        assert report["fairness"]["group_column"] == "TX_AMOUNT band"

        # Runbook 2: the diagnosis recommends rolling back to v2.
        diagnosis = cli_json(
            project, "monitor", "diagnose", MODEL, "--window", "7D",
            "--metric", "average_precision",
        )  # fmt: skip
        assert diagnosis["recommendation"] == "rollback", diagnosis["summary"]
        assert "version 3 is worse than version 2" in diagnosis["summary"]

        # The watcher's automatic rollback does it first (runbook 3 finds it done).
        events = cli_json(project, "watch", "--on-drift", "--once")
        rolled = next(e for e in events if e.get("trigger") == "auto_rollback")
        assert (rolled["rolled_back_from"], rolled["champion"]) == ("3", "2")
        assert rolled["value"] < rolled["previous_value"] - 0.1
        # Runbook 4: the server followed.
        wait_for(lambda: served_version(server.url) == "2", "the server to follow the rollback")

        # Runbook 3: the alias history, with the reason of each move.
        moves = [
            (e["version"], e["actor"], e["reason"])
            for e in cli_json(project, "models", "history", MODEL)
            if e["alias"] == "champion"
        ]
        assert [v for v, _, _ in moves] == ["1", "2", "3", "2"]
        assert moves[0][2].startswith("gate passed")
        assert moves[1][2].startswith("gate passed")
        assert moves[2][1:] == ("cli", "manual: try v3")
        assert moves[3][1] == "loopline monitor"
        assert moves[3][2].startswith(
            f"automatic rollback: live average_precision of v3 is {rolled['value']:.3f}, "
            f"below v2's {rolled['previous_value']:.3f} by more than 0.1"
        )

        # Runbook 5 and 6: re-promote by hand, roll back by hand; the server follows both.
        cli(project, "models", "promote", MODEL, "3", "--reason", "runbook drill: re-promote")
        wait_for(lambda: served_version(server.url) == "3", "the server to follow v3 again")
        cli(project, "models", "rollback", MODEL, "--reason", "runbook drill: roll back")
        wait_for(lambda: served_version(server.url) == "2", "the server to follow v2 again")
    finally:
        server.stop()
    final = [e["version"] for e in store.alias_history(MODEL) if e["alias"] == "champion"]
    assert final == ["1", "2", "3", "2", "3", "2"]
    kinds = {(a["rule"], a["action"], a["status"]) for a in store.alerts(MODEL)}
    assert ("ap-floor", "retrain", "done") in kinds
    assert ("auto_rollback", "rollback", "done") in kinds
    assert np.isfinite(ap["1"]) and ap["2"] > 0.3


def test_fraud_metrics_in_rules_and_rollback_config(project: Path) -> None:
    from loopline.errors import ConfigError
    from loopline.orchestrate.rules import load_monitoring

    config = load_monitoring(
        load_settings(
            project,
            monitoring={
                "rules": [
                    {"name": "ap", "model": MODEL, "metric": "average_precision", "threshold": 0.5},
                    {"name": "cp", "model": MODEL, "metric": "cp_at_100", "threshold": 0.2,
                     "card": "CUSTOMER_ID"},
                    {"name": "auc", "model": MODEL, "metric": "roc_auc", "threshold": 0.8},
                    {"name": "drift", "model": MODEL, "metric": "drift_share", "op": ">",
                     "threshold": 0.3},
                ],
                "auto_rollback": [{"model": MODEL, "metric": "average_precision", "margin": 0.1,
                                   "min_labels": 1000}],
            },
        )
    )  # fmt: skip
    assert [r.metric for r in config.rules] == [
        "average_precision",
        "cp_at_100",
        "roc_auc",
        "drift_share",
    ]
    assert config.rules[1].card == "CUSTOMER_ID"
    assert config.auto_rollback[0].metric == "average_precision"
    for section in (
        {"rules": [{"name": "x", "model": MODEL, "metric": "ap", "threshold": 0.5}]},
        {"auto_rollback": [{"model": MODEL, "metric": "drift_share"}]},
    ):
        with pytest.raises(ConfigError, match=r"(rules|auto_rollback)\.0\.metric.*cp_at_K"):
            load_monitoring(load_settings(project, monitoring=section))
