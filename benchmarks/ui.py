"""Dashboard page times: ``loopline ui`` against MLflow's UI server, on 10,000 runs.

One project holds 10,000 pipeline runs (7 steps each, 4 for the 4% that failed, with their
artifacts and lineage edges; every other run reuses 3 steps from the cache), 200 registered
model versions (4 models x 50, each with its gate decision), 396 alias moves, 3 versions of
a tweets table (20,000, 22,000 and 22,000 rows), 100 alerts and a 2,000-item labeling
queue. How it is filled:

- **Loopline's metadata store**: the schema is made by :class:`MetadataStore`; the runs,
  step runs, artifacts, lineage edges, model versions and alias moves are written with bulk
  SQL into those same tables (SQLAlchemy Core, ``loopline.core.schema``), as the runner
  would write them. The artifacts the pages preview (the dataset versions, the 200 gate
  decisions) are real, saved through :class:`ArtifactStore`; the others are rows whose
  files do not exist. Alerts and the labeling queue go through their public APIs.
- **MLflow** (the project's own tracking store, ``.loopline/mlflow.db``): one run is
  created through ``MlflowClient`` (5 parameters, 5 metrics, 4 tags, like a training run),
  then cloned 9,999 times with bulk SQL into MLflow's own tables (``runs``, ``params``,
  ``metrics``, ``latest_metrics``, ``tags``) under new run ids and start times; the 200
  model versions and the aliases are created through ``MlflowClient``.

Both servers run as their own processes on the same machine: ``loopline ui`` (one uvicorn
process) and ``mlflow server --workers 1`` (MLflow 3.17.2 in ``.bench/mlflow-venv``, made
here on first use: the full ``mlflow`` package pins ``pyarrow<26``, the project has 26),
MLflow's over a copy of the project's MLflow database (the same data in a SQLite file of
its own, so that neither server's locks can hold up the other). One HTTP client (httpx,
keep-alive) loads every page and MLflow's run list in turn: 3 rounds of warm-up, then
``--loads`` (50) timed rounds, so both see the same load. A load is timed from the request
to the last byte of the answer. MLflow's run list is what its experiment page asks for:
``POST /ajax-api/2.0/mlflow/runs/search`` with the page's own defaults (``max_results``
100, newest first, active runs), and again with 50 (Loopline's page size).

Not measured: the monitoring report inside the monitoring page (``/monitoring/report``:
``build_report`` over the prediction log; see ``benchmarks/drift.py``); the page around
it (alerts, options) is.

    .venv/bin/python benchmarks/ui.py [--runs 10000] [--loads 50] [--keep]

The last line is one JSON object: ``p50_ms_<page>`` and ``p99_ms_<page>`` for each page,
``p50_ms_mlflow_runs``/``p99_ms_mlflow_runs`` (and ``_50``), ``target`` (every page p99 <
300 ms and below MLflow's run list p99), ``target_met``, ``first_ms`` (each page's first,
cold load: content caches empty), the counts and ``machine``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa

from _machine import machine_info, start_load

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MLFLOW_VENV = REPO / ".bench" / "mlflow-venv"
MLFLOW_VERSION = "3.17.2"  # the version of mlflow-skinny in the project's venv
MODELS = ("sentiment", "fraud-fast", "fraud-heavy", "vision")
STEPS = ("read_text", "validate", "split", "train", "evaluate", "gate", "register")
# Each step's inputs: (input name, the step whose output it is).
INPUTS: dict[str, list[tuple[str, str]]] = {
    "read_text": [],
    "validate": [("data", "read_text")],
    "split": [("data", "validate")],
    "train": [("data", "split")],
    "evaluate": [("data", "split"), ("model", "train")],
    "gate": [("metrics", "evaluate"), ("model", "train"), ("data", "split")],
    "register": [("decision", "gate"), ("model", "train")],
}
MATERIALIZER = {
    "read_text": "pandas.parquet",
    "validate": "pandas.parquet",
    "split": "pandas.parquet",
    "train": "mlflow-model",
    "evaluate": "json",
    "gate": "json",
    "register": "loopline.model_version",
}
TARGET_MS = 300.0
WARMUP = 3
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "NO_COLOR": "1"}


def _digest(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- the data
def dataset_frames(rows: int) -> list[pd.DataFrame]:
    """Three versions of a tweets table: the second adds rows, the third shifts a column."""
    rng = np.random.default_rng(0)
    words = np.array(
        [
            "good",
            "bad",
            "great",
            "awful",
            "fine",
            "late",
            "lovely",
            "slow",
            "happy",
            "sad",
            "the",
            "a",
            "bus",
            "day",
        ]
    )
    texts = [" ".join(rng.choice(words, 8)) for _ in range(rows)]
    first = pd.DataFrame(
        {
            "text": texts,
            "label": rng.choice(["negative", "positive"], rows),
            "length": rng.integers(5, 140, rows),
            "followers": rng.lognormal(5, 1, rows).round(),
        }
    )
    more = first.sample(rows // 10, random_state=1).assign(length=lambda f: f["length"] + 1)
    second = pd.concat([first, more], ignore_index=True)
    third = second.assign(followers=second["followers"] * 1.8)
    return [first, second, third]


def decision(model: str, version: int, rng: np.random.Generator) -> dict[str, Any]:
    """A gate decision as ``loopline.registry.steps.gate`` writes it."""
    metrics = {
        "accuracy": float(rng.uniform(0.8, 0.9)),
        "macro_f1": float(rng.uniform(0.78, 0.9)),
        "roc_auc": float(rng.uniform(0.85, 0.95)),
        "log_loss": float(rng.uniform(0.3, 0.5)),
        "n": 1000,
    }
    return {
        "passed": bool(version % 3),
        "reasons": [f"macro_f1 {metrics['macro_f1']:.4f} >= floor 0.6000"],
        "candidate": metrics,
        "champion": None,
        "rules": {"metric": "macro_f1", "min_value": 0.6},
        "model_name": model,
        "champion_version": str(version - 1) if version > 1 else None,
    }


def fill_loopline(settings: Any, runs: int, versions_per_model: int) -> dict[str, Any]:
    """Loopline's side of the project (see the module docstring); returns what the pages
    are asked for."""
    from loopline.core import schema
    from loopline.core.artifacts import ArtifactStore
    from loopline.core.metadata import MetadataStore
    from loopline.label.queue import LabelQueue

    store = MetadataStore(settings.metadata_url)
    artifacts = ArtifactStore(settings.artifact_root)
    rng = np.random.default_rng(0)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    frames = dataset_frames(20_000)
    tables = [artifacts.save(f) for f in frames]
    registering: dict[int, tuple[str, int]] = {}  # run index -> (model, version)
    for m, model in enumerate(MODELS):
        indexes = [i for i in range(runs) if i % len(MODELS) == m][-versions_per_model:]
        for version, i in enumerate(indexes, start=1):
            registering[i] = (model, version)
    decisions = {i: artifacts.save(decision(*mv, rng)) for i, mv in registering.items()}

    run_rows, step_rows, art_rows, edge_rows = [], [], [], []
    real = {t.hash: t for t in tables} | {d.hash: d for d in decisions.values()}
    for art in real.values():
        art_rows.append(
            {
                "hash": art.hash,
                "materializer": art.materializer,
                "type_name": art.type_name,
                "size_bytes": art.size_bytes,
                "uri": art.uri,
                "created_at": base,
            }
        )
    for i in range(runs):
        run_id = _digest("run", i)[:16]
        start = base + timedelta(minutes=30 * i)
        failed = i % 25 == 7 and i not in registering
        cached = i % 2 == 1  # every other run reuses read/validate/split from the cache
        run_rows.append(
            {
                "id": run_id,
                "pipeline": MODELS[i % len(MODELS)],
                "status": "failed" if failed else "completed",
                "params": orjson.dumps({"C": 1.0, "seed": i % 7, "test_size": 0.2}).decode(),
                "code_commit": _digest("commit", i // 50)[:40],
                "code_dirty_hash": None,
                "executor": "threads",
                "pid": None,
                "host": "bench-host",
                "started_at": start,
                "ended_at": start + timedelta(seconds=42),
                "duration_s": 42.0,
                "error": "train: ValueError: bench" if failed else None,
            }
        )
        outputs: dict[str, str] = {}
        for s, step in enumerate(STEPS):
            if failed and s > 3:
                break
            step_id = _digest("step", i, step)[:16]
            if step == "read_text":
                out = tables[min(i * 3 // runs, 2)].hash
            elif step == "gate" and i in decisions:
                out = decisions[i].hash
            elif cached and s < 3:
                out = _digest("art", i - 1, step)
            else:
                out = _digest("art", i, step)
            outputs[step] = out
            status = (
                "failed" if failed and s == 3 else ("cached" if cached and s < 3 else "completed")
            )
            step_rows.append(
                {
                    "id": step_id,
                    "run_id": run_id,
                    "step": step,
                    "cache_key": _digest("key", i, step),
                    "code_hash": _digest("code", step),
                    "params": "{}",
                    "status": status,
                    "cached_from": _digest("run", i - 1)[:16] if status == "cached" else None,
                    "started_at": start + timedelta(seconds=6 * s),
                    "ended_at": start + timedelta(seconds=6 * s + 5),
                    "duration_s": 0.01 if status == "cached" else 5.0,
                    "error": None,
                }
            )
            if out not in real and not (cached and s < 3):
                art_rows.append(
                    {
                        "hash": out,
                        "materializer": MATERIALIZER[step],
                        "type_name": "bench",
                        "size_bytes": 1000,
                        "uri": artifacts.uri(out),
                        "created_at": start,
                    }
                )
            for name, source in INPUTS[step]:
                edge_rows.append(
                    {
                        "step_run_id": step_id,
                        "direction": "input",
                        "name": name,
                        "artifact_hash": outputs[source],
                    }
                )
            if status != "failed":
                edge_rows.append(
                    {
                        "step_run_id": step_id,
                        "direction": "output",
                        "name": "output",
                        "artifact_hash": out,
                    }
                )
    version_rows, alias_rows = [], []
    for i, (model, version) in sorted(registering.items()):
        run_id = _digest("run", i)[:16]
        when = base + timedelta(minutes=30 * i, seconds=40)
        version_rows.append(
            {
                "model_name": model,
                "version": str(version),
                "model_hash": _digest("art", i, "train"),
                "dataset_hash": tables[2].hash,
                "dataset_version": "tweets:v3",
                "mlflow_run_id": None,
                "run_id": run_id,
                "profile_hash": None,
                "created_at": when,
                "datasets": orjson.dumps(["tweets:v3"]).decode(),
                "recipe": _digest("recipe", i),
            }
        )
        for alias, target, previous in (
            ("previous", version - 1, version - 2),
            ("champion", version, version - 1),
        ):
            if target >= 1:
                alias_rows.append(
                    {
                        "model_name": model,
                        "alias": alias,
                        "version": str(target),
                        "previous_version": str(previous) if previous >= 1 else None,
                        "reason": "gate passed: macro_f1 >= floor 0.6000",
                        "actor": "loopline run",
                        "run_id": run_id,
                        "created_at": when,
                    }
                )
    dataset_rows = [
        {
            "name": "tweets",
            "version": v + 1,
            "artifact_hash": t.hash,
            "rows": len(frames[v]),
            "source": "bench",
            "run_id": _digest("run", v)[:16],
            "created_at": base + timedelta(days=v),
        }
        for v, t in enumerate(tables)
    ]
    with store.engine.begin() as conn:
        for table, rows in (
            (schema.runs, run_rows),
            (schema.step_runs, step_rows),
            (schema.artifacts, art_rows),
            (schema.step_artifacts, edge_rows),
            (schema.dataset_versions, dataset_rows),
            (schema.model_versions, version_rows),
            (schema.alias_events, alias_rows),
        ):
            for start in range(0, len(rows), 5000):
                conn.execute(table.insert(), rows[start : start + 5000])
    for k in range(100):
        store.record_alert(
            model_name="sentiment",
            model_version=str(1 + k % versions_per_model),
            rule="accuracy_floor",
            metric="accuracy",
            value=0.7,
            threshold=0.75,
            window_start=base,
            window_end=base + timedelta(days=1),
            action="retrain",
            status="done",
            details={"k": k},
        )
    queue = LabelQueue(store, "tweets", labels=["negative", "positive"])
    queue.add_items([{"item_id": str(n), "text": frames[0]["text"][n]} for n in range(2000)])
    newest = max(registering, key=lambda i: (registering[i][0] == "sentiment", i))
    store.close()
    return {
        "run": _digest("run", newest)[:16],
        "table": tables[0].hash,
        "counts": {
            "runs": len(run_rows),
            "step_runs": len(step_rows),
            "artifacts": len(art_rows),
            "lineage_edges": len(edge_rows),
            "model_versions": len(version_rows),
            "alias_moves": len(alias_rows),
        },
    }


def fill_mlflow(tracking_uri: str, runs: int, versions_per_model: int) -> str:
    """MLflow's side: ``runs`` runs in one experiment, and the 200 model versions with
    their aliases. Returns the experiment id."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.create_experiment("bench")
    now_ms = int(time.time() * 1000)
    template = client.create_run(
        experiment,
        tags={"mlflow.runName": "run-0", "mlflow.user": "bench", "mlflow.source.name": "p.py"},
    )
    template_id = template.info.run_id
    client.log_batch(
        template_id,
        metrics=[
            Metric(k, 0.5, now_ms, 0)
            for k in ("accuracy", "macro_f1", "roc_auc", "log_loss", "brier")
        ],
        params=[Param(k, "1") for k in ("C", "seed", "test_size", "model", "features")],
        tags=[RunTag("loopline.pipeline", "sentiment")],
    )
    client.set_terminated(template_id)
    engine = sa.create_engine(tracking_uri)
    meta = sa.MetaData()
    tables = {
        n: sa.Table(n, meta, autoload_with=engine)
        for n in ("runs", "params", "metrics", "latest_metrics", "tags")
    }
    with engine.begin() as conn:
        rows = {
            n: [
                dict(r._mapping)
                for r in conn.execute(sa.select(t).where(t.c.run_uuid == template_id))
            ]
            for n, t in tables.items()
        }
        for start in range(1, runs, 1000):
            batch: dict[str, list[dict[str, Any]]] = {n: [] for n in tables}
            for i in range(start, min(start + 1000, runs)):
                run_uuid = _digest("mlflow", i)[:32]
                for n, template_rows in rows.items():
                    for row in template_rows:
                        copy = dict(row, run_uuid=run_uuid)
                        if n == "runs":
                            copy.update(
                                name=f"run-{i}",
                                start_time=now_ms + i * 1000,
                                end_time=now_ms + i * 1000 + 42_000,
                                artifact_uri=str(row["artifact_uri"]).replace(
                                    template_id, run_uuid
                                ),
                            )
                        elif n == "tags" and row["key"] == "mlflow.runName":
                            copy["value"] = f"run-{i}"
                        batch[n].append(copy)
            for n, copies in batch.items():
                conn.execute(tables[n].insert(), copies)
    for model in MODELS:
        client.create_registered_model(model)
        for version in range(1, versions_per_model + 1):
            client.create_model_version(model, f"file:///bench/{model}/{version}", run_id=None)
        client.set_registered_model_alias(model, "champion", str(versions_per_model))
        client.set_registered_model_alias(model, "previous", str(versions_per_model - 1))
    engine.dispose()
    return str(experiment)


