"""Pipeline overhead: `loopline run sentiment` vs the same steps as a plain script.

Both train on the 100k Sentiment140 sample and evaluate on VADER's human-rated tweets,
each in a fresh process and a fresh project, side by side in one run. Then the pipeline is
run again unchanged: every step is a cache hit, so that run measures start-up and look-ups.

    .venv/bin/python benchmarks/pipeline_overhead.py

The last line is one JSON object:
{"overhead_ratio", "pipeline_s", "plain_s", "cached_rerun_s", ...}
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "sentiment"
TRAIN = DATA / "sentiment140_train_sample"
GOLD = DATA / "vader" / "tweets_GroundTruth.txt"
LOOPLINE = Path(sys.executable).with_name("loopline")


def plain_script(project: Path) -> dict[str, float]:
    """The same steps, called directly: no runner, no cache, no artifact store."""
    import pandas as pd

    from loopline.core.metadata import MetadataStore
    from loopline.data.ingest import load_source
    from loopline.data.split import group_split
    from loopline.data.validate import validate_text_dataset
    from loopline.evaluate.gate import GateRules, decide
    from loopline.evaluate.metrics import evaluate_classifier
    from loopline.label.audit import noise_audit
    from loopline.label.queue import LabelQueue, load_human_labels
    from loopline.label.stage import label_texts
    from loopline.monitor.profile import build_profile
    from loopline.registry.models import ModelRegistry
    from loopline.train.text import TextClassifierParams, train_text_classifier

    labels = ["negative", "positive"]
    store = MetadataStore(f"sqlite:///{project / 'metadata.db'}")
    data, _ = validate_text_dataset(load_source(TRAIN), labels=labels)
    labelled, _ = label_texts(data, labels, human=load_human_labels(store, "sentiment"))
    train, test = group_split(labelled)
    sample = train.sample(2000, random_state=0).reset_index(drop=True)
    flagged = sample.iloc[noise_audit(sample["text"], sample["label"]).issues[:50]]
    LabelQueue(store, "sentiment", labels=labels).add_items(
        flagged[["text"]], source="noise_audit", priority=1.0
    )
    model = train_text_classifier(
        train[["text", "label"]], TextClassifierParams(), sample_weight=train["sample_weight"]
    )
    metrics = evaluate_classifier(model, test)
    sample = test.sample(5_000, random_state=0)
    proba = model.predict_proba(sample[["text"]])
    classes = [str(c) for c in model.classes_]
    reference = sample[["text", "label"]].assign(prediction=[classes[i] for i in proba.argmax(1)])
    for i, name in enumerate(classes):
        reference[f"proba.{name}"] = proba[:, i]
    build_profile(
        reference,
        text=["text"],
        prediction="prediction",
        probabilities=[f"proba.{c}" for c in classes],
        labels="label",
    )
    gold, _ = validate_text_dataset(load_source(GOLD), labels=labels)
    gold_metrics = evaluate_classifier(model, gold)
    decision = decide(metrics, None, GateRules(min_value=0.6))
    registry = ModelRegistry(
        f"sqlite:///{project / 'mlflow.db'}",
        artifact_location=(project / "mlruns").as_uri(),
        history=store,
    )
    info = registry.register(
        model,
        name="sentiment",
        params=TextClassifierParams().to_dict(),
        metrics={"test_accuracy": metrics["accuracy"], "gold_accuracy": gold_metrics["accuracy"]},
        dataset_version="plain",
        input_example=pd.DataFrame({"text": ["good", "bad"]}),
    )
    if decision.passed:
        registry.promote("sentiment", info.version, reason="plain script", actor="benchmark")
    return {"test_accuracy": metrics["accuracy"], "gold_accuracy": gold_metrics["accuracy"]}


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--plain":
        print(json.dumps(plain_script(Path(sys.argv[2]))))
        return
    scratch = Path(tempfile.mkdtemp(prefix="loopline-bench-"))
    try:
        plain_dir, pipe_dir = scratch / "plain", scratch / "pipeline"
        plain_dir.mkdir()
        pipe_dir.mkdir()
        plain_s, plain_out = timed([sys.executable, __file__, "--plain", str(plain_dir)], plain_dir)
        run_cmd = [
            str(LOOPLINE),
            "run",
            "sentiment",
            "--json",
            "--param",
            f"source={TRAIN}",
            "--param",
            f"gold={GOLD}",
        ]
        pipeline_s, _ = timed(run_cmd, pipe_dir)
        cached_s, cached_out = timed(run_cmd, pipe_dir)
        cached = json.loads(cached_out)
        plain = json.loads(plain_out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    steps = len(cached["steps"])
    print(
        f"plain script             {plain_s:8.2f} s   (gold accuracy {plain['gold_accuracy']:.3f})"
    )
    print(f"loopline run sentiment   {pipeline_s:8.2f} s   ratio {pipeline_s / plain_s:.3f}x")
    print(
        f"cached re-run            {cached_s:8.2f} s   ({cached['cache_hits']}/{steps} cache hits)"
    )
    print(
        json.dumps(
            {
                "overhead_ratio": round(pipeline_s / plain_s, 3),
                "pipeline_s": round(pipeline_s, 2),
                "plain_s": round(plain_s, 2),
                "cached_rerun_s": round(cached_s, 2),
                "cached_hits": cached["cache_hits"],
                "steps": steps,
                "gold_accuracy_plain": round(plain["gold_accuracy"], 4),
            }
        )
    )


if __name__ == "__main__":
    main()
