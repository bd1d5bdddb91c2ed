"""Fraud features offline: Loopline (DuckDB) vs the Fraud Detection Handbook's pandas method.

Data: the handbook's simulated transactions, 2018-04-01 .. 2018-06-30 (872,795 rows), the
three ``transactions_2018-0{4,5,6}.csv.gz`` of ``../shared/data/fraud/fraud_handbook_simulated``,
read once with pandas into one frame (``TX_DATETIME`` parsed) before any clock starts.

Features (the handbook's chapter 3, 14 of them): weekend and night flags; per customer the
number of transactions and their mean amount over the last 1, 7 and 30 days, ``(t - n, t]``;
per terminal the number of transactions and the share of frauds over the 1, 7 and 30 days
that end 7 days (the label delay) before the transaction, ``(t - 7 - n, t - 7]``.

Contenders, each from the same frame in memory to the 14 columns in memory, in the input's
row order (what the clock covers; reading the CSV files is outside it, for everyone):

- **ours**: ``loopline.features.compute_offline(frame)``: DuckDB window functions (its default
  threads: every core), registering the frame, copying the needed columns in, the query and
  the result put back in input order included. Also timed with ``threads=1``.
- **handbook** (the headline ``pandas_s``): the handbook's published method, re-implemented
  here from its description (its code is GPL): ``groupby("CUSTOMER_ID").apply`` of a function
  that takes the customer's transactions (every column), sorts them by time, indexes them by
  ``TX_DATETIME``, adds ``rolling("<n>D")`` count and mean of ``TX_AMOUNT`` as new columns and
  gives the frame back; then the same per terminal on ``TX_FRAUD`` over ``delay`` and
  ``delay + n`` days (the delayed window is the difference of the two; risk = frauds /
  count, 0 when there are none); then the frame sorted by time, and (for the comparison)
  put back in input order by transaction id. Two departures, both in pandas' favour or
  needed for a fair comparison: the flags use the vectorised ``.dt`` accessors (the handbook
  applies a Python function per row), and every sort is stable, so transactions of one
  customer at the same second keep their input order (the handbook's default quicksort
  leaves their order, and so their features, to chance; ours counts them in input order).
- **lean**: the same algorithm as a pandas expert would tune it: groups of only the two
  columns needed, results built from numpy arrays.
- **groupby-rolling**: the vectorised idiom (what the ``tabular`` template's ``features``
  step does): one ``groupby(...).rolling(...)`` per window over the whole frame sorted by
  entity and time.

Every contender gets one untimed warm-up run, then ``--repeats`` timed runs (default 3); the
median is reported and every time printed, the garbage collector running before each run,
outside the clock. Every cell of every contender is compared with ours: a mismatch is a cell
differing by more than 1e-9.

Online: the latency of ``update_and_read`` for both online stores (embedded SQLite and Redis on
127.0.0.1:6379, a fresh key prefix deleted afterwards), warmed with April's transactions and
the labels known by 2018-05-01, then 10,000 transactions of 2018-05-01 onwards replayed in
time order with each label fed 7 days after its transaction (labels outside the clock); p50,
p90, p99 and max per call, and the online values compared with the offline ones.

    .venv/bin/python benchmarks/fraud_features.py [--repeats 3] [--online N] [--no-online]

The last line is one JSON object: ``rows``, ``features``, ``repeats``, ``offline_s`` (ours,
median), ``pandas_s`` (the handbook's method, median), ``speedup`` (pandas_s / offline_s),
``mismatches`` (cells of the handbook's method differing from ours); the same for the other
contenders (``offline_1thread_s``, ``speedup_1thread``; ``pandas_lean_s``,
``speedup_vs_lean``, ``mismatches_lean``; ``pandas_rolling_s``, ``speedup_vs_rolling``,
``mismatches_rolling``), ``times`` (every timed run), ``online`` (per store: ``p50_us``,
``p90_us``, ``p99_us``, ``max_us``, ``mismatches``, ``transactions``, ``warm_s``) and
``machine`` (cores, load averages at start and end, versions).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _machine import machine_info, start_load
from loopline.features import compute_offline, handbook_features

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "fraud" / "fraud_handbook_simulated"
WINDOWS, DELAY = (1, 7, 30), 7
TOLERANCE = 1e-9
LABELS = {
    "ours": "ours: DuckDB (every core)",
    "ours_1thread": "ours: DuckDB (1 thread)",
    "handbook": "handbook: groupby.apply on frames + rolling",
    "lean": "handbook's algorithm, lean pandas",
    "rolling": "pandas groupby-rolling (vectorised)",
}
REDIS_URL = "redis://127.0.0.1:6379/0"


# -- the handbook's method (re-implemented from its description) ---------------------------


def _flags(tx: pd.DataFrame) -> pd.DataFrame:
    when = tx["TX_DATETIME"]
    return pd.DataFrame(
        {
            "TX_DURING_WEEKEND": (when.dt.weekday >= 5).astype(int),
            "TX_DURING_NIGHT": (when.dt.hour <= 6).astype(int),
        },
        index=tx.index,
    )


def _customer_group(group: pd.DataFrame) -> pd.DataFrame:
    """One customer's transactions (every column), with its window features added."""
    group = group.sort_values("TX_DATETIME", kind="stable")
    group.index = group["TX_DATETIME"]
    for days in WINDOWS:
        window = group["TX_AMOUNT"].rolling(f"{days}D")
        count = window.count()
        group[f"CUSTOMER_TX_{days}D"] = count.to_numpy()
        group[f"CUSTOMER_MEAN_AMOUNT_{days}D"] = (window.sum() / count).to_numpy()
    group.index = group["TRANSACTION_ID"]
    return group


