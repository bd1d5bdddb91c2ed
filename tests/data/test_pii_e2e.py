"""The fraud path's PII test, batch half: the AWS transaction sample goes in through the
door (``read_pii_table``), a model is trained, registered and served, predictions are
logged, labelled and reviewed; then every byte Loopline stored is searched for every raw
personal value of the input (names, e-mails, phones, SSN-like ids, IPs, street addresses).

The stream half (the consumer, its dead letters) calls the same check,
:func:`loopline.data.pii_stores.raw_pii_left`, after pushing the same file through a stream.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from pydantic import BaseModel, ConfigDict, Field

from _ids import letters_id
from loopline.config import Settings, load_settings
from loopline.core.metadata import MetadataStore
from loopline.data.pii import PiiMasker, load_policy
from loopline.data.pii_stores import audit_project, find_values, raw_pii_left, raw_values
from loopline.label.queue import LabelQueue

pytestmark = pytest.mark.slow

TRANSACTIONS = Path("fraud/aws_fraud_detector_samples/transaction_data_2K_coldstart.csv")
FEATURES = ["order_price", "CUSTOMER_TX", "EMAIL_TX", "NIGHT"]

PIPELINE = '''
import pandas as pd
from sklearn.linear_model import LogisticRegression

from loopline import pipeline, step
from loopline.steps import evaluate, gate, profile, read_pii_table, register, split, train


@step
def features(tx: pd.DataFrame) -> pd.DataFrame:
    """Per customer and per e-mail counts, over pseudonyms: joins still work."""
    tx = tx.dropna(subset=["EVENT_LABEL"]).copy()
    tx["TX_DATETIME"] = pd.to_datetime(tx["EVENT_TIMESTAMP"])
    tx = tx.sort_values("TX_DATETIME", kind="stable").reset_index(drop=True)
    tx["CUSTOMER_TX"] = tx.groupby("ENTITY_ID").cumcount() + 1
    tx["EMAIL_TX"] = tx.groupby("customer_email").cumcount() + 1
    tx["NIGHT"] = (tx["TX_DATETIME"].dt.hour <= 6).astype(int)
    tx["TX_FRAUD"] = tx["EVENT_LABEL"].astype(int)
    return tx


@pipeline
def fraud(source: str, model_name: str = "fraud") -> None:
    tx = features(read_pii_table(source, dataset="transactions"))
    train_df, test_df = split(tx, by="time", time="TX_DATETIME", test_size=0.3)
    model = train(train_df, model=LogisticRegression(max_iter=500),
                  features=["order_price", "CUSTOMER_TX", "EMAIL_TX", "NIGHT"], target="TX_FRAUD")
    metrics = evaluate(model, test_df)
    decision = gate(model, test_df, metrics, model_name=model_name, metric="roc_auc")
    register(model, decision, example=test_df, reference=profile(model, test_df))
'''


@pytest.fixture
def fraud_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    (project / "pii.key").write_text("1:" + "e2e-secret-" * 4 + "\n")
    (project / "loopline.yaml").write_text(
        "pipelines:\n  fraud: pipeline.py:fraud\n"
        "pii:\n  policy: aws-transactions\n  key_file: pii.key\n"
    )
    (project / "pipeline.py").write_text(PIPELINE)
    monkeypatch.delenv("LOOPLINE_PII_KEY", raising=False)
    monkeypatch.chdir(project)
    settings = load_settings(project)
    # Loopline's own log, as a deployment would keep it: everything it logs, DEBUG included.
    # Only Loopline's loggers: other libraries' DEBUG lines carry Python object ids
    # (filelock's "lock 139940217203344"), 15-digit numbers that pass the Luhn check one
    # time in ten, so the audit's card recogniser would flag the run at random.
    logs = settings.home_dir / "logs"
    logs.mkdir(parents=True)
    handler = logging.FileHandler(logs / "loopline.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger("loopline")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield settings
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def test_no_raw_personal_value_reaches_any_store_on_the_batch_path(
    fraud_project: Settings, shared_data: Path
) -> None:
    from loopline.project import resolve_pipeline
    from loopline.serve.server import ServeConfig, build_app, start_in_thread

    settings = fraud_project
    source = shared_data / TRANSACTIONS
    raw = pd.read_csv(source)
    policy = load_policy("aws-transactions")

    _, pipe = resolve_pipeline(settings, "fraud")
    result = pipe.run(settings, source=str(source))
    assert result.status == "completed"

    # Serve the champion; score transactions masked at the door, label and review some.
    masker = PiiMasker(policy, (settings.project_root / "pii.key").read_text())
    records = [masker.mask_record(r) for r in raw.head(20).to_dict("records")]
    app = build_app(ServeConfig(model="fraud@champion", project_root=str(settings.project_root)))
    answers = []
    with start_in_thread(app) as server, httpx.Client(base_url=server.url) as client:
        for i, record in enumerate(records):
            body = {"order_price": record["order_price"], "CUSTOMER_TX": float(i % 3 + 1),
                    "EMAIL_TX": 1.0, "NIGHT": 0}  # fmt: skip
            answer = client.post("/predict", json=body)
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())
        for answer in answers[:5]:
            done = client.post("/feedback", json={"request_id": answer["request_id"], "label": "1"})
            assert done.status_code == 201, done.text
    assert settings.metadata_url
    queue = LabelQueue(MetadataStore(settings.metadata_url), "review", labels=["fraud", "legit"])
    reviewed = zip(answers[5:10], records[5:10], strict=True)
    queue.add_items([{"item_id": a["request_id"], "payload": r} for a, r in reviewed])

    # Every raw personal value of the input, searched in every byte stored.
    searched = raw_values(raw, policy)
    assert {"070-69-2161", "jasonsnyder@lynch.org", "+1-021-436-2616-2085", "25.45.36.165",
            "4900 Zachary Field Apt. 377", "Patricia"} <= searched  # fmt: skip
    assert raw_pii_left(settings, raw, policy) == []

    # What there is to search: every store was written to.
    home = settings.home_dir
    assert list((home / "predictions").rglob("seg-*.parquet"))
    assert list((home / "mlruns").rglob("*"))
    assert (home / "mlflow.db").is_file() and (home / "metadata.db").is_file()
    assert (home / "logs" / "loopline.log").stat().st_size > 0
    stored = pd.read_parquet(next(iter((home / "artifacts").rglob("data.parquet"))))
    assert stored["ENTITY_ID"].str.startswith("pn1_").all()

    # And the audit agrees: no personal data anywhere, pseudonyms only.
    report = audit_project(settings)
    assert report.clean, report.findings
    assert report.pseudonyms.get("pn1", 0) > 0
    assert os.environ.get("LOOPLINE_PII_KEY") is None
    key_secret = "e2e-secret-" * 4
    assert not any(hit for hit in _grep(home, key_secret))


def _grep(root: Path, text: str) -> list[Path]:
    needle = text.encode()
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


class AwsEvent(BaseModel):
    """The AWS sample's rows as a stream carries them (any other field kept as sent)."""

    model_config = ConfigDict(extra="allow")

    EVENT_ID: str
    order_price: float = Field(ge=0)