# --------------------------------------------------------------------------- the servers
def ensure_mlflow_venv() -> Path:
    """The python of the venv holding the full ``mlflow`` (its UI server)."""
    mlflow = MLFLOW_VENV / "bin" / "mlflow"
    if mlflow.exists():
        return mlflow
    print(
        f"creating {MLFLOW_VENV.relative_to(REPO)} (one-time: mlflow=={MLFLOW_VERSION})", flush=True
    )
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(MLFLOW_VENV)], check=True)
    subprocess.run(
        [
            str(MLFLOW_VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            f"mlflow=={MLFLOW_VERSION}",
        ],
        check=True,
    )
    return mlflow


def start(command: list[str], cwd: Path, ready_url: str, log: Path) -> subprocess.Popen[bytes]:
    """Start a server and wait until ``ready_url`` answers 200."""
    handle = log.open("wb")
    process = subprocess.Popen(command, cwd=cwd, env=ENV, stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{command[0]} exited ({process.returncode}); see {log}")
        try:
            if httpx.get(ready_url, timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"{command[0]} did not answer {ready_url} in 180 s; see {log}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------- measuring
def measure(
    requests: dict[str, tuple[str, str, dict[str, Any] | None]], loads: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Milliseconds per load of each request, interleaved round by round (after the
    warm-up rounds), and each request's first load (cold: nothing cached yet)."""
    times: dict[str, list[float]] = {name: [] for name in requests}
    first: dict[str, float] = {}
    with httpx.Client(timeout=60) as client:
        for round_ in range(WARMUP + loads):
            for name, (method, url, body) in requests.items():
                began = time.perf_counter()
                answer = client.request(method, url, json=body)
                answer.read()
                elapsed = (time.perf_counter() - began) * 1000
                if answer.status_code != 200:
                    raise SystemExit(
                        f"{name}: {url} answered {answer.status_code}: {answer.text[:300]}"
                    )
                if round_ == 0:
                    first[name] = round(elapsed, 1)
                elif round_ >= WARMUP:
                    times[name].append(elapsed)
    return times, first


def main() -> None:
    load_start = start_load()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--versions-per-model", type=int, default=50)
    parser.add_argument("--loads", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="keep the project folder")
    args = parser.parse_args()

    mlflow = ensure_mlflow_venv()
    folder = Path(tempfile.mkdtemp(prefix="loopline-ui-bench-"))
    project = folder / "project"
    project.mkdir()
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    from loopline.config import load_settings

    settings = load_settings(project)
    began = time.perf_counter()
    filled = fill_loopline(settings, args.runs, args.versions_per_model)
    experiment = fill_mlflow(str(settings.mlflow_tracking_uri), args.runs, args.versions_per_model)
    print(f"filled in {time.perf_counter() - began:.1f} s: {filled['counts']}", flush=True)

    ui_port, mlflow_port = _free_port(), _free_port()
    ui = start(
        [str(BIN / "loopline"), "ui", "--port", str(ui_port)],
        project,
        f"http://127.0.0.1:{ui_port}/ready",
        folder / "ui.log",
    )
    served = folder / "mlflow-server.db"
    shutil.copyfile(str(settings.mlflow_tracking_uri).removeprefix("sqlite:///"), served)
    mlflow_server = start(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{served}",
         "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"],
        folder,
        f"http://127.0.0.1:{mlflow_port}/health",
        folder / "mlflow.log",
    )  # fmt: skip
    ui_url, mlflow_url = f"http://127.0.0.1:{ui_port}", f"http://127.0.0.1:{mlflow_port}"
    since = (datetime(2026, 1, 1) + timedelta(minutes=30 * args.runs // 2)).date().isoformat()
    pages = {
        "runs": "/runs",
        "runs_filtered": f"/runs?pipeline=sentiment&status=completed&since={since}",
        "runs_page_100": "/runs?page=100",
        "run": f"/runs/{filled['run']}",
        "artifact": f"/artifacts/{filled['table']}",
        "lineage": "/lineage?ref=sentiment@champion",
        "models": "/models?name=sentiment",
        "monitoring": "/monitoring?model=sentiment",
        "data": "/data",
        "dataset": "/data/tweets/3",
        "data_diff": "/data/tweets/diff?a=2&b=3",
        "review": "/review",
    }
    search = mlflow_url + "/ajax-api/2.0/mlflow/runs/search"
    body = {
        "experiment_ids": [experiment],
        "filter": "",
        "run_view_type": "ACTIVE_ONLY",
        "order_by": ["attributes.start_time DESC"],
    }
    requests: dict[str, tuple[str, str, dict[str, Any] | None]] = {
        name: ("GET", ui_url + path, None) for name, path in pages.items()
    }
    requests["mlflow_runs"] = ("POST", search, {**body, "max_results": 100})
    requests["mlflow_runs_50"] = ("POST", search, {**body, "max_results": 50})
    try:
        listed = httpx.post(search, json={**body, "max_results": 100}, timeout=60).json()
        assert len(listed["runs"]) == 100, listed
        times, first = measure(requests, args.loads)
    finally:
        stop(ui)
        stop(mlflow_server)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    result: dict[str, Any] = {"runs": args.runs, **filled["counts"], "loads": args.loads}
    print(f"{'page':<16}{'p50 ms':>10}{'p99 ms':>10}{'first ms':>10}")
    for name, values in times.items():
        p50, p99 = float(np.percentile(values, 50)), float(np.percentile(values, 99))
        result[f"p50_ms_{name}"], result[f"p99_ms_{name}"] = round(p50, 2), round(p99, 2)
        print(f"{name:<16}{p50:>10.1f}{p99:>10.1f}{first[name]:>10.1f}")
    worst = max(result[f"p99_ms_{name}"] for name in pages)
    result["target"] = f"every page p99 < {TARGET_MS:.0f} ms and < MLflow's run list p99"
    result["target_met"] = worst < TARGET_MS and worst < result["p99_ms_mlflow_runs"]
    result["slowest_page_p99_ms"] = worst
    # The first load of each page: the caches of immutable content (profiles, diffs, gate
    # decisions) still empty, MLflow's queries not yet warm.
    result["first_ms"] = first
    if args.keep:
        result["project"] = str(project)
    result["machine"] = machine_info(
        load_start, ["loopline", "fastapi", "uvicorn", "jinja2", "sqlalchemy"],
        venvs={MLFLOW_VENV / "bin" / "python": ["mlflow"]},
    )  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