def _terminal_group(group: pd.DataFrame) -> pd.DataFrame:
    """One terminal's transactions (every column), with its delayed features added."""
    group = group.sort_values("TX_DATETIME", kind="stable")
    group.index = group["TX_DATETIME"]
    recent = group["TX_FRAUD"].rolling(f"{DELAY}D")
    recent_frauds, recent_count = recent.sum(), recent.count()
    for days in WINDOWS:
        window = group["TX_FRAUD"].rolling(f"{DELAY + days}D")
        count = window.count() - recent_count
        group[f"TERMINAL_TX_{days}D"] = count.to_numpy()
        group[f"TERMINAL_RISK_{days}D"] = ((window.sum() - recent_frauds) / count).to_numpy()
    group.index = group["TRANSACTION_ID"]
    return group.fillna(0)  # an empty window: risk 0


def handbook_pandas(tx: pd.DataFrame) -> pd.DataFrame:
    """The handbook's way: a function applied to each customer's, then each terminal's,
    transactions (the whole frame's columns), then the frame sorted by time again; here
    also put back in input order (by transaction id) to compare it cell by cell."""
    out = pd.concat([tx, _flags(tx)], axis=1)
    out = out.groupby("CUSTOMER_ID", group_keys=False).apply(_customer_group)
    out = out.groupby("TERMINAL_ID", group_keys=False).apply(_terminal_group)
    out = out.sort_values("TX_DATETIME", kind="stable").reset_index(drop=True)
    return out.set_index("TRANSACTION_ID").loc[tx["TRANSACTION_ID"]].reset_index()


def _customer_lean(customer: pd.DataFrame) -> pd.DataFrame:
    customer = customer.sort_values("TX_DATETIME", kind="stable")
    amounts = pd.Series(customer["TX_AMOUNT"].to_numpy(), index=customer["TX_DATETIME"])
    columns: dict[str, Any] = {}
    for days in WINDOWS:
        window = amounts.rolling(f"{days}D")
        count = window.count().to_numpy()
        columns[f"CUSTOMER_TX_{days}D"] = count
        columns[f"CUSTOMER_MEAN_AMOUNT_{days}D"] = window.sum().to_numpy() / count
    return pd.DataFrame(columns, index=customer.index)


def _terminal_lean(terminal: pd.DataFrame) -> pd.DataFrame:
    terminal = terminal.sort_values("TX_DATETIME", kind="stable")
    frauds = pd.Series(terminal["TX_FRAUD"].to_numpy(), index=terminal["TX_DATETIME"])
    recent = frauds.rolling(f"{DELAY}D")
    recent_count, recent_frauds = recent.count().to_numpy(), recent.sum().to_numpy()
    columns: dict[str, Any] = {}
    for days in WINDOWS:
        window = frauds.rolling(f"{DELAY + days}D")
        count = window.count().to_numpy() - recent_count
        fraud = window.sum().to_numpy() - recent_frauds
        columns[f"TERMINAL_TX_{days}D"] = count
        with np.errstate(invalid="ignore", divide="ignore"):
            columns[f"TERMINAL_RISK_{days}D"] = np.nan_to_num(fraud / count)
    return pd.DataFrame(columns, index=terminal.index)


def lean_pandas(tx: pd.DataFrame) -> pd.DataFrame:
    """The same algorithm, tuned: groups of only the needed columns, numpy arrays out."""
    customers = tx.groupby("CUSTOMER_ID", group_keys=False)[["TX_DATETIME", "TX_AMOUNT"]]
    terminals = tx.groupby("TERMINAL_ID", group_keys=False)[["TX_DATETIME", "TX_FRAUD"]]
    per_customer = customers.apply(_customer_lean).reindex(tx.index)
    per_terminal = terminals.apply(_terminal_lean).reindex(tx.index)
    return pd.concat([_flags(tx), per_customer, per_terminal], axis=1)


