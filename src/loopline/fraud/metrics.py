"""The Fraud Detection Handbook's assessment protocol: the train / delay / test split and
card precision top-k.

Le Borgne, Siblini, Lebichot & Bontempi, "Reproducible Machine Learning for Credit Card
Fraud Detection - Practical Handbook" (ULB / Worldline, 2022). Re-implemented from the
book's description (its notebook code is GPL-3.0; nothing of it is copied here):

- **Split** (chapter 3.4, "Baseline fraud detection system", ``get_train_test_set``): train
  on the transactions of ``train_days`` days from ``train_start``; skip ``delay_days`` days
  (their labels are not known yet when the model is trained); test on the next
  ``test_days`` days. Cards **known to be compromised** are removed from each test day:
  a card with a fraud in the training period, or on any day from the end of training up to
  ``delay_days + 1`` days before that test day (a fraud of day ``x`` counts as known from
  day ``x + delay + 1`` on; for the first test day that is the training period alone).
  :func:`handbook_split` returns that split; :func:`protocol_splits` shifts it by
  ``test_days`` per test week (the book's chapter 5 moves its folds by 7 days the same way).
- **Card precision top-k** (chapter 4.3, "Precision top-k metrics", ``card_precision_top_k``):
  for each test day, each card's score is the highest score of its transactions that day
  and its label the highest label (fraudulent when any of its transactions is); the ``k``
  cards with the highest scores are those an analyst team checks, and the day's precision
  is the share of them that are fraudulent (divided by ``k`` even on a day with fewer
  cards). Cards known to be compromised are left out first; so are, by default, the cards
  found (fraudulent and in the top ``k``) on an earlier test day, which the team has
  already blocked. CP@k is the mean of the daily precisions. Ties in score are broken by
  the card id (the book leaves their order to its sort).

AUC ROC and average precision are computed over the test transactions as they are
(scikit-learn's ``roc_auc_score`` and ``average_precision_score``, chapter 4.2).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from loopline.errors import DataError, LooplineError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CardPrecision",
    "Split",
    "assess",
    "card_precision_at_k",
    "handbook_split",
    "known_compromised_cards",
    "protocol_splits",
]

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class CardPrecision:
    """CP@k (``value``: the mean over days) and each day's precision, in day order."""

    value: float
    k: int
    days: tuple[dt.date, ...]
    per_day: tuple[float, ...]
    #: fraudulent cards per day (after the exclusions): the most a perfect model finds
    compromised: tuple[int, ...] = ()


def _day(value: Any) -> dt.date:
    import pandas as pd

    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return pd.Timestamp(value).date()
    except (TypeError, ValueError) as exc:
        raise LooplineError(f"not a date: {value!r}", hint="e.g. 2018-05-25") from exc


def _days_of(frame: pd.DataFrame, time: str) -> np.ndarray:
    """The calendar day of each row (``datetime64[D]``; time-zone-aware times in UTC)."""
    import pandas as pd

    if time not in frame.columns:
        raise DataError(f"the data has no time column {time!r}")
    times = pd.to_datetime(frame[time])
    if getattr(times.dt, "tz", None) is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return np.asarray(times.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]"))


def _known_for(
    known_compromised: Mapping[Any, Collection[Any]] | Collection[Any] | None, day: dt.date
) -> Collection[Any]:
    if known_compromised is None:
        return ()
    if isinstance(known_compromised, Mapping):
        found = known_compromised.get(day)
        if found is None:
            found = known_compromised.get(np.datetime64(day, "D"), ())
        return found
    return known_compromised


