"""Scaling out on Ray: batch inference on Ray Data, a parallel search, the Ray executor's cost.

One function per part; ``--only a,b`` runs some of them:

(a) ``part_a``: batch inference over 2,000,000 card transactions in 20 Parquet shards:
    ``loopline predict MODEL SHARDS OUT --engine ray`` (Ray Data, one scoring actor per core)
    against the single-process ``loopline predict`` (chunk by chunk), each a fresh process.
    The rows: the Fraud Detection Handbook's 872,795 simulated transactions
    (``../shared/data/fraud/fraud_handbook_simulated``, April-June 2018) and 1,127,205 more
    from Loopline's implementation of the handbook's simulation
    (:mod:`loopline.examples.transactions`, July-August 2018, 10,000 other customers):
    no row is repeated. Features per row: amount, hour, weekend and night flags. The model:
    LightGBM (300 trees, ``n_jobs=1``, so that the single-process path really is one core)
    trained on 200,000 April transactions and registered in the project's MLflow store.
    ``ratio_batch`` = single-process wall time / Ray wall time (above 1: Ray is faster);
    ``peak_mb_batch_*`` = the peak of the summed proportional set size (PSS: shared pages,
    such as Ray's object store, counted once) of the command's whole process tree, sampled
    every 0.2 s with psutil. Both outputs are compared row by row (by TRANSACTION_ID).
(b) ``part_b``: an 8-trial search (the ``search`` step: Optuna TPE, 3-fold cross-validation
    of LightGBM, ``n_jobs=1``, all 8 trials in one round) in a pipeline run with
    ``--executor ray`` (the trials as Ray tasks) against ``--executor threads`` (the trials
    one after another), each ``loopline run`` a fresh process and project, on 200,000 April
    transactions. ``ratio_search`` = the threads run's search step / the Ray run's search
    step (step durations from the run record; the whole processes' times are shown too:
    the Ray run also pays for starting Ray). Both must find the same best settings.
(c) ``part_c``: the Ray executor's cost per step against the thread executor's: a chain of
    20 trivial steps (each adds 1 to its input: the run is all overhead), run in this
    process with the cache off, one untimed warm-up run per executor (for Ray: starting
    the local instance and its worker processes), then ``--runs`` (3) rounds of one timed
    run each, the two in turns (so that a change in the machine's load hits both alike).
    ``overhead_ms_per_step_*`` = the median run's wall time / 20. What both pay: cache-key
    fingerprints, writing each output to the artifact store, one metadata transaction per
    step; what Ray adds: submitting a task, a worker loading the step's input from the
    store and saving its output there, the result coming back.

    .venv/bin/python benchmarks/scale.py [--only a,b,c] [--work DIR] [--runs 3]

The last line is one JSON object with the parts' figures and ``machine``.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _machine import machine_info, start_load

REPO = Path(__file__).resolve().parents[1]
HANDBOOK = REPO.parent / "shared" / "data" / "fraud" / "fraud_handbook_simulated"
MONTHS = ("2018-04", "2018-05", "2018-06")
ROWS = 2_000_000
SHARDS = 20
FEATURES = ["TX_AMOUNT", "TX_HOUR", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"]


# -- shared helpers ----------------------------------------------------------------------------


def with_features(tx: pd.DataFrame) -> pd.DataFrame:
    """The per-row features of the handbook (no history needed: scoring is row by row)."""
    when = pd.to_datetime(tx["TX_DATETIME"])
    return tx.assign(
        TX_HOUR=when.dt.hour,
        TX_DURING_WEEKEND=(when.dt.day_of_week >= 5).astype(int),
        TX_DURING_NIGHT=(when.dt.hour <= 6).astype(int),
    )


def handbook(months: tuple[str, ...] = MONTHS) -> pd.DataFrame:
    frames = []
    for month in months:
        with gzip.open(HANDBOOK / f"transactions_{month}.csv.gz") as handle:
            frames.append(pd.read_csv(handle))
    return pd.concat(frames, ignore_index=True)


def loopline(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Run ``loopline ARGS`` in ``cwd``: (wall seconds, peak PSS MB of its process tree,
    stdout); exits on failure."""
    import psutil

    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "loopline", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})},
    )
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(process.pid)
        while not done.is_set():
            total = 0
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                tree = []
            for member in tree:
                with contextlib.suppress(psutil.Error):  # exited since the listing
                    total += member.memory_full_info().pss
            peak = max(peak, total / 1024**2)
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if process.returncode != 0:
        sys.exit(f"loopline {' '.join(args)} failed:\n{err[-4000:]}")
    return seconds, peak, out


def fresh_project(work: Path, name: str) -> Path:
    root = work / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return root


# -- (a) batch inference -----------------------------------------------------------------------


