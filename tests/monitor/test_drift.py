"""Drift tests: right statistics, sensible decisions at small and large n, clear bad-input paths."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from loopline.errors import ConfigError, DataError
from loopline.monitor import DriftConfig, build_profile, drift_report
from loopline.monitor.drift import adjust_p_values
from loopline.monitor.profile import Profile

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FRAUD = SHARED_DATA / "fraud" / "fraud_handbook_simulated"
SENTIMENT = SHARED_DATA / "sentiment" / "sentiment140_train_sample"


def _frame(n: int, seed: int, *, shift: float = 0.0, mix: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = [0.2, 0.3, 0.5] if mix else [0.5, 0.3, 0.2]
    return pd.DataFrame(
        {
            "x": rng.normal(shift, 1.0, n),
            "count": rng.poisson(3.0, n),
            "heavy": rng.standard_t(3, n),
            "color": rng.choice(["red", "green", "blue"], n, p=p),
            "rare": rng.choice(["no", "yes"], n, p=[0.98, 0.02]),
        }
    )


@pytest.fixture(scope="module")
def profile() -> Profile:
    return build_profile(_frame(200_000, 0))


# --------------------------------------------------------------------------- decisions


@pytest.mark.parametrize("n", [1_000, 200_000])
def test_a_resampled_window_is_not_flagged_at_small_or_large_n(profile: Profile, n: int) -> None:
    report = drift_report(profile, _frame(n, 1))
    assert report.drifted_columns == []
    assert not report.dataset_drift and report.issues == []


@pytest.mark.parametrize("n", [1_000, 200_000])
def test_real_shifts_are_flagged_at_small_and_large_n(profile: Profile, n: int) -> None:
    report = drift_report(profile, _frame(n, 2, shift=0.5, mix=True))
    assert set(report.drifted_features) == {"x", "color"}
    assert report["x"].wasserstein == pytest.approx(0.5, abs=0.1)
    assert any("Wasserstein" in reason for reason in report["x"].reasons)
    assert report.share_drifted == pytest.approx(2 / 5) and not report.dataset_drift


def test_a_significant_but_trivial_shift_is_not_flagged_at_large_n(profile: Profile) -> None:
    report = drift_report(profile, _frame(200_000, 3, shift=0.03))
    x = report["x"]
    assert x.q_value is not None and x.q_value < 1e-6  # KS alone would flag it
    assert x.wasserstein is not None and x.wasserstein < 0.05
    assert not x.drifted


def _tiny_shift_frame(n: int, seed: int, *, shifted: bool) -> pd.DataFrame:
    """The tiny-shift negatives of benchmarks/drift.py, plus one real shift as a control."""
    rng = np.random.default_rng(seed)
    tier = [0.495, 0.205, 0.15, 0.1, 0.05] if shifted else [0.5, 0.2, 0.15, 0.1, 0.05]
    lang = [0.695, 0.2, 0.075, 0.03] if shifted else [0.7, 0.2, 0.07, 0.03]
    state = rng.choice([f"s{i}" for i in range(20)], n).astype(object)
    state[rng.random(n) < (0.035 if shifted else 0.03)] = None
    return pd.DataFrame(
        {
            "mean": rng.normal(0.01 if shifted else 0.0, 1.0, n),  # +0.01 sd
            "scale": rng.normal(0.0, 1.02 if shifted else 1.0, n),  # sd x1.02
            "flag": (rng.random(n) < (0.305 if shifted else 0.30)).astype(float),  # +0.5 pt
            "tier": rng.choice(["t0", "t1", "t2", "t3", "t4"], n, p=tier),  # shares +-0.5 pt
            "lang": rng.choice(["l0", "l1", "l2", "l3"], n, p=lang),  # 7% -> 7.5%
            "state": state,  # missing rate 3% -> 3.5%
            "control": rng.normal(0.15 if shifted else 0.0, 1.0, n),  # +0.15 sd: real
        }
    )


def test_tiny_shifts_significant_at_a_million_rows_are_not_flagged() -> None:
    # Every one of these is statistically significant at 1,000,000 rows (a test alone would
    # flag it) and too small to matter: the effect-size thresholds keep them unflagged.
    n = 1_000_000
    report = drift_report(
        build_profile(_tiny_shift_frame(n, 10, shifted=False)),
        _tiny_shift_frame(n, 11, shifted=True),
    )
    alpha = DriftConfig().alpha
    for column in ("mean", "scale", "flag", "tier", "lang"):
        r = report[column]
        assert r.q_value is not None and r.q_value < alpha, column  # significant...
        assert not r.drifted, (column, r.reasons)  # ...and not flagged
        assert r.wasserstein is None or r.wasserstein < 0.05, column
        assert r.js_distance is not None and r.js_distance < 0.05, column
    assert report["lang"].details["max_rate_ratio"] == pytest.approx(1.07, abs=0.02)
    state = report["state"]
    assert state.missing_q_value is not None and state.missing_q_value < alpha
    assert state.missing_rate == pytest.approx(0.035, abs=0.002) and not state.drifted
    assert report.drifted_features == ["control"]


def test_a_rare_category_whose_rate_rises_by_half_is_flagged(profile: Profile) -> None:
    window = _frame(100_000, 4)
    rng = np.random.default_rng(5)
    window.loc[rng.random(len(window)) < 0.01, "rare"] = "yes"  # 2% -> ~3%
    rare = drift_report(profile, window)["rare"]
    assert rare.drifted and rare.js_distance is not None and rare.js_distance < 0.1
    assert rare.details["max_rate_ratio_category"] == "yes"
    assert rare.details["max_rate_ratio"] == pytest.approx(1.5, abs=0.1)


def test_dataset_drift_follows_the_configured_share(profile: Profile) -> None:
    window = _frame(5_000, 6, shift=1.0, mix=True)
    assert not drift_report(profile, window).dataset_drift  # 2 of 5 < 0.5
    assert drift_report(profile, window, config=DriftConfig(drift_share=0.4)).dataset_drift


# --------------------------------------------------------------------------- statistics


def test_ks_and_wasserstein_from_the_sketch_match_scipy_on_the_raw_data() -> None:
    from scipy.stats import ks_2samp, wasserstein_distance

    rng = np.random.default_rng(7)
    ref, cur = rng.standard_t(3, 100_000), rng.standard_t(3, 50_000) * 1.2 + 0.05
    report = drift_report(build_profile(pd.DataFrame({"v": ref})), pd.DataFrame({"v": cur}))
    v = report["v"]
    exact = ks_2samp(ref, cur)
    assert v.statistic == pytest.approx(exact.statistic, abs=0.01)
    assert v.statistic <= exact.statistic + 1e-12  # the sketch sees a subset of the points
    scale = (np.quantile(ref, 0.75) - np.quantile(ref, 0.25)) / 1.349
    assert v.wasserstein == pytest.approx(wasserstein_distance(ref, cur) / scale, rel=0.05)


def test_benjamini_hochberg_matches_scipy() -> None:
    from scipy.stats import false_discovery_control

    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205, 0.212, 0.216])
    assert adjust_p_values(p, "bh") == pytest.approx(false_discovery_control(p))
    assert adjust_p_values(p, "bonferroni") == pytest.approx(np.minimum(p * 10, 1))
    assert adjust_p_values(p, "none") == pytest.approx(p)


def test_new_categories_are_listed_and_reported(profile: Profile) -> None:
    window = _frame(2_000, 8)
    window.loc[:199, "color"] = "purple"
    report = drift_report(profile, window)
    color = report["color"]
    assert color.drifted and color.details["new_categories"] == {"purple": 200}
    assert [i.kind for i in report.issues] == ["new_categories"]
    assert "purple" in report.issues[0].message


# --------------------------------------------------------------------------- bad input


def test_an_empty_window_is_a_data_error_with_a_hint(profile: Profile) -> None:
    with pytest.raises(DataError, match="empty") as info:
        drift_report(profile, _frame(0, 9))
    assert info.value.hint
    with pytest.raises(DataError, match="DataFrame"):
        drift_report(profile, [1, 2, 3])  # type: ignore[arg-type]


def test_a_missing_column_is_an_instrumentation_issue_not_a_crash(profile: Profile) -> None:
    report = drift_report(profile, _frame(1_000, 10).drop(columns=["color"]).assign(extra=1))
    color = report["color"]
    assert color.status == "missing_column" and not color.drifted
    assert [(i.kind, i.column) for i in report.issues] == [("missing_column", "color")]
    assert report.extra_columns == ["extra"]
    assert report.drifted_columns == []


def test_a_column_with_only_missing_values_reports_missing_rate_drift(profile: Profile) -> None:
    window = _frame(1_000, 11)
    window["x"] = np.nan
    window["color"] = None
    report = drift_report(profile, window)
    for name in ("x", "color"):
        result = report[name]
        assert result.status == "all_missing" and result.missing_rate == 1.0
        assert result.missing_drift and result.drifted and not result.distribution_drift
    assert {i.kind for i in report.issues} == {"all_missing"}


def test_partly_missing_and_unparseable_values(profile: Profile) -> None:
    window = _frame(2_000, 12)
    window["x"] = window["x"].astype(object)
    window.loc[:599, "x"] = "oops"
    report = drift_report(profile, window)
    x = report["x"]
    assert x.missing_rate == pytest.approx(0.3) and x.missing_drift
    assert x.details["invalid_values"] == 600
    assert [i.kind for i in report.issues] == ["invalid_values"]


def test_too_few_rows_gives_statistics_but_no_decision(profile: Profile) -> None:
    report = drift_report(profile, _frame(50, 13, shift=3.0))
    assert report["x"].status == "too_few_rows" and report["x"].wasserstein is not None
    assert report.drifted_columns == [] and report.issues[0].kind == "too_few_rows"
    small = drift_report(profile, _frame(50, 13, shift=3.0), config=DriftConfig(min_rows=20))
    assert "x" in small.drifted_features


def test_invalid_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="alpha"):
        DriftConfig(alpha=1.5)
    with pytest.raises(ConfigError, match="correction"):
        DriftConfig(correction="holm")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- predictions, output


def test_prediction_drift_from_separately_logged_predictions() -> None:
    rng = np.random.default_rng(14)
    ref = pd.DataFrame({"x": rng.normal(size=20_000), "pred": rng.random(20_000) < 0.1})
    ref["score"] = rng.beta(1, 9, 20_000)
    profile = build_profile(ref, numeric=["x"], prediction="pred", probabilities=["score"])
    window = pd.DataFrame({"x": rng.normal(size=5_000)})
    preds = pd.DataFrame({"pred": rng.random(5_000) < 0.2, "score": rng.beta(2, 8, 5_000)})
    report = drift_report(profile, window, predictions=preds)
    assert report.prediction_drift and report.drifted_features == []
    assert set(report.drifted_columns) == {"pred", "score"}
    series_only = drift_report(profile, window, predictions=preds["pred"].to_numpy())
    assert series_only["score"].status == "missing_column" and series_only["pred"].drifted
    with pytest.raises(DataError, match="rows"):
        drift_report(profile, window, predictions=preds.iloc[:10])


def test_report_is_json_and_prints_as_a_table(profile: Profile) -> None:
    window = _frame(3_000, 15, shift=0.5).drop(columns=["rare"])
    report = drift_report(profile.to_dict(), window)  # a stored profile dict works too
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["drifted_features"] == ["x"]
    assert {f["column"] for f in data["features"]} == set(profile.columns)
    assert data["config"]["alpha"] == 0.05
    console = Console(record=True, width=160)
    console.print(report.summary_table())
    text = console.export_text()
    assert "1 of 5 features drifted" in text and "missing_column" in text


# --------------------------------------------------------------------------- real data


def _fraud_features(month: int) -> pd.DataFrame:
    path = FRAUD / f"transactions_2018-0{month}.csv.gz"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    df = pd.read_csv(path, parse_dates=["TX_DATETIME"])
    per_day = df.groupby(["CUSTOMER_ID", "TX_TIME_DAYS"])["TX_AMOUNT"]
    return pd.DataFrame(
        {
            "TX_DATETIME": df["TX_DATETIME"],
            "TX_AMOUNT": df["TX_AMOUNT"],
            "TX_HOUR": df["TX_DATETIME"].dt.hour,
            "TX_WEEKDAY": df["TX_DATETIME"].dt.day_name(),
            "CUSTOMER_NB_TX_1DAY": per_day.transform("size"),
            "TX_FRAUD_SCENARIO": df["TX_FRAUD_SCENARIO"],
            "PREDICTED_FRAUD": (df["TX_AMOUNT"] > 220).astype(int),  # the handbook's baseline rule
            "TX_FRAUD": df["TX_FRAUD"],
        }
    )


def test_fraud_april_profile_flags_the_label_and_scenario_drift_of_may() -> None:
    april, may = _fraud_features(4), _fraud_features(5)
    profile = build_profile(
        april,
        numeric=["TX_AMOUNT", "TX_HOUR", "CUSTOMER_NB_TX_1DAY"],
        categorical=["TX_WEEKDAY", "TX_FRAUD_SCENARIO"],
        prediction="PREDICTED_FRAUD",
        labels="TX_FRAUD",
        slices=["TX_WEEKDAY"],
    )
    assert profile.performance is not None
    assert profile.performance["overall"]["precision"] == 1.0  # amount > 220 is always fraud
    week = may[(may["TX_DATETIME"] >= "2018-05-07") & (may["TX_DATETIME"] < "2018-05-14")]
    report = drift_report(profile, week)
    # fraud rate 0.59% -> 0.87%, scenario 2 (compromised terminals) 0.32% -> 0.54%
    assert set(report.drifted_columns) == {"TX_FRAUD", "TX_FRAUD_SCENARIO"}
    assert report.label_drift and not report.prediction_drift and not report.dataset_drift
    assert report["TX_FRAUD"].details["max_rate_ratio"] > 1.3
    assert report["TX_FRAUD_SCENARIO"].details["max_rate_ratio_category"] == "2"
    control = drift_report(profile, april.sample(60_000, random_state=0))
    assert control.drifted_columns == []


def _tweets(name: str) -> list[str]:
    path = SENTIMENT / name
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return handle.read().splitlines()


def test_sentiment_text_drift_is_flagged_for_the_rest_of_the_stream() -> None:
    neg, pos = _tweets("negative_tweets_50k.txt.gz"), _tweets("positive_tweets_50k.txt.gz")
    half = len(neg) // 2
    # Profile a sample of the first halves; hold out other first-half tweets as a control.
    first = pd.DataFrame(
        {"text": neg[:half] + pos[:half], "label": ["negative"] * half + ["positive"] * half}
    ).sample(frac=1.0, random_state=0)
    profile = build_profile(first.iloc[:10_000], text=["text"], labels="label")
    control = drift_report(profile, first.iloc[10_000:13_000])
    assert control.drifted_columns == []
    # The rest arrives in stream order: April negatives, then June positives.
    for texts, label in ((neg[half : half + 3000], "negative"), (pos[-3000:], "positive")):
        report = drift_report(profile, pd.DataFrame({"text": texts, "label": label}))
        text = report["text"]
        assert text.drifted and text.js_distance is not None and text.js_distance >= 0.05
        assert report.label_drift


def _textbook_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg step-up written out: q_(i) = min_{j >= i} p_(j) * m / j, capped at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    q = [0.0] * m
    running = 1.0
    for rank in range(m, 0, -1):  # from the largest p-value down
        i = order[rank - 1]
        running = min(running, p[i] * m / rank)
        q[i] = running
    return np.array(q, dtype=float)


@pytest.mark.parametrize("seed", range(8))
def test_benjamini_hochberg_matches_the_textbook_step_up(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    p = rng.random(n) ** 3  # many small p-values, as in a drifted report
    # Ties, exact zeros and exact ones.
    p[rng.random(n) < 0.2] = 0.0
    p[rng.random(n) < 0.15] = 1.0
    if n > 3:
        p[1] = p[2] = p[3]
    p = np.round(p, 3)  # more ties
    np.testing.assert_allclose(adjust_p_values(p, "bh"), _textbook_bh(p), rtol=1e-12, atol=0)
    np.testing.assert_allclose(adjust_p_values(p), _textbook_bh(p), rtol=1e-12, atol=0)
    np.testing.assert_allclose(
        adjust_p_values(p, "bonferroni"), np.minimum(p * n, 1.0), rtol=1e-12, atol=0
    )
    np.testing.assert_array_equal(adjust_p_values(p, "none"), p)


def test_benjamini_hochberg_edge_inputs() -> None:
    empty = np.array([], dtype=float)
    for method in ("bh", "bonferroni", "none"):
        assert adjust_p_values(empty, method).shape == (0,)
    np.testing.assert_allclose(adjust_p_values(np.array([0.03]), "bh"), [0.03], rtol=1e-12)
    np.testing.assert_allclose(adjust_p_values(np.zeros(4), "bh"), np.zeros(4), rtol=1e-12)
    np.testing.assert_allclose(adjust_p_values(np.ones(4), "bh"), np.ones(4), rtol=1e-12)
    # A missing test result stays missing and is not counted among the tests corrected.
    q = adjust_p_values(np.array([0.01, np.nan, 0.04]), "bh")
    assert np.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2]], _textbook_bh(np.array([0.01, 0.04])), rtol=1e-12)


# --------------------------------------------------------------------------- robustness


def _huge_text(kind: str, size: int = 800_000) -> str:
    """One ~800 KB document: tweet words repeated, or letters no tweet has ever used."""
    if kind == "tweet words":
        from loopline.examples.sentiment.synthetic import generate_tweets

        words = " ".join(generate_tweets(300, seed=9)["text"])
        return (words * (size // len(words) + 1))[:size]
    rng = np.random.default_rng(0)
    letters = rng.choice(list("qxzjkvw"), size)
    letters[rng.random(size) < 0.15] = " "
    return "".join(letters)


@pytest.mark.parametrize("kind", ["tweet words", "gibberish"])
def test_one_huge_text_does_not_move_the_text_drift_score(kind: str) -> None:
    from loopline.examples.sentiment.synthetic import generate_tweets
    from loopline.monitor.report import drift_score

    profile = build_profile(generate_tweets(2000, seed=1)[["text"]], text=["text"])
    window = generate_tweets(400, seed=2)[["text"]]
    with_huge = pd.concat([window, pd.DataFrame({"text": [_huge_text(kind)]})], ignore_index=True)

    before = drift_report(profile, window)["text"]
    after = drift_report(profile, with_huge)["text"]

    # One document of 401 moves the score (largest effect / its threshold) a little, not by
    # a factor of a thousand; and it is no reason to flag the column.
    score_before, score_after = drift_score(before), drift_score(after)
    assert score_before is not None and score_after is not None
    assert abs(score_after - score_before) < 0.3
    assert after.wasserstein is not None and after.wasserstein < 0.2
    assert before.js_distance is not None and after.js_distance is not None
    assert abs(after.js_distance - before.js_distance) < 0.02
    assert not after.drifted


def test_the_drift_score_says_what_it_measures_and_where_it_flags() -> None:
    from loopline.examples.sentiment.synthetic import generate_tweets
    from loopline.monitor.drift import drift_score

    profile = build_profile(generate_tweets(2000, seed=1)[["text"]], text=["text"])
    window = generate_tweets(400, seed=2, period="late")[["text"]]
    with_huge = pd.concat([window, pd.DataFrame({"text": [_huge_text("gibberish")]})])
    result = drift_report(profile, with_huge)["text"]

    score = drift_score(result)
    assert score is not None and result.drifted and score.value >= 1
    assert score.threshold == {"token JS distance": 0.05}.get(score.effect, score.threshold)
    assert score.value == pytest.approx(score.effect_value / score.threshold)
    text = score.text()
    assert score.effect in text and "threshold" in text and f"{score.threshold:g}" in text
    assert result.details["documents_beyond_reference_length"] == 1
