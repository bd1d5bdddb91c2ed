"""The sentiment label stage: given labels, label model over LFs, human overrides."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from loopline.label.lf import labeling_function
from loopline.label.stage import label_texts

LABELS = ("negative", "positive")


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [
                "I love it :)",
                "awful day :(",
                "what a great wonderful day",
                "this is terrible and sad",
                "the bus",
                "so happy :)",
            ],
            "label": ["positive", "negative", None, None, None, None],
        }
    )


def test_given_labels_stay_and_gaps_get_label_model_labels() -> None:
    out, report = label_texts(frame(), LABELS)
    by_text = out.set_index("text")
    assert by_text.loc["I love it :)", "label_source"] == "given"
    assert by_text.loc["I love it :)", "sample_weight"] == 1.0
    assert by_text.loc["what a great wonderful day", "label"] == "positive"
    assert by_text.loc["this is terrible and sad", "label"] == "negative"
    assert by_text.loc["so happy :)", "label_source"] == "label_model"
    assert set(by_text.loc["so happy :)", "lfs"].split(",")) == {"emoticon", "vader"}
    assert 0.5 < by_text.loc["so happy :)", "sample_weight"] <= 1.0
    assert "the bus" not in by_text.index  # no LF voted: dropped and counted
    assert report["unlabelled_dropped"] == 1
    assert report["label_sources"] == {"label_model": 3, "given": 2}
    assert [row["lf"] for row in report["lf_summary"]] == ["emoticon", "vader"]


def test_human_labels_override_weak_and_given_labels() -> None:
    human = pd.DataFrame({"text": ["the bus", "I love it :)"], "label": ["negative", "negative"]})
    out, report = label_texts(frame(), LABELS, human=human)
    by_text = out.set_index("text")
    assert by_text.loc["the bus", "label"] == "negative"
    assert by_text.loc["I love it :)", "label"] == "negative"
    assert by_text.loc["I love it :)", "label_source"] == "human"
    assert report["label_sources"]["human"] == 2


def test_a_broken_lf_is_reported_not_fatal() -> None:
    @labeling_function(name="explodes", label_set=LABELS)
    def explodes(text: str) -> str:
        raise RuntimeError("kaboom")

    from loopline.label.lf import vader

    out, report = label_texts(frame(), LABELS, lfs=(explodes, vader))
    assert not out.empty
    problem = report["lf_problems"][0]
    assert problem["lf"] == "explodes" and problem["kind"] == "error"
    assert "kaboom" in problem["message"]


def test_label_model_labels_agree_with_human_ratings_on_vader_tweets(shared_data: Path) -> None:
    from loopline.data.ingest import read_vader_ground_truth

    truth = read_vader_ground_truth(shared_data / "sentiment" / "vader" / "tweets_GroundTruth.txt")
    out, _report = label_texts(truth.drop(columns="label"), LABELS)
    assert len(out) > 0.9 * len(truth)
    assert set(out["label_source"]) == {"label_model"}
    merged = out.merge(truth[["id", "label"]], on="id", suffixes=("", "_human"))
    assert (merged["label"] == merged["label_human"]).mean() > 0.9
