"""Pipeline overhead: `loopline run sentiment` vs the same steps as a plain script.

The work: read and validate the 100k Sentiment140 sample, read the (empty) review queue and
production labels, label, group split, noise audit of 2,000 rows (its flagged rows go to the
review queue), train the template's TF-IDF + logistic regression, evaluate on the test split
and on VADER's human-rated tweets, gate, profile, register in MLflow. The plain script
(:func:`plain_script`) calls the same library functions with the same arguments as the
template's steps (``src/loopline/templates/sentiment.py``, the steps in
``src/loopline/*/steps.py``); the model is ``TextClassifierParams().build()``, the template's
default, so both follow whatever that default becomes. The plain script has no runner, no
cache, no artifact store, no lineage.

Four variants, each run in a fresh process and a fresh project folder, the wall clock
around the whole process (interpreter start, imports, everything):

- ``plain sequential``: the plain script, one step after another, the audit in-process;
- ``plain parallel``: the same steps, the independent ones concurrently as the pipeline's
  DAG allows (``concurrent.futures`` threads, as many as the pipeline's default
  ``max_workers``; the audit in a spawned child process, as the pipeline runs it);
- ``pipeline, 1 worker``: ``LOOPLINE_MAX_WORKERS=1 loopline run sentiment`` (steps one at a
  time: the script checks in the metadata store that no two steps overlapped);
- ``pipeline, default``: ``loopline run sentiment`` with the default workers.

``overhead_ratio_sequential`` = pipeline 1 worker / plain sequential, ``overhead_ratio_
parallel`` = pipeline default / plain parallel, each on the median of ``--runs`` runs (3);
``overhead_ratio`` is the larger. Each round runs the four variants in a rotated order, so
that a change in the machine's load hits every variant alike; before the first round one
untimed process imports every library either side uses and reads the data files, so no
variant pays for a cold disk cache. After each default pipeline run, the pipeline is run
again unchanged in the same project: every step is a cache hit, so ``cached_rerun_s``
(median) measures start-up and look-ups.

What the ratios count as the pipeline's overhead: the ``loopline`` command's start-up,
fingerprinting and cache look-ups, writing every output to the artifact store (the plain
script keeps them in memory and computes the profile without storing it), the metadata and
lineage records, register's look-ups of an existing version; with the default workers
also the spawned child process the audit step asks for and the worker thread that waits
for it (the plain parallel script submits the audit to its process pool directly, so all
its threads stay free for the other steps). With one worker the runner runs the audit in
a thread, as the plain sequential script does (nothing runs beside it to protect from
the GIL). The plain parallel script imports its libraries
before starting threads (the runner serialises imports for the same reason).

    .venv/bin/python benchmarks/pipeline_overhead.py [--runs 3]

The last line is one JSON object: ``overhead_ratio``, ``overhead_ratio_sequential``,
``overhead_ratio_parallel``, ``plain_sequential_s``, ``plain_parallel_s``,
``pipeline_1_worker_s``, ``pipeline_s`` (medians), ``cached_rerun_s``, ``times`` (every
run's wall clock), ``cpu_s`` (median CPU seconds of each variant's process and its
children: less sensitive than wall time to other work on the machine, shown for judging
a busy run, never used in a ratio), ``workers``, the gold accuracies of both sides (they
must match: same work), and ``machine`` (cores, load averages, versions).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _machine import command_env, machine_info, start_load

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "sentiment"
TRAIN = DATA / "sentiment140_train_sample"
GOLD = DATA / "vader" / "tweets_GroundTruth.txt"
LOOPLINE = Path(sys.executable).with_name("loopline")

# The template's settings (src/loopline/templates/sentiment.py), for the plain script.
LABELS = ["negative", "positive"]
MODEL_NAME = "sentiment"
TEST_SIZE = 0.2
AUDIT_ROWS = 2_000
MAX_FLAGGED = 50
PROFILE_ROWS = 5_000
MIN_VALUE = 0.6
SEED = 0

# What the plain parallel script imports before it starts threads.
PARALLEL_PREIMPORTS = (
    "pandas",
    "pyarrow.parquet",
    "sklearn.feature_extraction.text",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "loopline.core.feedback",
    "loopline.core.predlog",
    "loopline.data.ingest",
    "loopline.data.validate",
    "loopline.evaluate.metrics",
    "loopline.label.queue",
    "loopline.monitor.profile",
    "loopline.train.text",
)

VARIANTS = ("plain_sequential", "pipeline_1_worker", "plain_parallel", "pipeline")
TITLES = {
    "plain_sequential": "plain script, sequential",
    "pipeline_1_worker": "loopline run, 1 worker",
    "plain_parallel": "plain script, parallel",
    "pipeline": "loopline run, default workers",
    "cached": "cached re-run",
}


# --------------------------------------------------------------------------- the plain script
def read_text(source: Path) -> Any:
    """The read_text step: load and validate."""
    from loopline.data.ingest import load_source
    from loopline.data.validate import validate_text_dataset

    raw = load_source(
        source, format="auto", encoding=None, text_column="text", label_column="label"
    )
    checked, _report = validate_text_dataset(raw, labels=LABELS)
    return checked


def human_labels(metadata: Any) -> Any:
    """The human_labels step: the review queue's labels."""
    from loopline.label.queue import load_human_labels

    return load_human_labels(metadata, MODEL_NAME)


