r"""The sentiment reference system: raw tweets to a registered, gated model.

    ingest (read + validate) ---+-> label -> split -> train -> evaluate -> gate -> register
    human_labels (queue) -------+             \-> audit (noise audit -> review queue)
    production_labels (feedback)+

Each step is a plain function; the runner caches, versions and records them. Heavy
libraries are imported inside steps, so a fully cached run never loads scikit-learn,
pandas or MLflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline import pipeline, step
from loopline.core.pipeline import ArtifactInfo

if TYPE_CHECKING:
    import pandas as pd

    from loopline.core.runner import RunContext

MODEL_NAME = "sentiment"
LABELS = ("negative", "positive")


def _read_valid(
    source: str | Path, fmt: str, encoding: str | None, labels: list[str] | None
) -> tuple[pd.DataFrame, dict]:
    from loopline.data.ingest import load_source
    from loopline.data.validate import validate_text_dataset

    raw = load_source(source, format=fmt, encoding=encoding)  # type: ignore[arg-type]
    return validate_text_dataset(raw, labels=labels or list(LABELS))


# Reading and validating are one step on purpose: data that fails validation never
# reaches the artifact store or becomes a dataset version.
@step(outputs=("data", "report"), dataset="tweets")
def ingest(
    source: str | Path,
    fmt: str = "auto",
    encoding: str | None = None,
    labels: list[str] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Read the training tweets and check schema and quality; violations stop the run.

    Formats: Sentiment140 CSV, text-per-line files, VADER TSV, CSV/Parquet, or a URL.
    """
    return _read_valid(source, fmt, encoding, labels)


