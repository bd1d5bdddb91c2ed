"""Labeling functions: the decorator, built-in LFs, the label matrix and the bad-LF report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopline.errors import LooplineError
from loopline.label.lf import (
    ABSTAIN,
    LabelingFunction,
    apply_lfs,
    emoticon_lf,
    format_problems,
    keyword_lf,
    labeling_function,
    length_lf,
    regex_lf,
    threshold_lf,
    url_lf,
    vader_lf,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LABELS = ("ham", "spam")


@pytest.fixture(scope="module")
def spam() -> pd.DataFrame:
    files = sorted((SHARED / "spam_youtube").glob("Youtube0*.csv"))
    if not files:
        pytest.skip("shared spam data not found")
    frames = [pd.read_csv(f) for f in files]
    return pd.concat(frames, ignore_index=True).rename(
        columns={"CONTENT": "text", "CLASS": "label"}
    )


# Module-level LFs, so that they pickle into worker processes.
@labeling_function(label_set=LABELS)
def says_subscribe(text: str) -> str | int:
    return "spam" if "subscribe" in text.lower() else ABSTAIN


@labeling_function()
def long_row(row: dict) -> int | None:
    return 0 if len(row["text"]) > 200 else None


@labeling_function()
def raises_on_a(text: str) -> str | None:
    if "a" in text:
        raise ValueError("cannot handle the letter a")
    return None


@labeling_function()
def says_maybe(text: str) -> str:
    return "maybe" if len(text) > 40 else "spam"


@labeling_function()
def never(text: str) -> None:
    return None


def test_decorator_makes_named_text_and_row_lfs() -> None:
    assert isinstance(says_subscribe, LabelingFunction)
    assert says_subscribe.name == "says_subscribe" and says_subscribe.input == "text"
    assert long_row.input == "row"
    assert says_subscribe("Please SUBSCRIBE") == "spam"  # still callable like the function

    @labeling_function(name="custom", input="row")
    def anything(x: object) -> None:
        return None

    assert anything.name == "custom" and anything.input == "row"


def test_labels_map_to_class_indices_names_or_indices() -> None:
    df = pd.DataFrame({"text": ["a", "b", "c", "d"]})

    @labeling_function()
    def by_name(text: str) -> str | None:
        return {"a": "ham", "b": "spam"}.get(text)

    @labeling_function()
    def by_index(text: str) -> int:
        return {"a": 0, "b": 1, "c": -1}.get(text, ABSTAIN)

    result = apply_lfs(df, [by_name, by_index], LABELS)
    assert result.L.dtype == np.int8
    assert result.L.tolist() == [[0, 0], [1, 1], [-1, -1], [-1, -1]]
    assert result.ok and result.format_problems() == ""
    assert result.to_frame(names=True).loc[1, "by_name"] == "spam"


def test_integer_label_sets_take_values_not_positions() -> None:
    df = pd.DataFrame({"x": [5, 20, 1]})
    lf = threshold_lf("big", "x", ">", 10, 2)
    result = apply_lfs(df, [lf, threshold_lf("small", "x", "<", 2, 1)], label_set=(1, 2))
    assert result.L.tolist() == [[-1, -1], [1, -1], [-1, 0]]


def test_builtin_lfs_vote_as_documented() -> None:
    assert keyword_lf("kw", ["check out"], "spam")("Pls CHECK OUT my page") == "spam"
    assert keyword_lf("kw", ["sub"], "spam")("subtitles") is None  # whole words by default
    assert keyword_lf("kw", ["sub"], "spam", whole_words=False)("subtitles") == "spam"
    assert regex_lf("re", r"check.*out", "spam")("check this out") == "spam"
    assert length_lf("ham", max_words=3)("so good") == "ham"
    assert length_lf("ham", max_words=3)("this one is long") is None
    assert length_lf("ham", min_chars=5, max_chars=8)("abcdef") == "ham"
    link = url_lf("spam")
    assert link("see www.example.com") == "spam" and link("go to bit.ly/x") == "spam"
    assert link("ｈｔｔｐ://ｗｗｗ.ｅｂａｙ.ｃｏｍ/x") == "spam"  # full-width look-alikes
    assert link("no link here.") is None
    smile = emoticon_lf(positive=1, negative=0)
    assert smile("great :)") == 1 and smile("sad :(") == 0 and smile("plain") is None
    vader = vader_lf(positive="pos", negative="neg")
    assert vader("I love this, wonderful!") == "pos" and vader("awful, I hate it") == "neg"


def test_vectorised_paths_agree_with_row_by_row(spam: pd.DataFrame) -> None:
    lfs = [
        keyword_lf("subscribe", ["subscribe", "sub"], "spam"),
        regex_lf("check_out", r"check.*out", "spam"),
        url_lf("spam"),
        length_lf("ham", max_words=4, name="short"),
        emoticon_lf(positive="ham", negative="spam"),
    ]
    fast = apply_lfs(spam, lfs, LABELS)
    # The same bodies without their batch path run row by row.
    slow = apply_lfs(spam, [LabelingFunction(lf.name, lf.func) for lf in lfs], LABELS)
    assert np.array_equal(fast.L, slow.L)
    assert (fast.L != ABSTAIN).any(axis=0).all()


def test_threshold_lf_is_vectorised_and_abstains_on_missing() -> None:
    df = pd.DataFrame({"amount": [10.0, 5000.0, np.nan, 900.0]})
    lf = threshold_lf("large", "amount", ">=", 900, "fraud")
    result = apply_lfs(df, [lf], ("ok", "fraud"))
    assert result.L[:, 0].tolist() == [-1, 1, -1, 1]
    with pytest.raises(LooplineError, match="unknown operator"):
        threshold_lf("bad", "amount", "=>", 1, "fraud")


def test_bad_lfs_are_reported_not_raised(spam: pd.DataFrame) -> None:
    good = keyword_lf("subscribe", ["subscribe"], "spam")
    result = apply_lfs(spam, [good, raises_on_a, says_maybe, never], LABELS)

    by_lf = {p["lf"]: p for p in result.problems}
    assert set(by_lf) == {"raises_on_a", "says_maybe", "never"}

    has_a = spam["text"].str.contains("a", regex=False).sum()
    assert by_lf["raises_on_a"]["kind"] == "error"
    assert by_lf["raises_on_a"]["rows"] == has_a
    assert "ValueError: cannot handle the letter a" in by_lf["raises_on_a"]["message"]

    long_texts = (spam["text"].str.len() > 40).sum()
    assert by_lf["says_maybe"]["kind"] == "out_of_set"
    assert by_lf["says_maybe"]["rows"] == long_texts
    assert by_lf["says_maybe"]["values"] == ["'maybe'"]

    assert by_lf["never"] == {
        "lf": "never",
        "kind": "abstains_everywhere",
        "rows": len(spam),
        "message": by_lf["never"]["message"],
    }

    # Broken rows are abstains; valid votes of a partly bad LF are kept.
    column = result.lf_names.index("says_maybe")
    assert (result.L[:, column] == 1).sum() == len(spam) - long_texts
    assert (result.L[:, result.lf_names.index("raises_on_a")] == ABSTAIN).all()

    report = result.format_problems()
    assert report.startswith("3 labeling function problem(s)")
    assert f"raises_on_a: raised on {has_a} of {len(spam)} rows" in report
    assert "'maybe'" in report and "expected one of 'ham', 'spam'" in report
    assert "never: abstained on every row" in report


def test_declared_label_set_limits_what_an_lf_may_return() -> None:
    @labeling_function(label_set=("ham",))
    def only_ham(text: str) -> str:
        return "spam"

    result = apply_lfs(
        pd.DataFrame({"text": ["x", "subscribe"]}), [only_ham, says_subscribe], LABELS
    )
    assert result.problems[0]["kind"] == "out_of_set" and result.problems[0]["rows"] == 2


def test_every_lf_broken_raises_with_the_report() -> None:
    df = pd.DataFrame({"text": ["a cat", "a dog"]})
    with pytest.raises(LooplineError) as info:
        apply_lfs(df, [raises_on_a, never], LABELS)
    assert "every labeling function is broken" in info.value.message
    assert "raises_on_a: raised on 2 of 2 rows" in info.value.message


def test_bad_arguments_say_what_was_expected() -> None:
    df = pd.DataFrame({"body": ["x"]})
    with pytest.raises(LooplineError, match="expected a 'text' column, found body"):
        apply_lfs(df, [says_subscribe], LABELS)
    with pytest.raises(LooplineError, match="needs a label_set"):
        apply_lfs(df, [never], text_column="body")
    with pytest.raises(LooplineError, match="unique"):
        apply_lfs(df, [never, never], LABELS, text_column="body")
    with pytest.raises(LooplineError, match="at least two distinct labels"):
        apply_lfs(df, [never], ("spam",), text_column="body")
    with pytest.raises(LooplineError, match="not a valid regular expression"):
        regex_lf("broken", r"(unclosed", "spam")


def test_label_set_defaults_to_the_declared_one() -> None:
    result = apply_lfs(pd.DataFrame({"text": ["subscribe now"]}), [says_subscribe])
    assert result.label_set == LABELS and result.L.tolist() == [[1]]


def test_processes_give_the_same_matrix(spam: pd.DataFrame) -> None:
    big = pd.concat([spam] * 3, ignore_index=True)  # several row chunks
    lfs = [says_subscribe, long_row, raises_on_a, url_lf("spam")]
    seen: list[tuple[int, int]] = []
    serial = apply_lfs(big, lfs, LABELS)
    parallel = apply_lfs(big, lfs, LABELS, n_jobs=2, progress=lambda d, t: seen.append((d, t)))
    assert np.array_equal(serial.L, parallel.L)
    assert serial.problems == parallel.problems
    assert parallel.notes == []
    assert seen[-1] == (len(big) * 4, len(big) * 4)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_unpicklable_lfs_fall_back_to_one_process(spam: pd.DataFrame) -> None:
    big = pd.concat([spam] * 2, ignore_index=True)
    local = LabelingFunction("local", lambda text: 1 if "http" in text else None)
    result = apply_lfs(big, [local], LABELS, n_jobs=2)
    assert "ran in one process" in result.notes[0]
    assert (result.L[:, 0] == 1).sum() == big["text"].str.contains("http").sum()


def test_sources_name_the_lfs_behind_each_label() -> None:
    df = pd.DataFrame({"text": ["subscribe www.x.com", "hello", "subscribe"]})
    result = apply_lfs(df, [says_subscribe, url_lf("spam", name="link")], LABELS)
    assert result.sources(np.array([1, -1, 0])) == ["says_subscribe+link", "", ""]


def test_format_problems_is_empty_without_problems() -> None:
    assert format_problems([]) == ""