def production_labels(settings: Any, metadata: Any) -> Any:
    """The production_labels step: served inputs whose true label came back (None: none)."""
    from loopline.core.feedback import LABEL_TRUE, join_feedback, read_feedback
    from loopline.core.predlog import INPUT_PREFIX, read_predictions

    served = read_predictions(settings.prediction_log_url, MODEL_NAME)
    inputs = [c for c in served.columns if c.startswith(INPUT_PREFIX)]
    if served.empty or not inputs:
        return None
    joined, _ = join_feedback(served, read_feedback(metadata, MODEL_NAME))
    labelled = joined[joined[LABEL_TRUE].notna()].drop_duplicates("request_id")
    out = labelled[[*inputs, LABEL_TRUE]].rename(
        columns={**{c: c.removeprefix(INPUT_PREFIX) for c in inputs}, LABEL_TRUE: "label"}
    )
    return out.reset_index(drop=True).assign(label_source="feedback")


def label_and_split(tweets: Any, human: Any, production: Any) -> tuple[Any, Any]:
    """The label and split steps."""
    import pandas as pd

    from loopline.data.split import group_split
    from loopline.label.stage import DEFAULT_TEXT_LFS, label_texts

    combined = tweets
    if production is not None and len(production):
        combined = pd.concat([tweets, production], ignore_index=True)
    labelled, _report = label_texts(
        combined, LABELS, human=human, lfs=DEFAULT_TEXT_LFS, dev_rows=2_000, seed=SEED
    )
    return group_split(
        labelled, test_size=TEST_SIZE, seed=SEED, group_column="text", label_column="label"
    )


def audit(train: Any, metadata_url: str) -> dict[str, Any]:
    """The audit step: confident learning on a sample, flagged rows to the review queue
    with the model's view of them."""
    import numpy as np

    from loopline.core.metadata import MetadataStore
    from loopline.label.audit import noise_audit
    from loopline.label.queue import LabelQueue

    sample = train.sample(min(AUDIT_ROWS, len(train)), random_state=SEED).reset_index(drop=True)
    result = noise_audit(sample["text"], sample["label"], seed=SEED)
    rows = np.asarray(result.issues, dtype=np.int64)
    suggested = result.suggested[rows]
    classes = np.asarray(result.classes, dtype=object)
    view = sample.iloc[rows].assign(
        given_label=sample["label"].iloc[rows].to_numpy(),
        model_label=classes[suggested],
        model_probability=result.oof_proba[rows, suggested].round(4),
        given_label_probability=result.scores[rows].round(4),
    )
    flagged = view.drop_duplicates("text").head(MAX_FLAGGED)
    columns = ["text", "given_label", "model_label", "model_probability", "given_label_probability"]
    store = MetadataStore(metadata_url)
    try:
        queued = LabelQueue(store, MODEL_NAME, labels=LABELS).add_items(
            flagged[columns], source="noise_audit", priority=1.0
        )
    finally:
        store.close()
    return {"flagged": len(result.issues), "queued": queued}


def train_model(train: Any) -> Any:
    """The train step with the template's model."""
    from loopline.train.model import fit_model
    from loopline.train.text import TextClassifierParams

    return fit_model(
        train,
        TextClassifierParams().build(),
        features=["text"],
        target="label",
        sample_weight="sample_weight",
    )


