"""Feature definitions and the offline computation: names, JSON, validation, inputs (files,
folders, globs, DataFrames), Parquet output, bounded memory, the pipeline step, and the same
values as the tabular template's pandas features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loopline.errors import DataError, LooplineError
from loopline.features import (
    CalendarFlags,
    DelayedLabelRate,
    FeatureSet,
    Window,
    compute_offline,
    handbook_features,
)
from loopline.features.steps import compute_features

FS = handbook_features()


def test_the_handbook_set_names_its_14_features_in_a_stable_order() -> None:
    assert FS.names == (
        "TX_DURING_WEEKEND",
        "TX_DURING_NIGHT",
        "CUSTOMER_TX_1D",
        "CUSTOMER_MEAN_AMOUNT_1D",
        "CUSTOMER_TX_7D",
        "CUSTOMER_MEAN_AMOUNT_7D",
        "CUSTOMER_TX_30D",
        "CUSTOMER_MEAN_AMOUNT_30D",
        "TERMINAL_TX_1D",
        "TERMINAL_RISK_1D",
        "TERMINAL_TX_7D",
        "TERMINAL_RISK_7D",
        "TERMINAL_TX_30D",
        "TERMINAL_RISK_30D",
    )
    assert FS.entities == ("CUSTOMER_ID", "TERMINAL_ID") and FS.subject == "CUSTOMER_ID"
    assert FS.horizon_days == 37 and FS.label == "TX_FRAUD"


def test_a_feature_set_goes_through_json_and_back() -> None:
    text = json.dumps(FS.to_dict())
    again = FeatureSet.from_dict(json.loads(text))
    assert again == FS and again.digest() == FS.digest()
    assert handbook_features(windows=(1, 2)).digest() != FS.digest()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Window("C", "A", ("count",), (0,)), "positive whole numbers"),
        (lambda: Window("C", "A", ("median",)), "unknown aggregation"),
        (lambda: Window("C", None, ("mean",)), "need a value column"),
        (lambda: DelayedLabelRate("T", "Y", (1,), delay=0), "positive whole number of days"),
        (lambda: FeatureSet((Window("C", "A"), Window("C", "A"))), "feature names repeat"),
        (lambda: FeatureSet((CalendarFlags(),), subject="C"), "none of the entity columns"),
        (
            lambda: FeatureSet((DelayedLabelRate("T", "Y"), DelayedLabelRate("U", "Z"))),
            "several label columns",
        ),
    ],
)
def test_bad_definitions_are_user_errors(make: object, message: str) -> None:
    with pytest.raises(LooplineError, match=message):
        make()  # type: ignore[operator]


def frame() -> pd.DataFrame:
    t0 = pd.Timestamp("2018-04-07 05:00")  # a Saturday, at night
    day = pd.Timedelta(days=1)
    return pd.DataFrame(
        {
            "TRANSACTION_ID": [10, 11, 12, 13, 14],
            "TX_DATETIME": [t0, t0 + day, t0 + day, t0 + 2 * day + pd.Timedelta(hours=3), t0],
            "CUSTOMER_ID": [1, 1, 1, 1, 2],
            "TERMINAL_ID": [7, 7, 8, 7, 7],
            "TX_AMOUNT": [1.0, 2.0, 4.0, 8.0, 16.0],
            "TX_FRAUD": [1, 0, 0, 0, None],
        }
    )


def test_offline_windows_keep_row_order_edges_and_ties() -> None:
    out = compute_offline(frame(), FS)

    assert out["TRANSACTION_ID"].tolist() == [10, 11, 12, 13, 14]  # input order, not time
    assert out["TX_DURING_WEEKEND"].tolist() == [1, 1, 1, 0, 1]  # Sat, Sun, Sun, Mon, Sat
    assert out["TX_DURING_NIGHT"].tolist() == [1, 1, 1, 0, 1]  # 05:00 <= 6, 08:00 > 6
    # 11 is exactly one day after 10: outside its 1-day window; 12 ties with 11 and comes
    # after it in the input, so it sees 11 (and 11 does not see 12)
    assert out["CUSTOMER_TX_1D"].tolist() == [1, 1, 2, 1, 1]
    assert out["CUSTOMER_MEAN_AMOUNT_1D"].tolist() == [1.0, 2.0, 3.0, 8.0, 16.0]
    assert out["CUSTOMER_TX_7D"].tolist() == [1, 2, 3, 4, 1]
    assert out["CUSTOMER_MEAN_AMOUNT_7D"].tolist() == [1.0, 1.5, 7 / 3, 15 / 4, 16.0]
    assert out["TERMINAL_TX_30D"].tolist() == [0, 0, 0, 0, 0]  # nothing 7+ days old
    assert out["TERMINAL_RISK_30D"].tolist() == [0.0] * 5
    assert out.dtypes["CUSTOMER_TX_1D"] == np.int64
    assert out.dtypes["TERMINAL_RISK_1D"] == np.float64


def test_the_delayed_window_ends_exactly_delay_days_back() -> None:
    t0, day = pd.Timestamp("2018-04-01 12:00"), pd.Timedelta(days=1)
    tx = pd.DataFrame(
        {
            "TRANSACTION_ID": ["a", "b", "c", "d", "e"],
            "TX_DATETIME": [
                t0,
                t0 + 7 * day,
                t0 + 8 * day - pd.Timedelta("1us"),
                t0 + 8 * day,
                t0 + 37 * day,
            ],
            "CUSTOMER_ID": ["x", "y", "z", "w", "v"],
            "TERMINAL_ID": ["m"] * 5,
            "TX_AMOUNT": [1.0] * 5,
            "TX_FRAUD": [1, 0, 0, 0, 0],
        }
    )
    out = compute_offline(tx, FS).set_index("TRANSACTION_ID")

    assert out.loc["b", "TERMINAL_TX_1D"] == 1 and out.loc["b", "TERMINAL_RISK_1D"] == 1.0
    assert out.loc["c", "TERMINAL_TX_1D"] == 1  # a is 8 days - 1 µs back: inside
    assert out.loc["d", "TERMINAL_TX_1D"] == 0  # a is exactly 8 days back: outside
    assert out.loc["d", "TERMINAL_TX_7D"] == 1 and out.loc["d", "TERMINAL_RISK_7D"] == 1.0
    assert out.loc["e", "TERMINAL_TX_30D"] == 3  # b, c, d; a is 37 days back: outside
    assert out.loc["e", "TERMINAL_RISK_30D"] == 0.0


def test_files_folders_globs_and_parquet_out_give_the_same_table(tmp_path: Path) -> None:
    data = frame()
    (tmp_path / "in").mkdir()
    data.iloc[:3].to_csv(tmp_path / "in" / "a.csv.gz", index=False)
    data.iloc[3:].to_parquet(tmp_path / "b.parquet", index=False)
    data.iloc[3:].to_csv(tmp_path / "in" / "b.csv", index=False)
    expected = compute_offline(data, FS)

    for source in (tmp_path / "in", str(tmp_path / "in" / "*.csv*")):
        got = compute_offline(source, FS)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    written = compute_offline(data, FS, out=tmp_path / "out" / "features.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(written), expected, check_dtype=False)
    with pytest.raises(DataError, match="cannot mix"):
        compute_offline([tmp_path / "in" / "b.csv", tmp_path / "b.parquet"], FS)


def test_bad_input_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no CSV or Parquet files"):
        compute_offline(tmp_path, FS)
    with pytest.raises(DataError, match=r"no column\(s\) \['TX_AMOUNT'\]"):
        compute_offline(frame().drop(columns="TX_AMOUNT"), FS)
    missing = frame()
    missing.loc[4, "CUSTOMER_ID"] = None
    with pytest.raises(DataError, match=r"missing values .*CUSTOMER_ID \(1 rows\)"):
        compute_offline(missing, FS)
    with pytest.raises(DataError, match="repeat an id"):
        compute_offline(pd.concat([frame(), frame()]), FS)


def test_offline_runs_within_a_small_memory_limit(tmp_path: Path, april: pd.DataFrame) -> None:
    small = compute_offline(april, FS, memory_limit="64MB", threads=1, temp_dir=tmp_path)
    pd.testing.assert_frame_equal(small, compute_offline(april, FS))


def test_the_step_appends_the_features_in_row_order() -> None:
    data = frame().iloc[::-1].reset_index(drop=True)
    out = compute_features(data)
    assert list(out.columns) == list(data.columns) + list(FS.names)
    assert out["TRANSACTION_ID"].tolist() == [14, 13, 12, 11, 10]
    assert out["CUSTOMER_TX_7D"].tolist() == [1, 4, 2, 3, 1]  # the tie 11/12 in this order


def test_the_same_values_as_the_tabular_templates_pandas_features(april: pd.DataFrame) -> None:
    pytest.importorskip("lightgbm")
    from loopline.templates.tabular import features as template_features

    days = april[april["TX_DATETIME"] < "2018-04-04"]
    theirs = template_features(days).set_index("TRANSACTION_ID")
    ours = compute_offline(days, FS).set_index("TRANSACTION_ID")
    for name in FS.names:
        diff = np.abs(ours[name].to_numpy(float) - theirs.loc[ours.index, name].to_numpy(float))
        assert diff.max() <= 1e-9, name