def card_precision_at_k(
    frame: pd.DataFrame,
    *,
    k: int = 100,
    score: str | Any,
    label: str = "TX_FRAUD",
    card: str = "CUSTOMER_ID",
    time: str = "TX_DATETIME",
    known_compromised: Mapping[Any, Collection[Any]] | Collection[Any] | None = None,
    remove_detected: bool = True,
) -> CardPrecision:
    """Card precision top-``k`` over the test days of ``frame`` (see the module's docstring).

    ``score`` names the column of fraud scores, or is an array of them (one per row).
    ``known_compromised`` holds the cards known to be compromised before each day: a mapping
    from a day (``datetime.date``) to its cards (what :func:`handbook_split` gives), or one
    collection for every day; their transactions are left out. ``remove_detected`` leaves
    out, on each day, the cards found on the days before (the book's default).
    """
    import pandas as pd

    if type(k) is not int or k <= 0:
        raise LooplineError(f"k must be a positive whole number, got {k!r}")
    for column in (label, card):
        if column not in frame.columns:
            raise DataError(f"the data has no column {column!r}")
    scores = np.asarray(frame[score] if isinstance(score, str) else score, dtype=float)
    if scores.shape != (len(frame),):
        raise LooplineError(f"{len(scores)} scores for {len(frame)} rows")
    days = _days_of(frame, time)
    table = pd.DataFrame(
        {
            "day": days,
            "card": frame[card].to_numpy(),
            "score": scores,
            "fraud": (np.nan_to_num(frame[label].to_numpy(dtype=float)) > 0).astype(np.int8),
        }
    )
    detected: set[Any] = set()
    out_days: list[dt.date] = []
    per_day: list[float] = []
    compromised: list[int] = []
    for day64, rows in table.groupby("day", sort=True):
        day = _day(day64)
        excluded = set(_known_for(known_compromised, day)) | detected
        if excluded:
            rows = rows[~rows["card"].isin(excluded)]
        cards = rows.groupby("card", sort=True).agg(score=("score", "max"), fraud=("fraud", "max"))
        compromised.append(int(cards["fraud"].sum()))
        # highest score first; ties by card id (groupby sorted them: a stable sort keeps it)
        top = cards.sort_values("score", ascending=False, kind="stable").head(k)
        found = top.index[top["fraud"].to_numpy() == 1]
        per_day.append(len(found) / k)
        out_days.append(day)
        if remove_detected:
            detected.update(found.tolist())
    value = float(np.mean(per_day)) if per_day else float("nan")
    return CardPrecision(value, k, tuple(out_days), tuple(per_day), tuple(compromised))


def known_compromised_cards(
    frame: pd.DataFrame,
    days: Iterable[Any],
    *,
    since: Any,
    delay_days: int = 7,
    label: str = "TX_FRAUD",
    card: str = "CUSTOMER_ID",
    time: str = "TX_DATETIME",
) -> dict[dt.date, frozenset[Any]]:
    """For each of ``days``, the cards with a fraud on a day from ``since`` up to
    ``delay_days + 1`` days before it (the frauds whose labels are known by then)."""
    start = np.datetime64(_day(since), "D")
    all_days = _days_of(frame, time)
    fraud = np.nan_to_num(frame[label].to_numpy(dtype=float)) > 0
    cards = frame[card].to_numpy()
    mask = fraud & (all_days >= start)
    fraud_days, fraud_cards = all_days[mask], cards[mask]
    known: dict[dt.date, frozenset[Any]] = {}
    for day in days:
        d = _day(day)
        last = np.datetime64(d - (delay_days + 1) * DAY, "D")
        known[d] = frozenset(fraud_cards[fraud_days <= last].tolist())
    return known


@dataclass(frozen=True)
class Split:
    """One train / delay / test split of the protocol.

    ``train`` and ``test`` are boolean masks over the frame it was made from (``test``
    without the transactions of cards known to be compromised); ``known`` maps each test
    day to those cards.
    """

    train_start: dt.date
    train_end: dt.date  # the first day after training
    test_start: dt.date
    test_end: dt.date  # the first day after the test period
    train: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)
    known: dict[dt.date, frozenset[Any]] = field(repr=False)

    @property
    def test_days(self) -> tuple[dt.date, ...]:
        n = (self.test_end - self.test_start).days
        return tuple(self.test_start + i * DAY for i in range(n))

    def describe(self) -> str:
        last = self.test_end - DAY
        return (
            f"train {self.train_start}..{self.train_end - DAY}, "
            f"delay {self.train_end}..{self.test_start - DAY}, test {self.test_start}..{last}"
        )


