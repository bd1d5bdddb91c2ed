"""The decision policy and the decision service around it: thresholds to actions, the
fallbacks (feature store down, a model unavailable), heavy scores, the review queue's
payloads and order, the prediction log's records, durability modes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from _support import Flaky, MemorySource, messages, transactions

from loopline.core.metadata import MetadataStore
from loopline.errors import ConfigError
from loopline.stream.consumer import Consumer
from loopline.stream.decisions import Decision, DecisionLog, ReviewItem
from loopline.stream.heavy import HeavyScores
from loopline.stream.policy import DecisionPolicy, FastModel, fraud_settings
from loopline.stream.reviews import open_review_queue

THRESHOLDS = {"review": 0.5, "block": 0.9}


def proba(model: Any, amounts: list[float]) -> list[float]:
    return list(model.predict_proba(pd.DataFrame({"TX_AMOUNT": amounts}))[:, 1])


def expected_action(p: float) -> str:
    return "block" if p >= 0.9 else "review" if p >= 0.5 else "allow"


def policy_of(model: Any, heavy: Any = None, **config: Any) -> DecisionPolicy:
    settings = fraud_settings({"heavy_model": None, "thresholds": THRESHOLDS, **config})
    fast = FastModel.of(model, "fraud-fast", "3") if model is not None else None
    return DecisionPolicy(settings, fast=fast, heavy=heavy)


def service(
    tmp_path: Path,
    model: Any,
    *,
    features: Any = None,
    masker: Any = None,
    heavy: Any = None,
    prediction_log: Any = None,
    **config: Any,
) -> Consumer:
    """A consumer as the decision service assembles it, on a memory source."""
    store = MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}")
    policy = policy_of(model, heavy, **config)
    open_review_queue(store, "fraud-review")
    log = DecisionLog(store, source="memory", review_queue="fraud-review", code_version="c0de")
    return Consumer(
        MemorySource(),  # type: ignore[arg-type]
        policy=policy,
        decisions=log,
        features=features,
        masker=masker,
        prediction_log=prediction_log,
    )


def decide(consumer: Consumer, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    asyncio.run(consumer.process(messages(records)))
    return {r["tx_id"]: r for r in consumer.decisions.rows()}


# -- the policy -------------------------------------------------------------------------------
def test_thresholds_turn_scores_into_actions_with_the_reason_and_expected_loss(
    soft_model: Any,
) -> None:
    amounts = [10.0, 150.0, 199.0, 220.0, 265.0, 300.0, 330.0]
    rows = [{"TX_AMOUNT": a} for a in amounts]
    verdicts = policy_of(soft_model).decide(rows, rows, [False] * len(rows))

    scores = proba(soft_model, amounts)
    assert [v.action for v in verdicts] == [expected_action(p) for p in scores]
    assert {v.action for v in verdicts} == {"allow", "review", "block"}
    for verdict, p, amount in zip(verdicts, scores, amounts, strict=True):
        assert verdict.fast_score == pytest.approx(p) and verdict.score == pytest.approx(p)
        assert verdict.priority == pytest.approx(p * amount)  # expected loss
        assert verdict.fallback == ()
        bound = {"block": ">= block 0.9", "review": ">= review 0.5", "allow": "< review 0.5"}
        assert verdict.reason == f"fast score {p:.3f} {bound[verdict.action]}"


def test_a_fast_model_that_is_unavailable_leaves_the_amount_rule_flagged(
    soft_model: Any,
) -> None:
    policy = policy_of(None, fallback={"review_amount": 150, "block_amount": 300})
    policy.set_fast(None, "model 'fraud-fast' is not registered")
    rows = [{"TX_AMOUNT": a} for a in (20.0, 150.0, 310.0)]
    verdicts = policy.decide(rows, rows, [False] * 3)

    assert [v.action for v in verdicts] == ["allow", "review", "block"]
    assert all(v.fallback == ("fast_unavailable",) and v.fast_score is None for v in verdicts)
    assert verdicts[1].reason == (
        "amount 150.00 >= 150.0 (rule): fast model fraud-fast unavailable "
        "(model 'fraud-fast' is not registered)"
    )
    assert verdicts[1].priority == pytest.approx(0.5 * 150)  # rule: p = the review threshold


def test_the_fraud_section_is_validated_with_the_field_named() -> None:
    with pytest.raises(ConfigError, match=r"fraud\.thresholds: Value error, block \(0.3\)"):
        fraud_settings({"thresholds": {"review": 0.5, "block": 0.3}})
    with pytest.raises(ConfigError, match=r"fraud\.fallback\.features_down: Input should be"):
        fraud_settings({"fallback": {"features_down": "ignore"}})
    with pytest.raises(ConfigError, match=r"fraud\.colour: Extra inputs are not permitted"):
        fraud_settings({"colour": "red"})


# -- fallbacks in the service ------------------------------------------------------------------
def test_feature_store_down_decisions_continue_on_the_fallback_flagged_then_catch_up(
    tmp_path: Path, feature_model: Any, masker: Any
) -> None:
    from _support import customer_counts

    from loopline.features import EmbeddedFeatureStore

    store = EmbeddedFeatureStore(tmp_path / "features")
    flaky = Flaky(store)
    consumer = service(
        tmp_path,
        feature_model,
        features=flaky,
        masker=masker,
        fallback={"review_amount": 150, "retry_s": 0.001},
    )

    flaky.down = True
    first = transactions(20)
    rows = decide(consumer, first)
    assert sorted(rows, key=int) == [str(i) for i in range(20)]  # every one decided
    assert consumer.source.acked == [str(i) for i in range(20)]  # type: ignore[attr-defined]
    for tx in first:
        row = rows[str(tx["TRANSACTION_ID"])]
        assert row["fallback"] == "degraded_features"
        assert row["fast_score"] is None and row["model_version"] == "3"
        assert row["action"] == ("review" if tx["TX_AMOUNT"] >= 150 else "allow")
        assert (
            "(rule): feature store unavailable and the fast model needs its features"
            in (row["reason"])
        )
    assert consumer.stats.fallbacks == {"degraded_features": 20}

    flaky.down = False  # the store is back
    rows = decide(consumer, transactions(20, start=20))
    assert all(rows[str(i)]["fallback"] is None for i in range(20, 40))
    assert all(rows[str(i)]["fast_score"] is not None for i in range(20, 40))
    assert consumer.stats.features_backfilled == 20
    # The 20 decided without the store were added to it first: every one is counted.
    assert customer_counts(store, masker, range(100, 105)) == dict.fromkeys(range(100, 105), 8)


def test_a_model_reading_only_the_message_still_scores_when_the_store_is_down(
    tmp_path: Path, soft_model: Any, masker: Any
) -> None:
    from loopline.features import EmbeddedFeatureStore

    flaky = Flaky(EmbeddedFeatureStore(tmp_path / "features"))
    flaky.down = True
    consumer = service(tmp_path, soft_model, features=flaky, masker=masker)
    rows = decide(consumer, transactions(10))
    scores = proba(soft_model, [t["TX_AMOUNT"] for t in transactions(10)])
    for i, p in enumerate(scores):
        assert rows[str(i)]["fast_score"] == pytest.approx(p)
        assert rows[str(i)]["fallback"] == "degraded_features"
        assert rows[str(i)]["reason"].endswith(
            "feature store unavailable: scored on the message's own fields"
        )


def test_heavy_model_unavailable_decides_on_the_fast_model_alone_flagged(
    tmp_path: Path, soft_model: Any
) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'h.db'}", source="x")
    heavy = HeavyScores(log.engine, name="fraud-heavy", version=None)  # not registered
    consumer = service(tmp_path, soft_model, heavy=heavy)
    rows = decide(consumer, transactions(40))
    scores = proba(soft_model, [t["TX_AMOUNT"] for t in transactions(40)])
    for i, p in enumerate(scores):
        row = rows[str(i)]
        assert row["action"] == expected_action(p)  # the fast model alone
        assert row["fallback"] == "heavy_unavailable"
        assert (row["heavy_model"], row["heavy_version"]) == ("fraud-heavy", "unavailable")
        assert row["reason"].endswith("; heavy model unavailable: fast only")


def test_the_heavy_models_latest_score_for_a_customer_escalates_the_next_transaction(
    tmp_path: Path, soft_model: Any, masker: Any
) -> None:
    consumer = service(tmp_path, soft_model, masker=masker)
    decide(consumer, transactions(5))  # customers 100..104, small amounts: allowed
    log = consumer.decisions
    with log.engine.begin() as conn:  # what `loopline stream rescore` writes back
        conn.exec_driver_sql(
            "UPDATE decisions SET batch_score = CASE tx_id WHEN '1' THEN 0.97 ELSE 0.1 END, "
            "batch_version = '2', batch_scored_at = '2026-01-01 00:00:00'"
        )
    heavy = HeavyScores(log.engine, name="fraud-heavy", version="2", stale_s=None)
    consumer.policy.heavy = heavy

    later = transactions(10, start=5)  # each customer again, one small amount each
    rows = decide(consumer, later)
    small = [tx for tx in later if tx["TX_AMOUNT"] < 150]
    for tx in small:
        row = rows[str(tx["TRANSACTION_ID"])]
        if tx["CUSTOMER_ID"] == 101:  # transaction 1's customer: its heavy score was 0.97
            assert row["action"] == "block" and row["heavy_score"] == 0.97
            assert row["reason"].startswith("heavy score 0.970 (customer's latest) >= block 0.9")
            assert row["heavy_version"] == "2"
        else:
            assert row["action"] == "allow" and row["heavy_score"] is None
            assert row["fallback"] is None


# -- the review queue and the prediction log ---------------------------------------------------
def test_review_items_hold_no_raw_personal_data_and_come_by_expected_loss(
    tmp_path: Path, soft_model: Any, masker: Any
) -> None:
    from loopline.core.predlog import PredictionLogger, read_predictions
    from loopline.label.queue import LabelQueue

    predictions = PredictionLogger(str(tmp_path / "predictions"))
    predictions.start()
    consumer = service(tmp_path, soft_model, masker=masker, prediction_log=predictions)
    records = transactions(40)
    rows = decide(consumer, records)
    consumer.close()

    queue = LabelQueue(MetadataStore(f"sqlite:///{tmp_path / 'metadata.db'}"), "fraud-review")
    tasks = queue.tasks()
    reviewed = {k for k, r in rows.items() if r["action"] == "review"}
    assert set(tasks["item_id"]) == reviewed and len(reviewed) >= 5
    with queue.store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT payload FROM label_tasks").all()
    everything = " ".join(str(p) for (p,) in stored)
    assert "@example.com" not in everything and "[EMAIL]" in everything
    for customer in range(100, 105):
        assert f'"CUSTOMER_ID":{customer}' not in everything.replace(" ", "")
    payload = tasks["payload"].iloc[0]
    assert payload["features"]["CUSTOMER_ID"].startswith("pn1_")
    assert set(payload) >= {"fast_score", "heavy_score", "score", "reason", "expected_loss"}
    # Priority = expected loss = p(fraud) x amount; the analyst gets the largest first.
    amounts = {str(r["TRANSACTION_ID"]): r["TX_AMOUNT"] for r in records}
    for item, priority in zip(tasks["item_id"], tasks["priority"], strict=True):
        assert priority == pytest.approx(rows[item]["score"] * amounts[item])
    order = []
    while (task := queue.next_task("ana", exclude=[t.id for t in order])) is not None:
        order.append(task)
    assert [t.item_id for t in order] == list(
        tasks.sort_values("priority", ascending=False)["item_id"]
    )

    # Monitoring's copy: one record per decision, the fast model's shape.
    logged = read_predictions(str(tmp_path / "predictions"), "fraud-fast")
    assert sorted(logged["request_id"], key=int) == [str(i) for i in range(40)]
    first = logged.set_index("request_id").loc["7"]
    p = proba(soft_model, [amounts["7"]])[0]
    assert first["model_version"] == "3" and first["input.TX_AMOUNT"] == amounts["7"]
    assert first["proba.1"] == pytest.approx(p) and first["proba.0"] == pytest.approx(1 - p)
    assert first["prediction"] == ("1" if p >= 0.5 else "0")
    assert first["ts"] == pd.Timestamp("2018-04-01 00:00:07", tz="UTC")  # the event time


def test_each_durability_mode_writes_the_same_decisions_and_reviews(tmp_path: Path) -> None:
    written = {}
    for commit, synchronous in [("batch", "NORMAL"), ("each", "FULL")]:
        store = MetadataStore(f"sqlite:///{tmp_path / f'{commit}.db'}")
        open_review_queue(store, "q")
        log = DecisionLog(
            store, source="x", review_queue="q", commit=commit, synchronous=synchronous
        )
        item = ReviewItem(priority=5.0, payload={"reason": "r"})
        log.write([Decision(str(i), 0.1 * i, i > 5, review=item if i > 5 else None,
                            action="review" if i > 5 else "allow") for i in range(10)])  # fmt: skip
        rows = [(r["tx_id"], r["action"]) for r in log.rows()]
        with log.engine.connect() as conn:
            pragma = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            tasks = conn.exec_driver_sql("SELECT count(*) FROM label_tasks").scalar()
        written[commit] = (rows, tasks)
        assert pragma == (1 if synchronous == "NORMAL" else 2)
        log.close()
    assert written["batch"] == written["each"]
    assert written["batch"][1] == 4


def test_review_payloads_are_json_objects_of_plain_values(
    tmp_path: Path, soft_model: Any, masker: Any
) -> None:
    consumer = service(tmp_path, soft_model, masker=masker)
    decide(consumer, transactions(40))
    with consumer.decisions.engine.connect() as conn:
        tasks = conn.exec_driver_sql("SELECT payload FROM label_tasks").all()
        rows = conn.exec_driver_sql("SELECT features FROM decisions").all()
    payloads = [orjson.loads(p) for (p,) in tasks]
    features = [orjson.loads(f) for (f,) in rows]
    assert payloads and all(isinstance(p["features"]["TX_DATETIME"], str) for p in payloads)
    assert all(f["CUSTOMER_ID"].startswith("pn1_") and f["email"] == "[EMAIL]" for f in features)
