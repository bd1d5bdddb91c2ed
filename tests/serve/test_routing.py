"""Champion/challenger traffic: canary split (random and sticky by key), shadow copies."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from loopline.core.predlog import PredictionLogger, read_predictions
from loopline.errors import LooplineError
from loopline.registry.models import LoadedModel, ModelVersionInfo
from loopline.serve import create_app, start_in_thread
from loopline.serve.routing import FixedModel, ModelSlot, Router, parse_canary


class Constant:
    """A model that answers instantly: 'pos' with probability ``p``."""

    classes_ = np.array(["neg", "pos"])

    def __init__(self, p: float) -> None:
        self.p = p

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return np.tile([1 - self.p, self.p], (len(frame), 1))


def model(version: str, p: float) -> LoadedModel:
    info = ModelVersionInfo("sentiment", version, None, [], {}, None, None, {})
    return LoadedModel(info, Constant(p), ["text"], ["neg", "pos"])


async def post_many(
    port: int, requests: list[tuple[bytes, dict[str, str]]], connections: int = 16
) -> list[tuple[int, dict[str, Any]]]:
    """POST each (body, headers) to /predict over keep-alive connections; answers in order.

    A minimal HTTP/1.1 client: 10,000 requests through httpx would take most of a minute.
    """
    answers: list[tuple[int, dict[str, Any]]] = [(0, {})] * len(requests)

    async def worker(indexes: range) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in indexes:
                body, headers = requests[i]
                extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                writer.write(
                    (
                        "POST /predict HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
                        f"content-length: {len(body)}\r\n{extra}\r\n"
                    ).encode()
                    + body
                )
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                status = int(lines[0].split()[1])
                length = next(
                    int(line.split(":", 1)[1])
                    for line in lines
                    if line.lower().startswith("content-length:")
                )
                answers[i] = (status, orjson.loads(await reader.readexactly(length)))
        finally:
            writer.close()

    step = math.ceil(len(requests) / connections)
    await asyncio.gather(
        *(worker(range(s, min(s + step, len(requests)))) for s in range(0, len(requests), step))
    )
    return answers


def body(text: str) -> bytes:
    return orjson.dumps({"text": text})


def test_parse_canary_spec() -> None:
    assert parse_canary("sentiment@challenger:10") == ("sentiment@challenger", 10.0)
    assert parse_canary("sentiment/4:2.5%") == ("sentiment/4", 2.5)
    for bad, words in [
        ("sentiment@challenger", "no ':PERCENT'"),
        ("sentiment@challenger:ten", "not a number"),
        ("sentiment@challenger:0", "above 0"),
        ("sentiment@challenger:150", "at most 100"),
        (":10", "no ':PERCENT'"),
    ]:
        with pytest.raises(LooplineError, match=words):
            parse_canary(bad)


def test_router_split_is_stable_per_key_and_proportional() -> None:
    def slot(route: str, version: str) -> ModelSlot:
        return ModelSlot(route, FixedModel(model(version, 0.5)), lambda loaded, r: r)  # type: ignore[arg-type,return-value]

    router = Router(slot("champion", "1"), slot("canary", "2"), canary_percent=25)
    keys = [f"user-{i}" for i in range(20_000)]

    first = [router.choose(k).route for k in keys]

    assert first == [router.choose(k).route for k in keys]  # sticky
    share = first.count("canary") / len(keys)
    assert abs(share - 0.25) < 3 * math.sqrt(0.25 * 0.75 / len(keys))


def test_canary_gets_its_share_of_10000_requests_and_keys_stick() -> None:
    app = create_app(model("1", 0.2), canary=model("2", 0.8), canary_percent=10)
    with start_in_thread(app) as server:
        unkeyed = asyncio.run(post_many(server.port, [(body(f"t{i}"), {}) for i in range(10_000)]))
        keyed_requests = [
            (body("same text"), {"X-Request-Key": f"user-{i % 1_000}"}) for i in range(2_000)
        ]
        keyed = asyncio.run(post_many(server.port, keyed_requests))

    assert {status for status, _ in unkeyed + keyed} == {200}
    routes = Counter((a["route"], a["model_version"]) for _, a in unkeyed)
    assert set(routes) == {("champion", "1"), ("canary", "2")}
    n, p = 10_000, 0.10
    assert abs(routes[("canary", "2")] - n * p) <= 3 * math.sqrt(n * p * (1 - p))
    # Each answer comes from the model its route names.
    for _, answer in unkeyed:
        expected = "neg" if answer["route"] == "champion" else "pos"
        assert answer["prediction"]["label"] == expected

    by_key: dict[str, set[str]] = {}
    for (_, headers), (_, answer) in zip(keyed_requests, keyed, strict=True):
        by_key.setdefault(headers["X-Request-Key"], set()).add(answer["route"])
    assert all(len(routes) == 1 for routes in by_key.values())  # sticky
    canary_keys = sum(routes == {"canary"} for routes in by_key.values())
    assert abs(canary_keys - 100) <= 3 * math.sqrt(1_000 * p * (1 - p))


def test_shadow_scores_a_copy_that_only_the_log_sees(tmp_path: Path) -> None:
    log_dir = tmp_path / "predictions"
    logger = PredictionLogger(str(log_dir), flush_interval_s=0.2)
    app = create_app(model("1", 0.2), shadow=model("2", 0.9), prediction_log=logger)
    with start_in_thread(app) as server:
        answers = asyncio.run(
            post_many(server.port, [(body(f"text {i}"), {}) for i in range(200)], connections=4)
        )
    # Stopping the server flushed and closed the log.

    assert {(a["route"], a["model_version"]) for _, a in answers} == {("champion", "1")}
    assert {a["prediction"]["label"] for _, a in answers} == {"neg"}
    logged = read_predictions(str(log_dir))
    by_route = {route: frame for route, frame in logged.groupby("route")}
    assert set(by_route) == {"champion", "shadow"}
    ids = {a["request_id"] for _, a in answers}
    assert set(by_route["champion"]["request_id"]) == ids
    assert set(by_route["shadow"]["request_id"]) == ids  # the copy keeps the request id
    assert set(by_route["shadow"]["model_version"]) == {"2"}
    assert set(by_route["shadow"]["prediction"]) == {"pos"}
    assert set(by_route["champion"]["input.text"]) == {f"text {i}" for i in range(200)}
