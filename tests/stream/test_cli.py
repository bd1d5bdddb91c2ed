"""``loopline stream replay`` and ``loopline stream consume`` on a project whose registry
holds ``fraud@champion`` (a small logistic regression); user errors exit 2 with a hint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from _support import PII_KEY, POLICY, REDIS_URL, free_port, transactions


def loopline(*args: str, cwd: Path, key: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb")
    env.pop("LOOPLINE_PII_KEY", None)
    if key:
        env["LOOPLINE_PII_KEY"] = PII_KEY
    return subprocess.run(
        [sys.executable, "-m", "loopline", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, amount_model: Any) -> Path:
    """A project with fraud@champion registered and a PII policy file."""
    from loopline.config import load_settings
    from loopline.registry.project import open_registry
    from loopline.train.model import as_model

    root = tmp_path_factory.mktemp("stream-cli")
    (root / "loopline.yaml").write_text("{}\n")
    (root / "policy.json").write_text(json.dumps(POLICY))
    registry = open_registry(load_settings(root))
    info = registry.register(
        as_model(amount_model),
        name="fraud",
        params={},
        metrics={},
        dataset_version=None,
        input_example=pd.DataFrame({"TX_AMOUNT": [12.5, 250.0]}),
    )
    registry.promote("fraud", info.version, reason="stream tests", actor="tests")
    return root


def test_replay_then_consume_decides_every_transaction_with_the_champion(
    project: Path, stream_name: str
) -> None:
    pd.DataFrame(transactions(30)).to_csv(project / "tx.csv", index=False)
    url = f"{REDIS_URL}?stream={stream_name}"

    sent = loopline("stream", "replay", "tx.csv", url, "--rate", "0", "--json", cwd=project)
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["sent"] == 30

    done = loopline(
        "stream", "consume", url, "--model", "fraud@champion", "--features", "none",
        "--pii-policy", "policy.json", "--idle-exit", "1", "--json", cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["decided"], summary["dead_lettered"]) == (30, 0)
    # No fraud-heavy is registered: decided on the fast model alone, flagged, and logged.
    assert summary["fallbacks"] == {"heavy_unavailable": 30}
    assert "heavy model fraud-heavy@champion unavailable" in done.stderr

    engine = sa.create_engine(f"sqlite:///{project / '.loopline' / 'metadata.db'}")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT model_name, model_version, action, heavy_version FROM decisions")
        ).all()
    engine.dispose()
    assert {r[:2] for r in rows} == {("fraud", "1")} and len(rows) == 30
    assert {r[2] for r in rows} <= {"allow", "review", "block"}
    assert {r[3] for r in rows} == {"unavailable"}

    applied = loopline("stream", "apply-reviews", "--json", cwd=project)
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["queue"] == "fraud-review"


def test_redis_down_exits_2_with_a_hint(project: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0?stream=tx"
    done = loopline(
        "stream", "consume", url, "--features", "none", "--pii-policy", "policy.json",
        cwd=project,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error: cannot reach Redis at redis://127.0.0.1:" in done.stderr
    assert "hint: start Redis" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_a_pii_key_nothing_is_consumed(project: Path, stream_name: str) -> None:
    url = f"{REDIS_URL}?stream={stream_name}"
    done = loopline(
        "stream", "consume", url, "--features", "none", "--pii-policy", "policy.json",
        cwd=project, key=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "PII key" in done.stderr and "hint:" in done.stderr
