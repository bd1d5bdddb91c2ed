"""Fixtures for the stream tests: fresh stream names (deleted afterwards), a tiny logistic
regression, the real PII masker with a test key, stand-in features, transactions."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _support import FEATURES, PII_KEY, POLICY, REDIS_URL


@pytest.fixture(scope="session")
def amount_model() -> Any:
    """Logistic regression on TX_AMOUNT alone (amounts above ~200 are fraud)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    amounts = np.r_[rng.uniform(0, 180, 200), rng.uniform(220, 400, 200)]
    frame = pd.DataFrame({"TX_AMOUNT": amounts})
    return LogisticRegression().fit(frame, (amounts > 200).astype(int))


@pytest.fixture(scope="session")
def feature_model() -> Any:
    """Logistic regression on TX_AMOUNT and the stand-in store's two features."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "TX_AMOUNT": rng.uniform(0, 400, 400),
            FEATURES[0]: rng.integers(1, 50, 400).astype(float),
            FEATURES[1]: rng.uniform(0, 300, 400),
        }
    )
    return LogisticRegression().fit(frame, (frame["TX_AMOUNT"] > 200).astype(int))


@pytest.fixture(scope="session")
def soft_model() -> Any:
    """Logistic regression on TX_AMOUNT alone, with a gentle slope: p(fraud) ~0.5 at 200,
    ~0.9 near 270, so the review and block thresholds both fall inside the amounts."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    amounts = rng.uniform(0, 400, 2000)
    labels = (amounts + rng.normal(0, 60, 2000) > 200).astype(int)
    return LogisticRegression().fit(pd.DataFrame({"TX_AMOUNT": amounts}), labels)


@pytest.fixture(scope="session")
def masker() -> Any:
    from loopline.data.pii import PiiMasker

    return PiiMasker(POLICY, PII_KEY)


@pytest.fixture
def redis_client() -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not running at {REDIS_URL}: {exc} (start it: see .ci/run)")
    yield client
    client.close()


@pytest.fixture
def stream_name(redis_client: Any) -> Iterator[str]:
    """A fresh Redis stream; it, its dead letters and any test keys are deleted afterwards."""
    name = f"loopline-test-{uuid.uuid4().hex[:10]}"
    yield name
    keys = [name, f"{name}:dead", *redis_client.scan_iter(f"{name}:*")]
    redis_client.delete(*keys)


@pytest.fixture
def metadata_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'metadata.db'}"