def rolling_pandas(tx: pd.DataFrame) -> pd.DataFrame:
    """The same with one vectorised groupby-rolling per window over the whole frame."""
    out = _flags(tx)
    by_customer = tx.sort_values(["CUSTOMER_ID", "TX_DATETIME"], kind="stable")
    by_terminal = tx.sort_values(["TERMINAL_ID", "TX_DATETIME"], kind="stable")

    def rolled(ordered: pd.DataFrame, key: str, column: str, days: int) -> Any:
        return ordered.groupby(key, sort=True).rolling(f"{days}D", on="TX_DATETIME")[column]

    # groupby-rolling answers in (key, position) order: the sorted frame's row order
    for days in WINDOWS:
        window = rolled(by_customer, "CUSTOMER_ID", "TX_AMOUNT", days)
        count = window.count().to_numpy()
        out.loc[by_customer.index, f"CUSTOMER_TX_{days}D"] = count
        out.loc[by_customer.index, f"CUSTOMER_MEAN_AMOUNT_{days}D"] = (
            window.sum().to_numpy() / count
        )
    recent = rolled(by_terminal, "TERMINAL_ID", "TX_FRAUD", DELAY)
    recent_count, recent_frauds = recent.count().to_numpy(), recent.sum().to_numpy()
    for days in WINDOWS:
        window = rolled(by_terminal, "TERMINAL_ID", "TX_FRAUD", DELAY + days)
        count = window.count().to_numpy() - recent_count
        fraud = window.sum().to_numpy() - recent_frauds
        out.loc[by_terminal.index, f"TERMINAL_TX_{days}D"] = count
        with np.errstate(invalid="ignore", divide="ignore"):
            out.loc[by_terminal.index, f"TERMINAL_RISK_{days}D"] = np.nan_to_num(fraud / count)
    return out


# -- timing and comparing ---------------------------------------------------------------------


def timed(name: str, fn: Callable[[], pd.DataFrame], repeats: int) -> tuple[pd.DataFrame, list]:
    print(f"{name}: warm-up ...", flush=True)
    result = fn()
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        print(f"{name}: {times[-1]:.2f} s", flush=True)
    return result, times


def mismatches(ours: pd.DataFrame, theirs: pd.DataFrame, names: tuple[str, ...]) -> dict:
    per_column = {}
    worst = 0.0
    for name in names:
        diff = np.abs(ours[name].to_numpy(float) - theirs[name].to_numpy(float))
        per_column[name] = int((diff > TOLERANCE).sum() + np.isnan(diff).sum())
        worst = max(worst, float(np.nanmax(diff)))
    return {"cells": sum(per_column.values()), "per_column": per_column, "max_diff": worst}


# -- online -----------------------------------------------------------------------------------


def online_latency(tx: pd.DataFrame, offline: pd.DataFrame, count: int) -> dict[str, Any]:
    from loopline.features import EmbeddedFeatureStore, RedisFeatureStore

    features = handbook_features()
    start = pd.Timestamp("2018-05-01")
    history = tx[tx["TX_DATETIME"] < start]
    live = tx[tx["TX_DATETIME"] >= start].iloc[:count]
    columns = ["TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT"]
    known_at = tx["TX_DATETIME"] + pd.Timedelta(days=DELAY)
    early = tx[known_at < start]
    late = tx[(known_at >= start) & (known_at <= live["TX_DATETIME"].iloc[-1])]
    events = [
        (t, 0, i, y)
        for t, i, y in zip(
            known_at[late.index], late["TRANSACTION_ID"], late["TX_FRAUD"], strict=True
        )
    ]
    events += [(t, 1, n, None) for n, t in enumerate(live["TX_DATETIME"])]
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    stream = live[columns].to_dict("records")
    results: dict[str, Any] = {}
    for kind in ("embedded", "redis"):
        prefix = f"bench-features-{uuid.uuid4().hex[:8]}"
        folder = tempfile.TemporaryDirectory()
        try:
            if kind == "embedded":
                store: Any = EmbeddedFeatureStore(Path(folder.name) / "online.sqlite", features)
            else:
                store = RedisFeatureStore(REDIS_URL, prefix, features)
        except Exception as exc:  # Redis not running: say so, go on
            print(f"online {kind}: not measured ({exc})")
            results[kind] = {"error": str(exc)}
            continue
        try:
            began = time.perf_counter()
            store.warm(history[columns].to_dict("records"))
            store.add_labels(
                zip(early["TRANSACTION_ID"], early["TX_FRAUD"], known_at[early.index], strict=True)
            )
            warm_s = time.perf_counter() - began
            answers: list[Any] = [None] * len(stream)
            latencies = []
            for when, what, key, label in events:
                if what == 0:
                    store.add_label(key, label, when)
                    continue
                began = time.perf_counter()
                answers[key] = store.update_and_read(stream[key])
                latencies.append(time.perf_counter() - began)
            us = np.array(latencies) * 1e6
            got = pd.DataFrame(answers)
            expected = offline.loc[live.index].reset_index(drop=True)
            wrong = mismatches(got, expected, features.names)
            results[kind] = {
                "transactions": len(stream),
                "warm_rows": len(history),
                "warm_s": round(warm_s, 2),
                "p50_us": round(float(np.percentile(us, 50)), 1),
                "p90_us": round(float(np.percentile(us, 90)), 1),
                "p99_us": round(float(np.percentile(us, 99)), 1),
                "max_us": round(float(us.max()), 1),
                "mismatches": wrong["cells"],
                "max_diff": wrong["max_diff"],
            }
        finally:
            store.close()
            folder.cleanup()
            if kind == "redis":
                _drop_prefix(prefix)
    return results


