"""Tweet sentiment: read + validate, label, split, audit, train, evaluate, gate, register.

Run it with `loopline run sentiment`, serve the champion with `loopline serve sentiment`.
Every step comes ready from loopline.steps; replace any with your own @step function.
"""

from loopline import pipeline
from loopline.steps import (
    audit,
    evaluate,
    gate,
    human_labels,
    label,
    production_labels,
    profile,
    read_text,
    register,
    split,
    train,
)
from loopline.train.text import TextClassifierParams

LABELS = ["negative", "positive"]


@pipeline
def sentiment(
    source: str = "data/tweets.csv",
    gold: str | None = None,
    model_name: str = "sentiment",
    test_size: float = 0.2,
    audit_rows: int = 2_000,
    C: float = 1.0,
    seed: int = 0,
) -> None:
    """Train a tweet sentiment model; it replaces the champion only if it is better."""
    tweets = read_text(source, labels=LABELS, dataset="tweets")
    people, production = human_labels(queue=model_name), production_labels(model_name=model_name)
    labelled, _ = label(tweets, people, production, labels=LABELS, seed=seed)
    train_df, test_df = split(
        labelled, by="group", group="text", label="label", test_size=test_size, seed=seed
    )
    if audit_rows:  # likely mislabelled rows go to the review queue
        audit(train_df, queue=model_name, labels=LABELS, max_rows=audit_rows, seed=seed)
    text_model = TextClassifierParams(C=C, seed=seed)  # word + character TF-IDF, logistic
    model = train(train_df, model=text_model, features=["text"], target="label",
                  sample_weight="sample_weight")  # fmt: skip
    metrics = evaluate(model, test_df)
    if gold:  # a human-labelled set from elsewhere: reported, never used to decide
        evaluate(model, read_text(gold, labels=LABELS, dataset="gold"))
    decision = gate(model, test_df, metrics, model_name=model_name, min_value=0.6)
    register(model, decision, example=test_df, reference=profile(model, test_df, text=["text"]))
