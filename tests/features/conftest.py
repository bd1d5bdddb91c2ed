"""Fixtures for the feature tests: a slice of the Fraud Detection Handbook's transactions,
its offline features, and fresh online stores (embedded in a temp folder; Redis under a
random key prefix, deleted afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loopline.features import EmbeddedFeatureStore, RedisFeatureStore, compute_offline
from loopline.features.definitions import handbook_features

REDIS_URL = "redis://127.0.0.1:6379/0"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
HANDBOOK = SHARED / "fraud" / "fraud_handbook_simulated"
END = pd.Timestamp("2018-04-11 08:00")  # the slice: 2018-04-01 .. 2018-04-11 07:59:59


@pytest.fixture(scope="session")
def april(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """2018-04-01 up to 2018-04-11 08:00 (98,051 transactions), in file (= time) order."""
    path = HANDBOOK / "transactions_2018-04.csv.gz"
    if not path.is_file():
        pytest.skip(f"handbook data not found at {path}")
    frame = pd.read_csv(path, parse_dates=["TX_DATETIME"])
    return frame[frame["TX_DATETIME"] < END].reset_index(drop=True)


@pytest.fixture(scope="session")
def april_offline(april: pd.DataFrame) -> pd.DataFrame:
    return compute_offline(april, handbook_features())


@pytest.fixture
def redis_conn() -> Iterator[Any]:
    """A client of the local Redis (the tests that need it skip without one)."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, decode_responses=True)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis server on 127.0.0.1:6379")
    yield client
    client.close()


@pytest.fixture
def redis_prefix(redis_conn: Any) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted afterwards."""
    client = redis_conn
    prefix = f"loopline-test-features-{uuid.uuid4().hex[:10]}"
    yield prefix
    keys = list(client.scan_iter(match="{" + prefix + "}*", count=10_000))
    for start in range(0, len(keys), 5_000):
        client.delete(*keys[start : start + 5_000])


@pytest.fixture(params=["embedded", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Each online store in turn, empty."""
    if request.param == "embedded":
        opened: Any = EmbeddedFeatureStore(tmp_path / "online.sqlite", handbook_features())
    else:
        prefix = request.getfixturevalue("redis_prefix")
        opened = RedisFeatureStore(REDIS_URL, prefix, handbook_features())
    yield opened
    opened.close()
