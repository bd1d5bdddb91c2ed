"""Fraud model quality with the Fraud Detection Handbook's protocol: our fast and heavy
models against the handbook's baselines, on the same splits, in one run.

Protocol (Le Borgne et al., chapters 3.4 and 4; :mod:`loopline.fraud.metrics`): train on
``--train-days`` days (7) from ``--train-start``, skip ``--delay-days`` (7: their labels are
not known when the model is trained), test on the next ``--test-days`` (7); with
``--test-weeks N`` the split moves by one test period N times and every figure is the mean
over the weeks (each week's figures are printed too). Cards known to be compromised are left
out of each test day. Metrics: AUC ROC and average precision over the test transactions,
card precision@k (k = 100) averaged over test days.

Data: every ``*.csv``, ``*.csv.gz`` and ``*.parquet`` file of ``--data`` (default: the
handbook's simulated April-June 2018 in ``../shared/data/fraud/fraud_handbook_simulated``),
columns ``TRANSACTION_ID, TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_FRAUD``.

Features, computed once for the whole frame before any model is trained; each is
point-in-time correct (amounts of earlier transactions, terminal labels at least the label
delay old), so one computation serves every split:

- the handbook's 15 inputs (the amount, weekend and night flags, per customer the count and
  mean amount over 1/7/30 days, per terminal the count and fraud rate over the 1/7/30 days
  ending 7 days before): the baselines and our fast model use these and nothing else;
- our heavy model's set (:func:`loopline.fraud.features.heavy_features`): those, plus the
  terminal's own traffic, the customer's earlier amounts (z-score, ratio, max over 30 days)
  and the timing of the terminal's known frauds.

Models, each fitted on exactly the same training rows of a split (heavy excepted when
``--heavy-train-days`` is above ``--train-days``, see below):

- ``lr``, ``rf``, ``xgb``: the handbook's chapter 3 baselines with their published settings
  (scikit-learn's logistic regression, a random forest of 100 unlimited trees, XGBoost's
  defaults), each after a ``StandardScaler`` as the book does; ``rf_tuned``, ``xgb_tuned``:
  chapter 5's best settings on its validation weeks. Not tuned again here: the book's
  settings are what its figures were published with.
- ``fast``: our online model (:func:`loopline.fraud.models.fast_model`: scaled logistic
  regression on the same 15 inputs, as the decision service scores it).
- ``heavy``: our batch model (:func:`loopline.fraud.models.heavy_model`: LightGBM on the
  heavy features, settings chosen on April-May validation weeks, never on the weeks of the
  default run), trained on the ``--heavy-train-days`` (28) labelled days that end where the
  others' training ends: a batch model has the longer history at hand, the handbook's
  7-day window is the constraint of its baselines, not of the data. So that the effect of
  more history and of more features can be told apart, the run also reports ``heavy_7d``,
  the same model on the baselines' 7 days (``--heavy-train-days 7`` makes the two one).

The clock covers each model's fit and scoring (printed; not a target). Threads: every model
uses every core (``n_jobs=-1``).

    .venv/bin/python benchmarks/fraud_quality.py [--data DIR] [--train-start 2018-05-25]
        [--test-weeks 3] [--heavy-train-days 28] [--no-tuned]

The last line is one JSON object: ``auc_<model>``, ``ap_<model>``, ``cp100_<model>`` for
``fast``, ``heavy``, ``lr``, ``rf``, ``xgb`` (and ``rf_tuned``, ``xgb_tuned``,
``heavy_7d`` when run), means over the test weeks; ``weeks`` (each split and its figures),
``heavy_beats_baselines`` (heavy's AP and CP@100 above every baseline's), ``fit_s`` and
``machine``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _machine import machine_info, start_load
from loopline.fraud.features import compute_heavy
from loopline.fraud.metrics import Split, assess, protocol_splits
from loopline.fraud.models import (
    FAST_FEATURES,
    fast_model,
    handbook_baselines,
    heavy_columns,
    heavy_model,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "fraud" / "fraud_handbook_simulated"
COLUMNS = ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", "TX_FRAUD")
BASELINES = ("lr", "rf", "xgb")


def read_transactions(folder: Path) -> pd.DataFrame:
    files = sorted(
        p
        for p in folder.iterdir()
        if p.name.endswith((".csv", ".csv.gz", ".parquet")) and p.is_file()
    )
    if not files:
        sys.exit(f"no .csv, .csv.gz or .parquet files in {folder}: pass --data DIR")
    parts = [
        pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p, usecols=list(COLUMNS))
        for p in files
    ]
    frame = pd.concat(parts, ignore_index=True)
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        sys.exit(f"{folder}: columns {', '.join(missing)} are missing (expected {COLUMNS})")
    frame = frame[list(COLUMNS)]
    frame["TX_DATETIME"] = pd.to_datetime(frame["TX_DATETIME"])
    return frame.sort_values(["TX_DATETIME", "TRANSACTION_ID"], kind="stable").reset_index(
        drop=True
    )


def history_mask(frame: pd.DataFrame, split: Split, days: int) -> np.ndarray:
    """The rows of the ``days`` days that end where the split's training ends."""
    end = pd.Timestamp(split.train_end)
    start = end - pd.Timedelta(days=days)
    when = frame["TX_DATETIME"]
    return np.asarray((when >= start) & (when < end))