def evaluate(model: Any, data: Any) -> dict[str, Any]:
    """The evaluate step."""
    from loopline.evaluate.metrics import evaluate_model

    return evaluate_model(
        model, data, target=model.target, features=model.features, task=model.task
    )


def gate(metrics: dict[str, Any], metadata: Any) -> dict[str, Any]:
    """The gate step (a fresh project has no champion to evaluate)."""
    from loopline.evaluate.gate import GateRules, decide
    from loopline.registry.models import CHAMPION

    champion = metadata.current_alias(MODEL_NAME, CHAMPION)
    if champion is not None:
        raise SystemExit("the plain script expects a fresh project without a champion")
    rules = GateRules(metric="macro_f1", min_value=MIN_VALUE, min_improvement=0.001)
    return decide(metrics, None, rules).to_dict()


def profile(model: Any, test: Any) -> dict[str, Any]:
    """The profile step with the template's arguments (``text=["text"]``)."""
    from loopline.monitor.profile import build_profile

    sample = test.sample(min(PROFILE_ROWS, len(test)), random_state=SEED)
    frame = sample[model.features].reset_index(drop=True)
    proba = model.predict_proba(sample)
    classes = model.classes_
    frame["prediction"] = [classes[i] for i in proba.argmax(axis=1)]
    for i, name in enumerate(classes):
        frame[f"proba.{name}"] = proba[:, i]
    frame[model.target] = sample[model.target].to_numpy().astype(str)
    return build_profile(
        frame,
        numeric=[],
        categorical=[],
        text=["text"],
        prediction="prediction",
        probabilities=[f"proba.{c}" for c in classes],
        labels=model.target,
        slices=None,
    ).to_dict()


def register(model: Any, decision: dict[str, Any], test: Any, settings: Any, metadata: Any) -> str:
    """The register step: log and register in MLflow, promote when the gate passed."""
    from loopline.registry.project import open_registry

    registry = open_registry(settings, metadata)
    estimator = model.estimator
    params = {
        "estimator": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        "features": ", ".join(model.features),
        "target": model.target,
        "task": model.task,
        **{k: v for k, v in estimator.get_params(deep=False).items() if not k.startswith("_")},
    }
    info = registry.register(
        model,
        name=MODEL_NAME,
        params=params,
        metrics=decision.get("candidate") or {},
        dataset_version="plain",
        input_example=test[model.features].head(5).reset_index(drop=True),
        tags={"loopline.gate": "passed" if decision["passed"] else "failed"},
    )
    if decision["passed"]:
        registry.promote(MODEL_NAME, info.version, actor="plain script", reason="gate passed")
    return str(info.version)


def plain_script(project: Path, parallel: bool, workers: int) -> dict[str, Any]:
    """The template's steps called directly, in order or with the DAG's parallelism."""
    from loopline.config import load_settings
    from loopline.core.metadata import MetadataStore

    settings = load_settings(project)
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    assert settings.metadata_url
    metadata = MetadataStore(settings.metadata_url)
    if not parallel:
        tweets, gold = read_text(TRAIN), read_text(GOLD)
        train, test = label_and_split(
            tweets, human_labels(metadata), production_labels(settings, metadata)
        )
        audited = audit(train, settings.metadata_url)
        model = train_model(train)
        metrics, gold_metrics = evaluate(model, test), evaluate(model, gold)
        decision = gate(metrics, metadata)
        profile(model, test)
        version = register(model, decision, test, settings, metadata)
    else:
        version, metrics, gold_metrics, audited = _plain_parallel(settings, metadata, workers)
    metadata.close()
    return {
        "test_accuracy": metrics["accuracy"],
        "gold_accuracy": gold_metrics["accuracy"],
        "audit": audited,
        "version": version,
    }


