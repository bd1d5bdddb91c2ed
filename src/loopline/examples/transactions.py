"""Generated card transactions in the format of the Fraud Detection Handbook's simulated data.

Nothing here is real data, and none of it is copied: the process follows the prose of the
handbook's chapter 3 ("Simulated dataset", Le Borgne et al., 2022), written anew here as
vectorised numpy. Customers and terminals sit at random points of a 100 x 100 grid; each
customer pays at the terminals within a radius of home, draws amounts from its own normal
distribution and a Poisson number of transactions per day, at times spread around noon.
Three fraud scenarios are then laid over the genuine traffic:

1. every amount above 220 is fraud;
2. each day a few random terminals are compromised: all their transactions of the next
   28 days are fraud;
3. each day a few random customers' credentials leak: for the next 14 days a third of their
   transactions are fraudsters' spending, five times the customer's usual amount.

The numbers of compromised terminals and customers per day scale with the population, so the
fraud rate (about 0.7%, rising during the first weeks) stays near the real files' whatever
the size. The columns, their order, dtypes and text formats are those of the real monthly
``transactions_2018-04.csv.gz`` files, so a pipeline written for them runs unchanged here.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["COLUMNS", "generate_transactions", "write_transactions"]

COLUMNS = [
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
]

_GRID = 100.0
_RADIUS = 5.0  # a customer uses the terminals this close to home
_DAY = 86_400
_NOON, _TIME_STD = _DAY / 2, 20_000.0  # seconds; draws outside the day are dropped
_AMOUNT_LIMIT = 220.0  # scenario 1
_TERMINAL_DAYS, _CUSTOMER_DAYS = 28, 14  # how long a compromise lasts (scenarios 2 and 3)
# Compromises per day for the handbook's 10,000 terminals / 5,000 customers; scaled to the size.
_TERMINALS_PER_DAY, _CUSTOMERS_PER_DAY = 2 / 10_000, 3 / 5_000
_STOLEN_SHARE, _STOLEN_FACTOR = 1 / 3, 5.0  # scenario 3


def generate_transactions(
    *,
    customers: int = 1_000,
    terminals: int = 2_000,
    days: int = 60,
    start: str = "2018-04-01",
    seed: int = 0,
) -> pd.DataFrame:
    """Simulate ``days`` days of card transactions from ``start`` (a date).

    Returns the columns of the real files, in their order, with the dtypes ``pd.read_csv``
    gives for them: ``TRANSACTION_ID`` (0, 1, ... in time order), ``TX_DATETIME`` (text,
    ``2018-04-01 00:00:31``), ``CUSTOMER_ID``, ``TERMINAL_ID``, ``TX_AMOUNT`` (float, 2
    decimals), ``TX_TIME_SECONDS`` (since ``start``), ``TX_TIME_DAYS``, ``TX_FRAUD`` (0/1),
    ``TX_FRAUD_SCENARIO`` (0 genuine, 1 amount > 220, 2 compromised terminal, 3 compromised
    customer); all integers are int64. Deterministic for ``seed``. Nothing here is real data.
    """
    if customers < 1 or terminals < 1 or days < 0:
        raise ValueError("need customers >= 1, terminals >= 1 and days >= 0")
    rng = np.random.default_rng(seed)
    origin = np.datetime64(pd.Timestamp(start).normalize().to_datetime64(), "s")

    # Profiles: home positions, spending habits, and the terminals in reach.
    home = rng.uniform(0, _GRID, size=(customers, 2))
    mean_amount = rng.uniform(5, 100, size=customers)
    std_amount = mean_amount / 2
    tx_per_day = rng.uniform(0, 4, size=customers)
    spots = rng.uniform(0, _GRID, size=(terminals, 2))
    starts, counts, reachable = _terminals_in_reach(home, spots, _RADIUS)

    # Genuine transactions: a Poisson count per customer and day, times around noon.
    per_day = rng.poisson(np.tile(tx_per_day, days))  # day-major: day 0's customers first
    customer = np.repeat(np.tile(np.arange(customers), days), per_day)
    day = np.repeat(np.repeat(np.arange(days), customers), per_day)
    seconds = np.floor(rng.normal(_NOON, _TIME_STD, size=customer.size)).astype(np.int64)
    amount = rng.normal(mean_amount[customer], std_amount[customer])
    redraw = rng.uniform(0, 2 * mean_amount[customer])
    amount = np.where(amount < 0, redraw, amount)
    pick = (rng.random(customer.size) * counts[customer]).astype(np.int64)
    terminal = reachable[starts[customer] + pick]
    keep = (seconds >= 0) & (seconds < _DAY)
    customer, day, terminal = customer[keep], day[keep], terminal[keep]
    amount = np.round(amount[keep], 2)
    time = day * _DAY + seconds[keep]
    order = np.argsort(time, kind="stable")
    customer, day, terminal = customer[order], day[order], terminal[order]
    amount, time = amount[order], time[order]

    # Fraud, each scenario overriding the previous one where both apply.
    scenario = np.where(amount > _AMOUNT_LIMIT, 1, 0)
    bad_terminals = _compromised(rng, terminals, days, _TERMINALS_PER_DAY, _TERMINAL_DAYS)
    scenario[bad_terminals[terminal, day]] = 2
    bad_customers = _compromised(rng, customers, days, _CUSTOMERS_PER_DAY, _CUSTOMER_DAYS)
    stolen = bad_customers[customer, day] & (rng.random(customer.size) < _STOLEN_SHARE)
    amount = np.where(stolen, np.round(amount * _STOLEN_FACTOR, 2), amount)
    scenario[stolen] = 3

    stamps = np.datetime_as_string(origin + time, unit="s")  # 2018-04-01T00:00:31
    if stamps.size:  # np.char.replace fails on an empty array
        stamps = np.char.replace(stamps, "T", " ")
    return pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(time.size, dtype=np.int64),
            "TX_DATETIME": pd.array(stamps, dtype="str"),
            "CUSTOMER_ID": customer.astype(np.int64),
            "TERMINAL_ID": terminal.astype(np.int64),
            "TX_AMOUNT": amount.astype(np.float64),
            "TX_TIME_SECONDS": time.astype(np.int64),
            "TX_TIME_DAYS": day.astype(np.int64),
            "TX_FRAUD": (scenario > 0).astype(np.int64),
            "TX_FRAUD_SCENARIO": scenario.astype(np.int64),
        }
    )


def write_transactions(path: Path, **kwargs: Any) -> Path:
    """Write :func:`generate_transactions` ``(**kwargs)`` as CSV, gzipped if ``path`` ends in .gz.

    The text is what the real monthly ``.csv.gz`` files hold (header, LF line endings,
    amounts like ``57.16`` or ``146.0``). The gzip header carries no timestamp, so the same
    arguments give byte-identical files.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = generate_transactions(**kwargs).to_csv(index=False, lineterminator="\n")
    data = text.encode("utf-8")
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.write_bytes(data)
    return path


