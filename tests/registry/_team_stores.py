"""A team's shared stores, started for real (tests/registry/conftest.py: once per module).

* metadata: a fresh PostgreSQL database on the local server;
* artifacts: an S3 API bucket served by moto's stand-alone server (``moto_server``, from
  ``moto[server]``), reached through s3fs with the standard AWS variables;
* MLflow: ``mlflow server`` as its own process, its backend store a second fresh PostgreSQL
  database, its artifacts proxied (``--artifacts-destination``) into the same S3 server.

Clients get the S3 endpoint and credentials from ``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` and ``AWS_DEFAULT_REGION``, as they would
from a team's environment; :meth:`TeamStores.configure` writes a project's loopline.yaml.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent
POSTGRES = os.environ.get("LOOPLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
BUCKET = "loopline-team"


# The project both team-store tests run: YouTube comments, a bag-of-words model, and a gate
# that lets any candidate through (a regression of up to 1.0 is allowed): every run promotes.
PIPELINE = """
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.naive_bayes import MultinomialNB
from sklearn.pipeline import Pipeline

from loopline import pipeline, step
from loopline.steps import evaluate, gate, profile, read_table, register, split, train


@step
def comments(table: pd.DataFrame) -> pd.DataFrame:
    labels = table["CLASS"].map({0: "ham", 1: "spam"})
    return pd.DataFrame({"text": table["CONTENT"], "label": labels, "author": table["AUTHOR"]})


@pipeline
def spam(source: str, alpha: float = 1.0) -> None:
    data = comments(read_table(source, dataset="comments"))
    train_df, test_df = split(data, by="group", group="author", test_size=0.25)
    words = ColumnTransformer([("words", CountVectorizer(min_df=2), "text")])
    model = train(train_df, model=Pipeline([("words", words), ("nb", MultinomialNB(alpha=alpha))]),
                  features=["text"], target="label")
    metrics = evaluate(model, test_df)
    decision = gate(model, test_df, metrics, model_name="spam", max_regression=1.0)
    register(model, decision, example=test_df, reference=profile(model, test_df))
"""


@dataclass(frozen=True)
class TeamStores:
    """Where the shared stores of one module's tests are."""

    metadata_url: str
    mlflow_tracking_uri: str
    artifact_root: str
    s3_endpoint: str
    env: dict[str, str]

    def configure(self, project: Path, extra: str = "") -> None:
        """Write ``project/loopline.yaml`` pointing at these stores (plus ``extra`` lines)."""
        project.mkdir(parents=True, exist_ok=True)
        (project / "loopline.yaml").write_text(
            f"metadata_url: {self.metadata_url}\n"
            f"artifact_root: {self.artifact_root}\n"
            f"mlflow_tracking_uri: {self.mlflow_tracking_uri}\n" + extra
        )

    def s3_keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix`` in the team bucket (read with boto3)."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.s3_endpoint)
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []))
        return keys


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def start_team_stores(folder: Path) -> Iterator[TeamStores]:
    """PostgreSQL + an S3 API server + an MLflow tracking server, until the block ends."""
    sa = pytest.importorskip("sqlalchemy")
    pytest.importorskip("s3fs")
    pytest.importorskip("flask")  # the MLflow tracking server's web framework
    if shutil.which("moto_server", path=str(BIN)) is None:
        pytest.skip("moto[server] is not installed")
    from loopline.core.dburl import sqlalchemy_url

    admin = sa.create_engine(sqlalchemy_url(POSTGRES), isolation_level="AUTOCOMMIT")
    names = [f"loopline_team_{uuid.uuid4().hex[:10]}" for _ in ("metadata", "mlflow")]
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES} is not reachable: {exc}")
    base = POSTGRES.rsplit("/", 1)[0]
    processes: list[subprocess.Popen[bytes]] = []
    saved = dict(os.environ)
    try:
        s3_port, mlflow_port = _free_port(), _free_port()
        endpoint = f"http://127.0.0.1:{s3_port}"
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "loopline-test",
            "AWS_SECRET_ACCESS_KEY": "loopline-test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        os.environ.update(env)
        s3_log = folder / "moto.log"
        processes.append(
            subprocess.Popen(
                [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
                stdout=s3_log.open("wb"),
                stderr=subprocess.STDOUT,
            )
        )
        _wait_http(f"{endpoint}/moto-api/", processes[-1], s3_log, 60)
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        mlflow_log = folder / "mlflow.log"
        processes.append(
            subprocess.Popen(
                [
                    str(BIN / "mlflow"),
                    "server",
                    "--backend-store-uri",
                    f"{base}/{names[1]}".replace("postgresql://", "postgresql+psycopg://", 1),
                    "--artifacts-destination",
                    f"s3://{BUCKET}/mlflow",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(mlflow_port),
                    "--workers",
                    "2",
                ],
                stdout=mlflow_log.open("wb"),
                stderr=subprocess.STDOUT,
                cwd=folder,
                env={
                    **os.environ,
                    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                    "MLFLOW_S3_ENDPOINT_URL": endpoint,
                    # The server's job runner (GenAI jobs) needs huey; Loopline uses no jobs.
                    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                },
            )
        )
        _wait_http(f"http://127.0.0.1:{mlflow_port}/health", processes[-1], mlflow_log, 180)
        yield TeamStores(
            metadata_url=f"{base}/{names[0]}",
            mlflow_tracking_uri=f"http://127.0.0.1:{mlflow_port}",
            artifact_root=f"s3://{BUCKET}/artifacts",
            s3_endpoint=endpoint,
            env=env,
        )
    finally:
        for process in reversed(processes):
            _stop(process)
        os.environ.clear()
        os.environ.update(saved)
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