def _plain_parallel(settings: Any, metadata: Any, workers: int) -> tuple[Any, ...]:
    """The DAG's parallelism by hand: the four reads together; label and split; the audit
    (in a child process) beside train; both evaluations and the profile together, the gate
    after the first; register last. The profile is computed, not stored, as before."""
    import concurrent.futures as cf
    import importlib
    import multiprocessing

    # Threads importing scikit-learn for the first time at once can break: import up front.
    for module in PARALLEL_PREIMPORTS:
        importlib.import_module(module)

    spawn = multiprocessing.get_context("spawn")
    with (
        cf.ThreadPoolExecutor(workers) as threads,
        cf.ProcessPoolExecutor(1, mp_context=spawn) as processes,
    ):
        tweets = threads.submit(read_text, TRAIN)
        human = threads.submit(human_labels, metadata)
        production = threads.submit(production_labels, settings, metadata)
        gold = threads.submit(read_text, GOLD)
        train, test = label_and_split(tweets.result(), human.result(), production.result())
        audited = processes.submit(audit, train, settings.metadata_url)
        model = train_model(train)
        metrics = threads.submit(evaluate, model, test)
        gold_metrics = threads.submit(evaluate, model, gold.result())
        reference = threads.submit(profile, model, test)
        decision = gate(metrics.result(), metadata)
        reference.result()
        version = register(model, decision, test, settings, metadata)
        return version, metrics.result(), gold_metrics.result(), audited.result()


# --------------------------------------------------------------------------- measuring
def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds of the process and its children, stdout)."""
    cpu_before = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    return elapsed, _children_cpu() - cpu_before, done.stdout


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def warm_up(env: dict[str, str]) -> None:
    """Untimed: import what either side imports and read the data files once."""
    code = (
        "import loopline.cli, loopline.steps, loopline.train.text, sklearn.linear_model, "
        "sklearn.feature_extraction.text, mlflow, pandas, sqlalchemy\n"
        "import pathlib\n"
        f"for root in {[str(TRAIN), str(GOLD)]!r}:\n"
        "    p = pathlib.Path(root)\n"
        "    for f in ([p] if p.is_file() else sorted(p.rglob('*'))):\n"
        "        f.is_file() and f.read_bytes()\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)


def step_overlap(project: Path) -> int:
    """The most steps of the project's first run that were running at the same moment."""
    db = sqlite3.connect(project / ".loopline" / "metadata.db")
    try:
        rows = db.execute(
            "SELECT started_at, ended_at FROM step_runs WHERE run_id = "
            "(SELECT run_id FROM step_runs ORDER BY started_at LIMIT 1)"
        ).fetchall()
    finally:
        db.close()
    events = []
    for started, ended in rows:
        events += [
            (datetime.fromisoformat(str(started)), 1),
            (datetime.fromisoformat(str(ended)), -1),
        ]
    most = now = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start
        now += delta
        most = max(most, now)
    return most


def pipeline_gold_accuracy(project: Path, summary: dict[str, Any]) -> float:
    """The gold accuracy the pipeline's second evaluate step stored (after the clock)."""
    from loopline.core.artifacts import ArtifactStore

    outputs = summary["steps"]["evaluate_2"]["outputs"]
    store = ArtifactStore(str(project / ".loopline" / "artifacts"))
    return float(store.load(next(iter(outputs.values())))["accuracy"])