def build_shards(folder: Path) -> Path:
    """2,000,000 transactions with features in 20 shards (built once, kept in ``folder``)."""
    shards = folder / "shards"
    if shards.is_dir() and len(list(shards.glob("*.parquet"))) == SHARDS:
        return shards
    from loopline.examples.transactions import generate_transactions

    real = handbook()
    more = generate_transactions(
        customers=10_000, terminals=20_000, days=62, start="2018-07-01", seed=7
    )
    more = more.iloc[: ROWS - len(real)].copy()
    if len(more) != ROWS - len(real):
        sys.exit(f"the simulation gave {len(more):,} rows; need {ROWS - len(real):,}")
    more["TRANSACTION_ID"] += len(real)  # ids stay unique across both parts
    more["CUSTOMER_ID"] += 10_000  # other customers and terminals than the handbook's
    more["TERMINAL_ID"] += 20_000
    rows = with_features(pd.concat([real, more], ignore_index=True))
    staging = folder / "shards.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for number, part in enumerate(np.array_split(np.arange(ROWS), SHARDS)):
        rows.iloc[part].to_parquet(staging / f"part-{number:02d}.parquet", index=False)
    shutil.rmtree(shards, ignore_errors=True)
    staging.rename(shards)
    return shards


def register_fraud_model(root: Path) -> None:
    """LightGBM on 200,000 April transactions, registered and promoted in ``root``."""
    from lightgbm import LGBMClassifier

    from loopline.config import load_settings
    from loopline.registry.project import open_registry
    from loopline.train.model import fit_model

    train = with_features(handbook(("2018-04",)).iloc[:200_000])
    booster = LGBMClassifier(n_estimators=300, num_leaves=63, n_jobs=1, verbose=-1)
    model = fit_model(train, booster, features=FEATURES, target="TX_FRAUD")
    registry = open_registry(load_settings(root))
    version = registry.register(
        model,
        name="fraud",
        params={},
        metrics={},
        dataset_version=None,
        input_example=train[FEATURES].head(3),
    )
    registry.promote("fraud", version.version, reason="benchmark", actor="scale.py")


def part_a(work: Path) -> dict[str, Any]:
    """Ray Data vs the single-process ``loopline predict`` over 2,000,000 rows."""
    shards = build_shards(work)
    root = fresh_project(work, "batch")
    register_fraud_model(root)
    single_s, single_mb, single_out = loopline(
        "predict", "fraud", str(shards), "single.parquet", "--json", cwd=root
    )
    ray_s, ray_mb, ray_out = loopline(
        "predict", "fraud", str(shards), "ray-out", "--engine", "ray", "--json", cwd=root
    )
    columns = ["TRANSACTION_ID", "prediction", "proba.1", "model_version"]
    single = pd.read_parquet(root / "single.parquet", columns=columns)
    on_ray = pd.read_parquet(root / "ray-out", columns=columns)
    single = single.sort_values("TRANSACTION_ID", ignore_index=True)
    on_ray = on_ray.sort_values("TRANSACTION_ID", ignore_index=True)
    if len(single) != ROWS or not single.equals(on_ray):
        sys.exit("the Ray engine's output differs from the single-process output")
    return {
        "ratio_batch": round(single_s / ray_s, 3),
        "batch_single_s": round(single_s, 2),
        "batch_ray_s": round(ray_s, 2),
        "peak_mb_batch_single": round(single_mb, 1),
        "peak_mb_batch_ray": round(ray_mb, 1),
        "batch_rows": ROWS,
        "batch_ray_actors": json.loads(ray_out)["actors"],
        "batch_rows_per_s_single": json.loads(single_out)["rows_per_s"],
        "batch_identical": True,
    }


# -- (b) parallel search -----------------------------------------------------------------------

SEARCH_PIPELINE = """
from lightgbm import LGBMClassifier

from loopline import pipeline
from loopline.steps import evaluate, read_table, search, split

FEATURES = {features!r}
SPACE = {{
    "n_estimators": {{"low": 50, "high": 250}},
    "num_leaves": {{"low": 8, "high": 64}},
    "learning_rate": {{"low": 0.02, "high": 0.3, "log": True}},
    "min_child_samples": {{"low": 10, "high": 100}},
}}


@pipeline
def tune(source: str, trials: int = 8) -> None:
    data = read_table(source, dataset="transactions")
    train_df, test_df = split(data, by="stratified", label="TX_FRAUD", test_size=0.25)
    booster = LGBMClassifier(n_jobs=1, verbose=-1, random_state=0)
    model, _ = search(train_df, model=booster, space=SPACE, target="TX_FRAUD",
                      features=FEATURES, trials=trials, batch=trials,
                      scoring="average_precision", cv=3, seed=0)
    evaluate(model, test_df)
"""


