"""Starter projects written by ``loopline init``."""

from __future__ import annotations

from pathlib import Path

from loopline.errors import LooplineError

_SENTIMENT_CONFIG = """\
# Loopline project settings. Every location can be a server instead:
#   metadata_url: postgresql://user@host/db     artifact_root: s3://bucket/artifacts
#   mlflow_tracking_uri: http://mlflow:5000     (or LOOPLINE_* environment variables)
pipelines:
  sentiment: pipeline.py:sentiment
params:
  sentiment:
    source: data/tweets.csv
"""

_SENTIMENT_PIPELINE = '''\
"""Tweet sentiment: ingest (+ validate), label, split, train, audit, evaluate, gate, register.

The steps come from Loopline's reference system; replace any of them with your own
@step function. Run with `loopline run sentiment`, serve with `loopline serve sentiment`.
"""

from loopline import pipeline
from loopline.examples.sentiment.pipeline import (
    audit,
    evaluate,
    gate,
    human_labels,
    ingest,
    label,
    production_labels,
    profile,
    register,
    split,
    train,
)


@pipeline
def sentiment(source: str = "data/tweets.csv", test_size: float = 0.2, seed: int = 0) -> None:
    data, _report = ingest(source)  # read + validate: bad data stops here
    # + people's labels from the review queue and true labels sent back by production
    labelled, _label_report = label(data, human_labels(), production_labels())
    train_df, test_df = split(labelled, test_size=test_size, seed=seed)
    audit(train_df)  # likely mislabelled rows go to the review queue
    model = train(train_df, seed=seed)
    metrics = evaluate(model, test_df)
    decision = gate(model, metrics, test_df, None, None)
    register(model, model, data, profile(model, test_df), metrics, decision)
'''

TEMPLATES = ("sentiment",)


def write_template(directory: Path, template: str) -> list[Path]:
    """Create the starter files of ``template`` in ``directory``; never overwrite."""
    if template not in TEMPLATES:
        raise LooplineError(
            f"unknown template {template!r}", hint="available: " + ", ".join(TEMPLATES)
        )
    from loopline.examples.sentiment.synthetic import generate_tweets

    files = {
        directory / "loopline.yaml": _SENTIMENT_CONFIG,
        directory / "pipeline.py": _SENTIMENT_PIPELINE,
    }
    clashes = [str(p) for p in [*files, directory / "data" / "tweets.csv"] if p.exists()]
    if clashes:
        raise LooplineError(
            f"not overwriting existing files: {', '.join(clashes)}",
            hint="choose an empty folder: loopline init NEW_DIR",
        )
    (directory / "data").mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    tweets = directory / "data" / "tweets.csv"
    generate_tweets().to_csv(tweets, index=False)
    return [*files, tweets]