def _drop_prefix(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match="{" + prefix + "}*", count=10_000))
    for start in range(0, len(keys), 5_000):
        client.delete(*keys[start : start + 5_000])
    client.close()


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    load_start = start_load()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--online", type=int, default=10_000, help="transactions replayed online")
    parser.add_argument("--no-online", action="store_true", help="skip the online latencies")
    args = parser.parse_args()

    files = sorted(DATA.glob("transactions_2018-0[456].csv.gz"))
    if len(files) != 3:
        sys.exit(f"the handbook's three months are not in {DATA}")
    began = time.perf_counter()
    tx = pd.concat([pd.read_csv(f, parse_dates=["TX_DATETIME"]) for f in files], ignore_index=True)
    print(
        f"read {len(tx):,} transactions in {time.perf_counter() - began:.1f} s (outside the clock)"
    )
    names = handbook_features().names

    runs = {
        "ours": lambda: compute_offline(tx),
        "ours_1thread": lambda: compute_offline(tx, threads=1),
        "handbook": lambda: handbook_pandas(tx),
        "lean": lambda: lean_pandas(tx),
        "rolling": lambda: rolling_pandas(tx),
    }
    results, times = {}, {}
    for key, fn in runs.items():
        results[key], times[key] = timed(LABELS[key], fn, args.repeats)
    ours = results["ours"]
    median = {key: statistics.median(t) for key, t in times.items()}
    wrong = {key: mismatches(ours, results[key], names) for key in runs}

    cells = len(tx) * len(names)
    print(f"\n{len(tx):,} transactions x {len(names)} features = {cells:,} cells")
    print(f"{'contender':44} {'median s':>9} {'/ ours':>7} {'mismatches':>11}  times (s)")
    for key in runs:
        ratio = median[key] / median["ours"]
        shown = ", ".join(f"{t:.2f}" for t in times[key])
        print(
            f"{LABELS[key]:44} {median[key]:9.2f} {ratio:6.1f}x {wrong[key]['cells']:11,}  {shown}"
        )
    largest = ", ".join(f"{key} {wrong[key]['max_diff']:.1e}" for key in runs if key != "ours")
    print(f"largest difference from ours (tolerance {TOLERANCE:g}): {largest}")

    online: dict[str, Any] = {}
    if not args.no_online:
        print(f"\nonline: {args.online:,} transactions of 2018-05-01 on, after April")
        online = online_latency(tx, ours, args.online)
        print(
            f"{'store':10} {'p50 us':>8} {'p90 us':>8} {'p99 us':>8} {'max us':>9} {'mismatch':>9}"
        )
        for store, row in online.items():
            if "error" in row:
                print(f"{store:10} not measured: {row['error']}")
                continue
            print(
                f"{store:10} {row['p50_us']:8.0f} {row['p90_us']:8.0f} {row['p99_us']:8.0f} "
                f"{row['max_us']:9.0f} {row['mismatches']:9,}"
            )

    tools = ["loopline", "duckdb", "pandas", "numpy", "redis"]
    result = {
        "rows": len(tx),
        "features": len(names),
        "repeats": args.repeats,
        "offline_s": round(median["ours"], 3),
        "pandas_s": round(median["handbook"], 3),
        "speedup": round(median["handbook"] / median["ours"], 1),
        "mismatches": wrong["handbook"]["cells"],
        "offline_1thread_s": round(median["ours_1thread"], 3),
        "speedup_1thread": round(median["handbook"] / median["ours_1thread"], 1),
        "pandas_lean_s": round(median["lean"], 3),
        "speedup_vs_lean": round(median["lean"] / median["ours"], 1),
        "mismatches_lean": wrong["lean"]["cells"],
        "pandas_rolling_s": round(median["rolling"], 3),
        "speedup_vs_rolling": round(median["rolling"] / median["ours"], 1),
        "mismatches_rolling": wrong["rolling"]["cells"],
        "times": {key: [round(t, 3) for t in values] for key, values in times.items()},
        "online": online,
        "machine": machine_info(load_start, tools),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