def _terminals_in_reach(
    home: np.ndarray, spots: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per customer, the terminals within ``radius`` as a CSR-like (starts, counts, flat ids).

    A customer with none in reach gets the nearest terminal, so everyone can pay somewhere.
    """
    chunk = max(1, 4_000_000 // max(len(spots), 1))  # bound the distance block's memory
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    for lo in range(0, len(home), chunk):
        block = home[lo : lo + chunk]
        dist2 = ((block[:, None, :] - spots[None, :, :]) ** 2).sum(axis=2)
        near = dist2 <= radius * radius
        nearest = dist2.argmin(axis=1)
        near[np.arange(len(block)), nearest] |= ~near.any(axis=1)
        r, c = np.nonzero(near)  # row-major, so grouped by customer
        rows.append(r + lo)
        cols.append(c)
    row, reachable = np.concatenate(rows), np.concatenate(cols)
    counts = np.bincount(row, minlength=len(home))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return starts, counts, reachable


def _compromised(
    rng: np.random.Generator, population: int, days: int, rate: float, duration: int
) -> np.ndarray:
    """A (population, days) mask: who is compromised on which day.

    Each day a Poisson number (mean ``rate`` times the population) of random members is
    compromised, from that day for ``duration`` days.
    """
    per_day = rng.poisson(rate * population, size=days)
    day = np.repeat(np.arange(days), per_day)
    member = rng.integers(0, population, size=day.size)
    # +1 on the first day and -1 after the last, then a running sum over the days.
    change = np.zeros((population, days + 1), dtype=np.int64)
    np.add.at(change, (member, day), 1)
    np.add.at(change, (member, np.minimum(day + duration, days)), -1)
    return np.cumsum(change, axis=1)[:, :days] > 0