def test_no_raw_personal_value_reaches_any_store_on_the_stream_path(
    fraud_project: Settings, shared_data: Path
) -> None:
    """The same file through a Redis stream into the consumer: decisions, prediction log,
    dead letters (one malformed, one against the schema, both full of personal data);
    then every byte stored, the streams included, is searched for every raw value."""
    import asyncio

    import numpy as np
    import redis
    from sklearn.linear_model import LogisticRegression

    from loopline.core.predlog import open_prediction_logger
    from loopline.stream import open_sink, open_source
    from loopline.stream.consumer import Consumer
    from loopline.stream.decisions import DecisionLog
    from loopline.stream.message import encode_body

    settings = fraud_project
    raw = pd.read_csv(shared_data / TRANSACTIONS)
    policy = load_policy("aws-transactions")
    stream = f"pii-e2e-{letters_id(10)}"
    url = f"redis://127.0.0.1:6379/0?stream={stream}"
    config = settings.project_root / "loopline.yaml"
    config.write_text(
        # the dead letters are Loopline's; the input stream is the producer's (raw by design)
        config.read_text()
        + f"  redis_url: redis://127.0.0.1:6379/0\n  stream_prefix: '{stream}:dead'\n"
    )
    settings = load_settings(settings.project_root)
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        rows = raw.head(300).astype(object).where(raw.head(300).notna(), None)
        records = rows.to_dict("records")
        bad = {**records[0], "EVENT_ID": "bad-1", "order_price": -1.0}
        bodies = [encode_body(r) for r in records]
        bodies += [encode_body(bad), encode_body(records[1])[:-20]]  # schema, malformed

        async def send() -> None:
            async with open_sink(url) as sink:
                await sink.send(bodies)

        asyncio.run(send())
        model = LogisticRegression().fit(
            np.array([[5.0], [50.0], [500.0], [900.0]]), np.array([0, 0, 1, 1])
        )
        masker = PiiMasker(policy, (settings.project_root / "pii.key").read_text())
        assert settings.metadata_url
        log = DecisionLog(settings.metadata_url, source=stream, model_name="aws", model_version="1")
        predictions = open_prediction_logger(settings)
        consumer = Consumer(
            open_source(url, batch_size=64),
            model=model,
            columns=["order_price"],
            decisions=log,
            masker=masker,
            schema=AwsEvent,
            id_field="EVENT_ID",
            prediction_log=predictions,
        )
        asyncio.run(consumer.run(idle_timeout=0.5))
        consumer.close()
        predictions.close()

        assert (consumer.stats.decided, consumer.stats.dead_lettered) == (300, 2)
        assert client.xlen(f"{stream}:dead") == 2
        assert list((settings.home_dir / "predictions").rglob("seg-*.parquet"))
        assert raw_pii_left(settings, raw, policy) == []
        # the dead-letter stream was searched: its reasons name the field that failed
        assert any(h.store == "streams" for h in find_values(settings, ["order_price"]))
        report = audit_project(settings)
        assert report.clean, report.findings
    finally:
        client.delete(stream, f"{stream}:dead")
        client.close()