def default_workers() -> int:
    from loopline.config import Settings

    return Settings().max_workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="rounds of the four variants")
    parser.add_argument("--plain", choices=("sequential", "parallel"), help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        result = plain_script(args.project, args.plain == "parallel", args.workers)
        print(json.dumps(result))
        return

    if args.runs < 1:
        parser.error("--runs must be at least 1")
    load_start = start_load()
    # "Default workers" means the library's default, whatever this shell sets.
    os.environ.pop("LOOPLINE_MAX_WORKERS", None)
    workers = default_workers()
    base_env = command_env(MLFLOW_DISABLE_TELEMETRY="true")
    run_cmd = [str(LOOPLINE), "run", "sentiment", "--json", "--param", f"source={TRAIN}"]
    run_cmd += ["--param", f"gold={GOLD}"]
    commands = {
        "plain_sequential": ([sys.executable, __file__, "--plain", "sequential"], {}),
        "plain_parallel": (
            [sys.executable, __file__, "--plain", "parallel", "--workers", str(workers)],
            {},
        ),
        "pipeline_1_worker": (run_cmd, {"LOOPLINE_MAX_WORKERS": "1"}),
        "pipeline": (run_cmd, {}),
    }
    times: dict[str, list[float]] = {name: [] for name in [*VARIANTS, "cached"]}
    cpu: dict[str, list[float]] = {name: [] for name in [*VARIANTS, "cached"]}
    gold: dict[str, list[float]] = {name: [] for name in VARIANTS}
    overlap: dict[str, list[int]] = {"pipeline_1_worker": [], "pipeline": []}
    hits: list[str] = []
    print(
        f"{args.runs} round(s) of {len(VARIANTS)} variants, default workers {workers}, "
        f"{os.cpu_count()} cores, load average at start {load_start}"
    )
    warm_up(base_env)
    scratch = Path(tempfile.mkdtemp(prefix="loopline-bench-"))
    try:
        for round_no in range(args.runs):
            order = VARIANTS[round_no % 4 :] + VARIANTS[: round_no % 4]
            for name in order:
                project = scratch / f"{name}-{round_no}"
                project.mkdir()
                cmd, extra = commands[name]
                if name.startswith("plain"):
                    cmd = [*cmd, "--project", str(project)]
                seconds, cpu_s, out = timed(cmd, project, {**base_env, **extra})
                times[name].append(seconds)
                cpu[name].append(cpu_s)
                result = json.loads(out)
                if name.startswith("plain"):
                    gold[name].append(result["gold_accuracy"])
                else:
                    gold[name].append(pipeline_gold_accuracy(project, result))
                    overlap[name].append(step_overlap(project))
                if name == "pipeline":
                    cached_s, cached_cpu, cached_out = timed(run_cmd, project, base_env)
                    times["cached"].append(cached_s)
                    cpu["cached"].append(cached_cpu)
                    cached = json.loads(cached_out)
                    hits.append(f"{cached['cache_hits']}/{len(cached['steps'])}")
                print(f"  round {round_no + 1}: {TITLES[name]:<30} {seconds:7.2f} s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    median = {name: statistics.median(values) for name, values in times.items()}
    ratio_seq = median["pipeline_1_worker"] / median["plain_sequential"]
    ratio_par = median["pipeline"] / median["plain_parallel"]
    cpu_median = {name: statistics.median(values) for name, values in cpu.items()}
    print(f"\n{'':32}{'wall (median)':>14}{'CPU (median)':>14}   wall of each run")
    for name in [*VARIANTS, "cached"]:
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{TITLES[name]:<32}{median[name]:12.2f} s{cpu_median[name]:12.2f} s   [{runs}]")
    print(f"overhead, sequential (1 worker vs plain sequential): {ratio_seq:.3f}x")
    print(f"overhead, parallel ({workers} workers vs plain parallel):  {ratio_par:.3f}x")
    print(f"cached re-run: {', '.join(hits)} steps from cache")
    print(
        "most steps running at once: 1 worker "
        f"{max(overlap['pipeline_1_worker'])}, default {max(overlap['pipeline'])}"
    )
    accuracies = {name: sorted({round(a, 4) for a in values}) for name, values in gold.items()}
    print("gold accuracy: " + ", ".join(f"{TITLES[n]} {a}" for n, a in accuracies.items()))
    if len({a for values in accuracies.values() for a in values}) > 1:
        print("WARNING: the variants' gold accuracies differ: they did not train the same model")
    summary = {
        "overhead_ratio": round(max(ratio_seq, ratio_par), 3),
        "overhead_ratio_sequential": round(ratio_seq, 3),
        "overhead_ratio_parallel": round(ratio_par, 3),
        "plain_sequential_s": round(median["plain_sequential"], 2),
        "plain_parallel_s": round(median["plain_parallel"], 2),
        "pipeline_1_worker_s": round(median["pipeline_1_worker"], 2),
        "pipeline_s": round(median["pipeline"], 2),
        "cached_rerun_s": round(median["cached"], 2),
        "cached_hits": hits[-1] if hits else None,
        "runs": args.runs,
        "workers": workers,
        "times": {name: [round(t, 2) for t in values] for name, values in times.items()},
        "cpu_s": {name: round(value, 2) for name, value in cpu_median.items()},
        "max_steps_at_once": {name: max(values) for name, values in overlap.items()},
        "gold_accuracy": {name: values[-1] for name, values in accuracies.items()},
        "machine": machine_info(
            load_start, ["loopline", "scikit-learn", "pandas", "mlflow-skinny", "numpy"]
        ),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