def part_b(work: Path) -> dict[str, Any]:
    """An 8-trial search on the Ray executor vs the thread executor (trials in sequence)."""
    data = work / "search.parquet"
    if not data.is_file():
        with_features(handbook(("2018-04",)).iloc[:200_000]).to_parquet(data, index=False)
    found: dict[str, dict[str, Any]] = {}
    for executor in ("threads", "ray"):
        root = fresh_project(work, f"search-{executor}")
        (root / "pipeline.py").write_text(SEARCH_PIPELINE.format(features=FEATURES))
        (root / "loopline.yaml").write_text(
            f"pipelines:\n  tune: pipeline.py:tune\nparams:\n  tune:\n    source: {data}\n"
        )
        seconds, _, out = loopline("run", "tune", "--executor", executor, "--json", cwd=root)
        run = json.loads(out)
        from loopline.config import load_settings
        from loopline.core.artifacts import ArtifactStore

        settings = load_settings(root)
        assert settings.artifact_root is not None
        trials = ArtifactStore(settings.artifact_root).load(
            run["steps"]["search"]["outputs"]["trials"]
        )
        found[executor] = {
            "run_s": seconds,
            "search_s": run["steps"]["search"]["duration_s"],
            "best": trials.iloc[0].to_dict(),
        }
    if found["threads"]["best"] != found["ray"]["best"]:
        sys.exit(f"the searches disagree: {found['threads']['best']} vs {found['ray']['best']}")
    return {
        "ratio_search": round(found["threads"]["search_s"] / found["ray"]["search_s"], 3),
        "search_threads_s": round(found["threads"]["search_s"], 2),
        "search_ray_s": round(found["ray"]["search_s"], 2),
        "search_run_threads_s": round(found["threads"]["run_s"], 2),
        "search_run_ray_s": round(found["ray"]["run_s"], 2),
        "search_trials": 8,
        "search_best": found["ray"]["best"],
    }


# -- (c) per-step overhead of the Ray executor ------------------------------------------------

CHAIN_STEPS = 20


def chain_source(steps: int) -> str:
    """A pipeline file: ``steps`` trivial steps, each fed by the one before."""
    lines = ["from loopline import pipeline, step", ""]
    for number in range(steps):
        lines += ["", "@step", f"def s{number:02d}(x: int) -> int:", "    return x + 1", ""]
    lines += ["", "@pipeline", "def chain() -> None:", "    x = s00(0)"]
    lines += [f"    x = s{number:02d}(x)" for number in range(1, steps)]
    return "\n".join(lines) + "\n"


def part_c(work: Path, runs: int = 3) -> dict[str, Any]:
    """Per-step overhead: the same 20-step chain on the Ray executor and on threads."""
    from loopline.config import ExecutorName, load_settings
    from loopline.project import resolve_pipeline

    executors: tuple[ExecutorName, ...] = ("threads", "ray")
    projects = {}
    for executor in executors:
        root = fresh_project(work, f"overhead-{executor}")
        (root / "chain.py").write_text(chain_source(CHAIN_STEPS))
        (root / "loopline.yaml").write_text("pipelines:\n  chain: chain.py:chain\n")
        settings = load_settings(root)
        _, chain = resolve_pipeline(settings, "chain")
        chain.run(settings, cache=False, executor=executor)  # warm-up, not timed
        projects[executor] = (settings, chain)
    times: dict[str, list[float]] = {executor: [] for executor in executors}
    for round_ in range(runs):
        for executor in executors[round_ % 2 :] + executors[: round_ % 2]:
            settings, chain = projects[executor]
            started = time.perf_counter()
            result = chain.run(settings, cache=False, executor=executor)
            times[executor].append(time.perf_counter() - started)
            if result.load(f"s{CHAIN_STEPS - 1:02d}") != CHAIN_STEPS:
                sys.exit(f"the {executor} chain computed a wrong result")
    import ray

    ray.shutdown()
    per_step = {e: statistics.median(t) / CHAIN_STEPS * 1000 for e, t in times.items()}
    return {
        "overhead_ms_per_step_ray": round(per_step["ray"], 1),
        "overhead_ms_per_step_threads": round(per_step["threads"], 1),
        "overhead_steps": CHAIN_STEPS,
        "overhead_run_s": {e: [round(x, 3) for x in t] for e, t in times.items()},
    }


PARTS: dict[str, Callable[[Path], dict[str, Any]]] = {"a": part_a, "b": part_b, "c": part_c}


def main() -> None:
    load_start = start_load()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(PARTS), help="parts to run, e.g. a,b")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (kept)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of part c (median)")
    args = parser.parse_args()
    chosen = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(chosen) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {sorted(PARTS)}")
    work = args.work or Path(tempfile.gettempdir()) / "loopline-scale"
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {}
    for part in chosen:
        figures.update(part_c(work, args.runs) if part == "c" else PARTS[part](work))
        print(f"part {part}: {json.dumps(figures)}", file=sys.stderr, flush=True)
    info = machine_info(load_start, ["loopline", "ray", "optuna", "lightgbm", "pyarrow"])
    print(json.dumps({**figures, "machine": info}))


if __name__ == "__main__":
    main()