def handbook_split(
    frame: pd.DataFrame,
    train_start: Any,
    *,
    train_days: int = 7,
    delay_days: int = 7,
    test_days: int = 7,
    label: str = "TX_FRAUD",
    card: str = "CUSTOMER_ID",
    time: str = "TX_DATETIME",
) -> Split:
    """The book's split starting on ``train_start`` (a date): train on ``train_days`` days,
    skip ``delay_days``, test on ``test_days`` without the cards known to be compromised.

    Days are calendar days of ``time`` (midnight to midnight). An empty training or test
    period is an error: the data does not cover the dates asked for.
    """
    for name, value in (("train_days", train_days), ("test_days", test_days)):
        if type(value) is not int or value <= 0:
            raise LooplineError(f"{name} must be a positive whole number, got {value!r}")
    if type(delay_days) is not int or delay_days < 0:
        raise LooplineError(f"delay_days must be a whole number >= 0, got {delay_days!r}")
    start = _day(train_start)
    train_end = start + train_days * DAY
    test_start = train_end + delay_days * DAY
    test_end = test_start + test_days * DAY
    days = _days_of(frame, time)

    def between(a: dt.date, b: dt.date) -> np.ndarray:
        return np.asarray((days >= np.datetime64(a, "D")) & (days < np.datetime64(b, "D")))

    train = between(start, train_end)
    in_test = between(test_start, test_end)
    first, last = (str(days.min()), str(days.max())) if len(days) else ("-", "-")
    if not train.any() or not in_test.any():
        raise DataError(
            f"no transactions to {'train' if not train.any() else 'test'} on: the data "
            f"covers {first}..{last}, the split asks for {start}..{test_end - DAY}",
            hint="choose a --train-start so that training, delay and test fit in the data",
        )
    test_day_list = [test_start + i * DAY for i in range(test_days)]
    known = known_compromised_cards(
        frame, test_day_list, since=start, delay_days=delay_days, label=label, card=card, time=time
    )
    cards = frame[card].to_numpy()
    test = in_test.copy()
    for day, compromised in known.items():
        if compromised:
            on_day = days == np.datetime64(day, "D")
            test &= ~(on_day & np.isin(cards, list(compromised)))
    return Split(start, train_end, test_start, test_end, train, test, known)


def protocol_splits(
    frame: pd.DataFrame,
    train_start: Any,
    *,
    test_weeks: int = 1,
    train_days: int = 7,
    delay_days: int = 7,
    test_days: int = 7,
    **columns: str,
) -> list[Split]:
    """``test_weeks`` splits, each ``test_days`` later than the one before (its own train
    window, delay and test period), the first starting on ``train_start``."""
    if type(test_weeks) is not int or test_weeks <= 0:
        raise LooplineError(f"test_weeks must be a positive whole number, got {test_weeks!r}")
    start = _day(train_start)
    return [
        handbook_split(
            frame,
            start + i * test_days * DAY,
            train_days=train_days,
            delay_days=delay_days,
            test_days=test_days,
            **columns,
        )
        for i in range(test_weeks)
    ]


def assess(
    frame: pd.DataFrame,
    scores: Any,
    *,
    k: int = 100,
    label: str = "TX_FRAUD",
    card: str = "CUSTOMER_ID",
    time: str = "TX_DATETIME",
    known_compromised: Mapping[Any, Collection[Any]] | None = None,
) -> dict[str, float]:
    """``auc``, ``ap`` and ``cp{k}`` of ``scores`` on the test rows ``frame`` (the book's
    three metrics, chapter 3.4)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = (np.nan_to_num(frame[label].to_numpy(dtype=float)) > 0).astype(int)
    s = np.asarray(scores, dtype=float)
    both = len(np.unique(y)) == 2
    cp = card_precision_at_k(
        frame,
        k=k,
        score=s,
        label=label,
        card=card,
        time=time,
        known_compromised=known_compromised,
    )
    return {
        "auc": float(roc_auc_score(y, s)) if both else float("nan"),
        "ap": float(average_precision_score(y, s)) if both else float("nan"),
        f"cp{k}": cp.value,
    }