@step(outputs=("data", "report"), dataset="gold")
def ingest_gold(
    source: str | Path,
    fmt: str = "auto",
    encoding: str | None = None,
    labels: list[str] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Read and check a human-labelled gold set used only for evaluation."""
    return _read_valid(source, fmt, encoding, labels)


def _queue_state(ctx: RunContext, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """Human labels live in the review queue: its annotations are part of the cache key."""
    from loopline.label.queue import annotation_watermark

    return annotation_watermark(ctx.metadata, params["queue"])


@step(dataset="human_labels", cache_extra=_queue_state)
def human_labels(ctx: RunContext, queue: str = MODEL_NAME) -> pd.DataFrame:
    """The labels people gave in the review queue (empty until someone labels)."""
    from loopline.label.queue import load_human_labels

    return load_human_labels(ctx.metadata, queue)


def _feedback_state(ctx: RunContext, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """Production labels arrive through /feedback: the feedback table is in the cache key."""
    from loopline.serve.feedback import feedback_watermark

    return feedback_watermark(ctx.metadata, params["model_name"])


@step(dataset="production_labels", cache_extra=_feedback_state)
def production_labels(ctx: RunContext, model_name: str = MODEL_NAME) -> pd.DataFrame:
    """Served inputs whose true label came back through ``POST /feedback``."""
    import pandas as pd

    from loopline.serve.feedback import join_feedback, read_feedback
    from loopline.serve.predlog import read_predictions

    assert ctx.settings.prediction_log_url
    served = read_predictions(ctx.settings.prediction_log_url, model_name)
    empty = pd.DataFrame({"text": pd.Series(dtype="str"), "label": pd.Series(dtype="str")})
    if served.empty or "input.text" not in served:
        return empty.assign(label_source=pd.Series(dtype="str"))
    joined, _unmatched = join_feedback(served, read_feedback(ctx.metadata, model_name))
    # One row per request (a shadow copy shares its request's label).
    labelled = joined[joined["label_true"].notna()].drop_duplicates("request_id")
    out = labelled[["input.text", "label_true"]].set_axis(["text", "label"], axis=1)
    return out.reset_index(drop=True).assign(label_source="feedback")


@step(outputs=("labelled", "report"))
def label(
    data: pd.DataFrame,
    human: pd.DataFrame,
    production: pd.DataFrame,
    dev_rows: int = 2_000,
    seed: int = 0,
) -> Any:
    """Given and production labels, then LFs + label model for gaps, then human overrides."""
    import pandas as pd

    from loopline.label.stage import label_texts

    combined = pd.concat([data, production], ignore_index=True) if len(production) else data
    return label_texts(combined, LABELS, human=human, dev_rows=dev_rows, seed=seed)


# Cross-validating a text model holds the GIL: a child process keeps it off train's back.
@step(executor="processes")
def audit(
    train: pd.DataFrame,
    ctx: RunContext,
    queue: str = MODEL_NAME,
    max_rows: int = 2_000,
    max_flagged: int = 50,
    seed: int = 0,
) -> dict:
    """Flag likely mislabelled training rows (confident learning) and queue them for review."""
    from loopline.label.audit import noise_audit
    from loopline.label.queue import LabelQueue

    sample = train.sample(min(max_rows, len(train)), random_state=seed).reset_index(drop=True)
    result = noise_audit(sample["text"], sample["label"], seed=seed)
    # A text repeated in the data is one item for a reviewer.
    flagged = sample.iloc[result.issues].drop_duplicates("text").head(max_flagged)
    review = LabelQueue(ctx.metadata, queue, labels=list(LABELS))
    added = review.add_items(
        flagged[["text"]].assign(given_label=flagged["label"]),
        source="noise_audit",
        priority=1.0,
    )
    return {
        "audited_rows": len(sample),
        "flagged": len(result.issues),
        "queued": added,
        "examples": flagged[["text", "label"]].head(5).to_dict("records"),
    }


@step(outputs=("train", "test"))
def split(labelled: pd.DataFrame, test_size: float = 0.2, seed: int = 0) -> tuple[Any, Any]:
    """Stratified, seeded split; duplicate texts stay on one side."""
    from loopline.data.split import group_split

    return group_split(labelled, test_size=test_size, seed=seed)


@step
def train(train: pd.DataFrame, C: float | None = None, seed: int = 0) -> Any:
    """TF-IDF (word + character n-grams) and logistic regression."""
    from dataclasses import replace

    from loopline.train.text import TextClassifierParams, train_text_classifier

    params = TextClassifierParams(seed=seed)
    if C is not None:
        params = replace(params, C=C)
    weights = train["sample_weight"].to_numpy() if "sample_weight" in train else None
    return train_text_classifier(train[["text", "label"]], params, sample_weight=weights)


@step
def evaluate(model: Any, data: pd.DataFrame) -> dict:
    """Accuracy, macro-F1, ROC-AUC, confusion matrix and per-slice metrics."""
    from loopline.evaluate.metrics import evaluate_classifier

    return evaluate_classifier(model, data)


@step
def profile(model: Any, test: pd.DataFrame, max_rows: int = 5_000, seed: int = 0) -> dict:
    """The reference profile monitoring compares live traffic with: text and prediction
    distributions and performance by slice, on held-out data the model did not train on.

    A seeded sample of ``max_rows`` is plenty for a reference and keeps this step cheap.
    """
    from loopline.monitor.profile import build_profile

    sample = test.sample(min(max_rows, len(test)), random_state=seed)
    proba = model.predict_proba(sample[["text"]])
    classes = [str(c) for c in model.classes_]
    frame = sample[["text", "label"]].assign(prediction=[classes[i] for i in proba.argmax(1)])
    for i, name in enumerate(classes):
        frame[f"proba.{name}"] = proba[:, i]
    return build_profile(
        frame,
        text=["text"],
        prediction="prediction",
        probabilities=[f"proba.{name}" for name in classes],
        labels="label",
    ).to_dict()


def _champion_key(ctx: RunContext, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """Gate and register depend on the current champion: its model is part of their key.

    When the candidate itself is champion, the key is the one it had when it was promoted
    (the model it replaced, now ``previous``), so re-running an unchanged pipeline after a
    promotion is still a full cache hit.
    """
    name = params["model_name"]

    def model_of(version: str | None) -> str:
        if version is None:
            return "none"
        lineage = ctx.metadata.model_version(name, version)
        return lineage["model_hash"] if lineage else f"v{version}"

    champion = model_of(ctx.metadata.current_alias(name, "champion"))
    if champion == inputs.get("model_artifact"):
        return f"champion={model_of(ctx.metadata.current_alias(name, 'previous'))}"
    return f"champion={champion}"


@step(cache_extra=_champion_key)
def gate(
    model_artifact: ArtifactInfo,
    candidate: dict,
    test: pd.DataFrame,
    gold_metrics: dict | None,
    gold: pd.DataFrame | None,
    ctx: RunContext,
    model_name: str = MODEL_NAME,
    metric: str = "macro_f1",
    min_value: float = 0.6,
    max_regression: float = 0.0,
) -> dict:
    """Compare the candidate with the current champion on the same evaluation data."""
    from loopline.evaluate.gate import GateRules, decide
    from loopline.evaluate.metrics import evaluate_classifier
    from loopline.registry.project import open_registry

    rules = GateRules(metric=metric, min_value=min_value, max_regression=max_regression)
    champion_version = ctx.metadata.current_alias(model_name, "champion")
    champion_metrics = None
    if champion_version is not None:
        registry = open_registry(ctx.settings, ctx.metadata)
        champion = registry.load(f"{model_name}/{champion_version}")
        champion_metrics = evaluate_classifier(champion.model, test)
    decision = decide(candidate, champion_metrics, rules).to_dict()
    decision["champion_version"] = champion_version
    if gold_metrics is not None:
        decision["gold"] = gold_metrics
    return decision


@step(cache_extra=_champion_key)
def register(
    model: Any,
    model_artifact: ArtifactInfo,
    data: ArtifactInfo,
    reference: ArtifactInfo,
    metrics: dict,
    decision: dict,
    ctx: RunContext,
    model_name: str = MODEL_NAME,
) -> dict:
    """Register the candidate in MLflow; move ``champion`` only if the gate passed."""
    from loopline.registry.project import open_registry
    from loopline.train.text import TextClassifierParams

    registry = open_registry(ctx.settings, ctx.metadata)
    existing = registry.find_version(model_name, "loopline.model_hash", model_artifact.hash)
    if existing is None:
        import pandas as pd

        saved = ctx.artifacts.local_folder(model_artifact.hash) / "model"
        flat = {f"test_{k}": v for k, v in metrics.items() if isinstance(v, int | float)}
        gold = decision.get("gold") or {}
        flat |= {f"gold_{k}": v for k, v in gold.items() if isinstance(v, int | float)}
        existing = registry.register(
            model,
            name=model_name,
            params=TextClassifierParams().to_dict(),
            metrics=flat,
            dataset_version=data.label,
            input_example=pd.DataFrame({"text": ["what a great day :)", "this is awful"]}),
            saved_model=saved if (saved / "MLmodel").is_file() else None,
            tags={
                "loopline.model_hash": model_artifact.hash,
                "loopline.dataset_hash": data.hash,
                "loopline.run_id": ctx.run_id,
                "loopline.gate": "passed" if decision["passed"] else "failed",
            },
        )
    ctx.metadata.record_model_version(
        model_name=model_name,
        version=existing.version,
        model_hash=model_artifact.hash,
        dataset_hash=data.hash,
        dataset_version=data.label,
        mlflow_run_id=existing.run_id,
        run_id=ctx.run_id,
        profile_hash=reference.hash,
    )
    promoted = bool(decision["passed"]) and decision.get("champion_version") != existing.version
    if promoted:
        registry.promote(
            model_name,
            existing.version,
            actor="loopline run",
            run_id=ctx.run_id,
            reason="gate passed: " + "; ".join(decision["reasons"]),
        )
    return {
        "model_name": model_name,
        "version": existing.version,
        "run_id": existing.run_id,
        "promoted": promoted,
        "champion": ctx.metadata.current_alias(model_name, "champion"),
        "dataset_version": data.label,
    }


@pipeline
def sentiment(
    source: str,
    gold: str | None = None,
    fmt: str = "auto",
    encoding: str | None = None,
    audit_rows: int = 2_000,
    test_size: float = 0.2,
    seed: int = 0,
    C: float | None = None,
    model_name: str = MODEL_NAME,
    gate_metric: str = "macro_f1",
    gate_min_value: float = 0.6,
    gate_max_regression: float = 0.0,
) -> None:
    """Train, evaluate and (if it beats the champion) promote a tweet sentiment model."""
    data, _report = ingest(source, fmt=fmt, encoding=encoding)
    labelled, _label_report = label(
        data, human_labels(queue=model_name), production_labels(model_name=model_name), seed=seed
    )
    train_df, test_df = split(labelled, test_size=test_size, seed=seed)
    if audit_rows > 0:
        audit(train_df, queue=model_name, max_rows=audit_rows, seed=seed)
    model = train(train_df, C=C, seed=seed)
    metrics = evaluate(model, test_df)
    gold_df = gold_metrics = None
    if gold:
        gold_df, _gold_report = ingest_gold(gold)
        gold_metrics = evaluate(model, gold_df)
    decision = gate(
        model,
        metrics,
        test_df,
        gold_metrics,
        gold_df,
        model_name=model_name,
        metric=gate_metric,
        min_value=gate_min_value,
        max_regression=gate_max_regression,
    )
    register(model, model, data, profile(model, test_df), metrics, decision, model_name=model_name)