def fit_and_score(
    model: Any, x: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, float]:
    began = time.perf_counter()
    model.fit(x[train], y[train])
    scores = model.predict_proba(x[test])[:, 1]
    return scores, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder of transaction files")
    parser.add_argument("--train-start", default="2018-05-25", help="first training day")
    parser.add_argument("--test-weeks", type=int, default=3, help="test periods, one after another")
    parser.add_argument("--train-days", type=int, default=7)
    parser.add_argument("--delay-days", type=int, default=7)
    parser.add_argument("--test-days", type=int, default=7)
    parser.add_argument(
        "--heavy-train-days",
        type=int,
        default=28,
        help="labelled days the heavy model trains on, ending where the others' training ends",
    )
    parser.add_argument("--k", type=int, default=100, help="cards an analyst team checks a day")
    parser.add_argument("--no-tuned", action="store_true", help="skip chapter 5's tuned baselines")
    args = parser.parse_args()
    heavy_days = args.heavy_train_days
    if heavy_days < args.train_days:
        sys.exit("--heavy-train-days must be at least --train-days")

    load = start_load()
    began = time.perf_counter()
    frame = read_transactions(args.data)
    print(f"read {len(frame):,} transactions in {time.perf_counter() - began:.1f} s")
    began = time.perf_counter()
    feats = compute_heavy(frame)
    if not (feats["TRANSACTION_ID"].to_numpy() == frame["TRANSACTION_ID"].to_numpy()).all():
        sys.exit("features came back in another row order")
    x = pd.concat([frame[["TX_AMOUNT"]], feats.drop(columns="TRANSACTION_ID")], axis=1)
    print(f"computed {x.shape[1] - 1} heavy features in {time.perf_counter() - began:.1f} s")
    y = frame["TX_FRAUD"].to_numpy().astype(int)
    x_fast = x[list(FAST_FEATURES)]
    x_heavy = x[list(heavy_columns())]

    splits = protocol_splits(
        frame,
        args.train_start,
        test_weeks=args.test_weeks,
        train_days=args.train_days,
        delay_days=args.delay_days,
        test_days=args.test_days,
    )
    contenders: dict[str, tuple[Any, pd.DataFrame, str]] = {
        name: (model, x_fast, "train")
        for name, model in handbook_baselines(tuned=not args.no_tuned).items()
    }
    contenders["fast"] = (fast_model(), x_fast, "train")
    contenders["heavy"] = (heavy_model(), x_heavy, "heavy")
    if heavy_days > args.train_days:
        contenders["heavy_7d"] = (heavy_model(), x_heavy, "train")

    weeks: list[dict[str, Any]] = []
    fit_s: dict[str, float] = {name: 0.0 for name in contenders}
    for split in splits:
        masks = {"train": split.train, "heavy": history_mask(frame, split, heavy_days)}
        test_rows = frame[split.test]
        frauds = int(y[split.train].sum())
        print(f"\n{split.describe()}: {int(split.train.sum()):,} training rows ({frauds} frauds),")
        print(f"  {len(test_rows):,} test rows after leaving out known compromised cards")
        row: dict[str, Any] = {"split": split.describe(), "metrics": {}}
        for name, (model, inputs, mask) in contenders.items():
            scores, seconds = fit_and_score(model, inputs, y, masks[mask], split.test)
            fit_s[name] += seconds
            metrics = assess(test_rows, scores, k=args.k, known_compromised=split.known)
            row["metrics"][name] = metrics
            print(
                f"  {name:<10} AUC {metrics['auc']:.3f}  AP {metrics['ap']:.3f}  "
                f"CP@{args.k} {metrics[f'cp{args.k}']:.3f}   ({seconds:.1f} s)"
            )
        weeks.append(row)

    cp = f"cp{args.k}"
    mean = {
        name: {m: float(np.mean([w["metrics"][name][m] for w in weeks])) for m in ("auc", "ap", cp)}
        for name in contenders
    }
    print(f"\nmean over {len(weeks)} test week(s), {args.train_start} onwards")
    print(f"{'model':<10} {'AUC':>6} {'AP':>6} {'CP@' + str(args.k):>7}")
    for name, m in mean.items():
        print(f"{name:<10} {m['auc']:6.3f} {m['ap']:6.3f} {m[cp]:7.3f}")
    baselines = [n for n in contenders if n not in ("fast", "heavy", "heavy_7d")]
    beats = all(
        mean["heavy"]["ap"] > mean[b]["ap"] and mean["heavy"][cp] > mean[b][cp] for b in baselines
    )
    best_ap = max(baselines, key=lambda b: mean[b]["ap"])
    best_cp = max(baselines, key=lambda b: mean[b][cp])
    print(
        f"heavy vs the best baseline: AP {mean['heavy']['ap']:.3f} vs {mean[best_ap]['ap']:.3f} "
        f"({best_ap}), CP@{args.k} {mean['heavy'][cp]:.3f} vs {mean[best_cp][cp]:.3f} "
        f"({best_cp}): {'above every baseline' if beats else 'NOT above every baseline'}"
    )

    result: dict[str, Any] = {}
    for name, m in mean.items():
        for metric, value in m.items():
            result[f"{metric}_{name}"] = None if math.isnan(value) else round(value, 4)
    result.update(
        heavy_beats_baselines=beats,
        train_start=args.train_start,
        test_weeks=args.test_weeks,
        heavy_train_days=heavy_days,
        weeks=weeks,
        fit_s={k: round(v, 2) for k, v in fit_s.items()},
        machine=machine_info(load, ("scikit-learn", "lightgbm", "xgboost-cpu", "duckdb")),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
