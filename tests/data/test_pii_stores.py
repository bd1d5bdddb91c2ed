"""`pii audit` and `pii forget` as functions: personal data planted in each kind of store is
found; a clean project reports nothing; one subject is erased from every store."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest

from _ids import letters_id
from loopline.config import Settings, load_settings
from loopline.core.artifacts import ArtifactStore
from loopline.core.feedback import read_feedback, record_feedback
from loopline.core.metadata import MetadataStore
from loopline.core.predlog import PredictionLogger, PredictionRecord, read_predictions
from loopline.data.pii import PiiKeyRing, PiiMasker
from loopline.data.pii_stores import audit_project, find_values, forget_subject
from loopline.label.queue import LabelQueue

KEY = "1:" + "k" * 32
RAW_EMAIL = "jasonsnyder@lynch.org"
RAW_PHONE = "(555)355 - 1785"


@pytest.fixture
def settings(project: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("LOOPLINE_PII_KEY", KEY)
    (project / "loopline.yaml").write_text("pii:\n  policy: aws-transactions\n  engine: regex\n")
    return load_settings(project)


@pytest.fixture
def masker() -> PiiMasker:
    return PiiMasker("aws-transactions", KEY)


def _log(settings: Settings, inputs: list[dict[str, Any]]) -> list[str]:
    assert settings.prediction_log_url
    ids = [letters_id() for _ in inputs]
    with PredictionLogger(settings.prediction_log_url) as logger:
        for request_id, row in zip(ids, inputs, strict=True):
            logger.log(
                PredictionRecord(
                    request_id,
                    datetime.now(UTC),
                    "fraud",
                    "1",
                    "champion",
                    row,
                    "legit",
                    {"legit": 0.9, "fraud": 0.1},
                    1.0,
                )
            )
    return ids


def _store(settings: Settings) -> MetadataStore:
    assert settings.metadata_url
    return MetadataStore(settings.metadata_url)


def _clean_project(settings: Settings, masker: PiiMasker) -> None:
    """Every store holds masked data only: pseudonyms, masked phones, hashes."""
    rows = [
        masker.mask_record(
            {
                "ENTITY_ID": f"070-69-{2160 + i}",
                "customer_email": f"c{i}@example.org",
                "billing_phone": RAW_PHONE,
                "order_price": 7.5 + i,
                "customer_name": "Dennis",
            }
        )
        for i in range(3)
    ]
    request_ids = _log(settings, rows)
    store = _store(settings)
    record_feedback(store, request_ids[0], "fraud")
    queue = LabelQueue(store, "review", labels=["fraud", "legit"])
    queue.add_items([{"item_id": request_ids[1], "payload": rows[1]}])
    assert settings.artifact_root
    ArtifactStore(settings.artifact_root).save(pd.DataFrame(rows))
    logs = settings.home_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "serve.log").write_text(f"2026-11-30 12:00:00 served request {request_ids[0]}\n")


def test_a_clean_project_reports_nothing(settings: Settings, masker: PiiMasker) -> None:
    _clean_project(settings, masker)

    report = audit_project(settings)

    assert report.clean, report.findings
    assert {"metadata", "artifacts", "predictions", "files"} <= set(report.scanned)
    assert report.pseudonyms["pn1"] >= 6  # the identifiers, where they were found
    assert {s["store"] for s in report.skipped} >= {"streams"}


def test_an_empty_project_is_clean_and_audit_creates_nothing(settings: Settings) -> None:
    report = audit_project(settings)

    assert report.clean
    assert not settings.home_dir.exists()


def _kinds(report: Any, store: str) -> set[str]:
    return {f.kind for f in report.findings if f.store == store}


def test_audit_finds_personal_data_planted_in_each_kind_of_store(
    settings: Settings, masker: PiiMasker
) -> None:
    _clean_project(settings, masker)
    # metadata: a review-queue item whose text quotes an e-mail address
    queue = LabelQueue(_store(settings), "review")
    queue.add_items([{"item_id": "t9", "text": f"customer wrote from {RAW_EMAIL}"}])
    # an artifact: a table whose phone column was never masked
    assert settings.artifact_root
    ArtifactStore(settings.artifact_root).save(pd.DataFrame({"billing_phone": [RAW_PHONE]}))
    # the prediction log: a raw e-mail as a model input
    _log(settings, [{"customer_email": RAW_EMAIL, "order_price": 3.0}])
    # the MLflow store: its database and a run's input example
    home = settings.home_dir
    with sqlite3.connect(home / "mlflow.db") as db:
        db.execute("CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT)")
        db.execute("INSERT INTO params VALUES ('contact', '25.45.36.165', 'r1')")
    example = home / "mlruns" / "1" / "r1" / "artifacts" / "model" / "input_example.json"
    example.parent.mkdir(parents=True)
    example.write_text('{"columns": ["ENTITY_ID"], "data": [["070-69-2161"]]}')
    # a log file
    (home / "logs" / "consumer.log").write_text("refused 4900 Zachary Field Apt. 377\n")

    report = audit_project(settings)

    assert not report.clean
    assert "EMAIL_ADDRESS" in _kinds(report, "metadata")
    assert "phone column billing_phone not masked" in _kinds(report, "artifacts")
    assert "PHONE_NUMBER" in _kinds(report, "artifacts")
    assert {"EMAIL_ADDRESS", "email column customer_email not pseudonymised"} <= _kinds(
        report, "predictions"
    )
    assert {"IP_ADDRESS", "US_SSN", "ssn column ENTITY_ID not pseudonymised"} <= _kinds(
        report, "mlflow"
    )
    assert _kinds(report, "files") == {"STREET_ADDRESS"}
    where = {(f.store, f.location) for f in report.findings}
    assert ("metadata", "label_tasks.text") in where
    assert ("files", "logs/consumer.log") in where
    assert ("mlflow", "mlflow.db: params.value") in where
    # Examples are masked too: the report itself must not leak.
    for finding in report.findings:
        for raw in (RAW_EMAIL, RAW_PHONE, "25.45.36.165", "070-69-2161", "Zachary"):
            assert raw not in finding.example


def test_forget_removes_a_subject_from_every_store(settings: Settings, masker: PiiMasker) -> None:
    subject, other = "jason@lynch.org", "mary80@hotmail.com"
    rows = [
        masker.mask_record({"customer_email": e, "billing_phone": RAW_PHONE, "order_price": p})
        for e, p in ((subject, 1.0), (other, 2.0), (subject, 3.0))
    ]
    request_ids = _log(settings, rows)
    store = _store(settings)
    for request_id in request_ids:
        record_feedback(store, request_id, "fraud")
    queue = LabelQueue(store, "review", labels=["fraud", "legit"])
    queue.add_items(
        [{"item_id": rid, "payload": row} for rid, row in zip(request_ids, rows, strict=True)]
    )
    tasks = queue.tasks()
    queue.submit(int(tasks.loc[tasks["item_id"] == request_ids[0], "id"].iloc[0]), "ana", "fraud")
    assert settings.artifact_root
    artifacts = ArtifactStore(settings.artifact_root)
    saved = artifacts.save(pd.DataFrame(rows))
    other_pseudonym = masker.pseudonym(other)

    dry = forget_subject(settings, subject.upper(), dry_run=True)
    assert dry.total_removed == 2 + 2 + 2 + 1 + 2  # log, feedback, tasks, annotation, artifact
    assert len(read_predictions(settings.prediction_log_url or "")) == 3

    report = forget_subject(settings, subject.upper())

    removed = {(r["store"], r["location"]): r["rows"] for r in report.removed}
    assert removed[("metadata", "feedback")] == 2
    assert removed[("metadata", "label_tasks (review queue)")] == 2
    assert removed[("metadata", "label_annotations")] == 1
    assert removed[("artifacts", f"artifact {saved.hash}")] == 2
    assert sum(r for (s, _), r in removed.items() if s == "predictions") == 2
    left = read_predictions(settings.prediction_log_url or "")
    assert left["input.customer_email"].tolist() == [other_pseudonym]
    assert read_feedback(store)["request_id"].tolist() == [request_ids[1]]
    assert queue.tasks()["item_id"].tolist() == [request_ids[1]]
    table = artifacts.load(saved.hash)
    assert table["customer_email"].tolist() == [other_pseudonym]
    assert artifacts.meta(saved.hash)["erasures"][0]["rows_removed"] == 2
    assert report.remaining == []
    assert report.pseudonyms == [masker.pseudonym(subject)]
    assert subject not in orjson.dumps(report.to_dict()).decode()
    # Nothing is left to find, not even in the database files' free pages.
    assert find_values(settings, report.pseudonyms) == []


def test_forget_after_a_key_rotation_finds_the_old_pseudonyms(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = PiiMasker("aws-transactions", KEY)
    _log(settings, [old.mask_record({"customer_email": "jason@lynch.org", "order_price": 1.0})])
    monkeypatch.setenv("LOOPLINE_PII_KEY", f"2:{'n' * 32},{KEY}")

    report = forget_subject(settings, "jason@lynch.org")

    assert report.pseudonyms[1] == old.pseudonym("jason@lynch.org")
    assert report.pseudonyms[0].startswith("pn2_")
    assert report.total_removed == 1
    assert read_predictions(settings.prediction_log_url or "").empty


def test_forget_by_pseudonym_needs_no_key(settings: Settings, masker: PiiMasker) -> None:
    _log(settings, [masker.mask_record({"customer_email": "a@b.org", "order_price": 1.0})])
    pseudonym = masker.pseudonym("a@b.org")
    assert pseudonym

    report = forget_subject(settings, pseudonym, keys=PiiKeyRing.from_text("9:" + "x" * 20, "t"))

    assert report.total_removed == 1


# -- Redis streams (the dead letters) --------------------------------------------------------


@pytest.fixture
def redis_prefix(settings: Settings) -> Iterator[tuple[Any, str]]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis server on 127.0.0.1:6379")
    prefix = f"pii-test-{letters_id(8)}:"
    yield client, prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


def test_dead_letters_are_audited_and_forgotten(
    project: Path, masker: PiiMasker, redis_prefix: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, prefix = redis_prefix
    monkeypatch.setenv("LOOPLINE_PII_KEY", KEY)
    (project / "loopline.yaml").write_text(
        "pii:\n  policy: aws-transactions\n  engine: regex\n"
        f"  redis_url: redis://127.0.0.1:6379/0\n  stream_prefix: '{prefix}'\n"
    )
    settings = load_settings(project)
    masked = masker.mask_record({"customer_email": "jason@lynch.org", "order_price": 1.0})
    dead = f"{prefix}tx:dead"
    client.xadd(dead, {"reason": "bad amount", "record": orjson.dumps({"payload": masked})})
    client.xadd(dead, {"reason": "bad amount", "record": orjson.dumps({"payload": {"x": 1}})})

    assert audit_project(settings, stores=["streams"]).clean
    client.xadd(dead, {"reason": f"malformed: {RAW_EMAIL}", "record": b"{}"})
    found = audit_project(settings, stores=["streams"])
    assert [(f.store, f.location, f.kind) for f in found.findings] == [
        ("streams", f"{dead}: field reason", "EMAIL_ADDRESS")
    ]

    report = forget_subject(settings, "jason@lynch.org")

    assert {(r["store"], r["location"]): r["rows"] for r in report.removed} == {
        ("streams", dead): 1
    }
    assert client.xlen(dead) == 2


@pytest.mark.postgres
def test_audit_and_forget_on_postgresql(
    project: Path, postgres_url: str, masker: PiiMasker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_PII_KEY", KEY)
    (project / "loopline.yaml").write_text(
        f"metadata_url: {postgres_url}\nprediction_log_url: {postgres_url}\n"
        "pii:\n  policy: aws-transactions\n  engine: regex\n"
    )
    settings = load_settings(project)
    rows = [
        masker.mask_record({"customer_email": e, "order_price": 1.0})
        for e in ("jason@lynch.org", "mary80@hotmail.com")
    ]
    request_ids = _log(settings, rows)
    store = _store(settings)
    record_feedback(store, request_ids[0], "fraud")
    LabelQueue(store, "review").add_items([{"item_id": "t1", "payload": rows[0]}])

    assert audit_project(settings).clean
    _log(settings, [{"customer_email": RAW_EMAIL}])
    found = {(f.store, f.location, f.kind) for f in audit_project(settings).findings}
    assert ("predictions", "predictions.inputs (JSON customer_email)", "EMAIL_ADDRESS") in found
    assert not {f for f in found if f[0] == "metadata"}  # the shared table is counted once

    report = forget_subject(settings, "jason@lynch.org")

    removed = {(r["store"], r["location"]): r["rows"] for r in report.removed}
    assert removed == {
        ("predictions", "predictions"): 1,
        ("metadata", "feedback"): 1,
        ("metadata", "label_tasks (review queue)"): 1,
    }
    assert settings.prediction_log_url
    left = read_predictions(settings.prediction_log_url)
    assert len(left) == 2 and masker.pseudonym("jason@lynch.org") not in set(
        left["input.customer_email"]
    )
