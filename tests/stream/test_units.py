"""Pieces of the stream package on their own: the schema's reasons, the scorer's lean path,
URLs, and the message format."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from loopline.stream import StreamError, open_sink, open_source
from loopline.stream.message import Message, decode_body
from loopline.stream.schema import Transaction, check
from loopline.stream.scoring import Scorer


def test_schema_reasons_name_fields_and_rules_never_the_values() -> None:
    record, reason = check(
        Transaction,
        {
            "TRANSACTION_ID": 1,
            "TX_DATETIME": "yesterday",
            "CUSTOMER_ID": "",
            "TERMINAL_ID": 3,
            "TX_AMOUNT": "4111111111111111x",
        },
    )
    assert record is None and reason is not None
    assert reason.startswith("schema violation: TX_DATETIME: Input should be a valid datetime")
    assert "CUSTOMER_ID: Value error, must not be empty" in reason
    assert "4111111111111111" not in reason and "yesterday" not in reason


def test_schema_parses_flat_string_fields_and_keeps_extra_ones() -> None:
    record, reason = check(
        Transaction,
        {
            "TRANSACTION_ID": "7",
            "TX_DATETIME": "2018-04-01 00:00:31",
            "CUSTOMER_ID": "12",
            "TERMINAL_ID": "3",
            "TX_AMOUNT": "57.16",
            "email": "a@b.c",
        },
    )
    assert reason is None and record is not None
    assert record["TX_AMOUNT"] == 57.16 and record["email"] == "a@b.c"
    assert record["TX_DATETIME"].isoformat() == "2018-04-01T00:00:31"


def test_bodies_that_are_not_json_objects_carry_their_reason() -> None:
    assert decode_body(b"[1, 2]")[1] == "the body is JSON but not an object (found list)"
    assert decode_body(b"{oops")[1].startswith("malformed JSON:")
    assert decode_body(None)[1] == "empty message: no body"
    assert Message("1", {}, headers={"produced_at": "nan"}).produced_at is None


def _frame(n: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"a": rng.normal(5, 3, n), "b": rng.uniform(0, 100, n)})
    return frame, (frame["a"] + frame["b"] / 20 > 7).astype(int).to_numpy()


@pytest.mark.parametrize("kind", ["pipeline", "plain", "loopline-model"])
def test_the_lean_path_gives_the_models_own_probabilities(kind: str) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from loopline.train.model import as_model

    frame, y = _frame()
    model: Any
    if kind == "plain":
        model = LogisticRegression().fit(frame, y)
    else:
        model = make_pipeline(StandardScaler(), StandardScaler(), LogisticRegression()).fit(
            frame, y
        )
    if kind == "loopline-model":
        model = as_model(model)
    scorer = Scorer(model)
    rows = frame.to_dict("records")
    first = scorer.score(rows[:5])  # checked against predict_proba here
    assert scorer.lean
    lean = scorer.score(rows)
    expected = model.predict_proba(frame)[:, 1]
    np.testing.assert_allclose(first, expected[:5], rtol=1e-12)
    np.testing.assert_allclose(lean, expected, rtol=1e-9, atol=1e-12)


def test_other_models_are_scored_by_their_own_predict_proba() -> None:
    from sklearn.tree import DecisionTreeClassifier

    frame, y = _frame()
    tree = DecisionTreeClassifier(max_depth=3).fit(frame, y)
    scorer = Scorer(tree)
    scores = scorer.score(frame.to_dict("records"))
    assert not scorer.lean
    np.testing.assert_array_equal(scores, tree.predict_proba(frame)[:, 1])


def test_a_model_without_known_inputs_is_refused() -> None:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
    with pytest.raises(StreamError, match="cannot tell which inputs"):
        Scorer(model)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mqtt://host/x", "unknown stream URL scheme 'mqtt'"),
        ("redis://127.0.0.1:6379/0", "names no stream"),
        ("nats://127.0.0.1:4222?stream=X", "names no subject"),
        ("redis://127.0.0.1:6379/0?stream=tx&colour=red", "unknown option(s) colour"),
        ("redis://127.0.0.1:6379/0?stream=tx&claim_idle_ms=soon", "claim_idle_ms= must be"),
    ],
)
def test_bad_stream_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(StreamError) as caught:
        open_source(url)
    assert message in caught.value.message


def test_files_are_read_not_written() -> None:
    with pytest.raises(StreamError, match="replay sends to a stream"):
        open_sink("data/tx.csv")


@pytest.mark.postgres
def test_the_decision_log_keeps_one_row_per_transaction_on_postgresql(postgres_url: str) -> None:
    from loopline.stream.decisions import Decision, DecisionLog

    log = DecisionLog(postgres_url, source="redis://x#tx", model_name="m", model_version="1")
    try:
        log.write([Decision("1", 0.9, True, produced_at=1.0e9), Decision("2", 0.1, False)])
        log.write([Decision("2", 0.7, True), Decision("3", 0.2, False)])  # "2" again: ignored
        assert log.decided(["1", "2", "4"]) == {"1", "2"}
        rows = {r["tx_id"]: r for r in log.rows()}
        assert sorted(rows) == ["1", "2", "3"] and rows["2"]["score"] == 0.1
        assert rows["1"]["produced_at"].timestamp() == 1.0e9
    finally:
        log.close()
        log.store.close()
