"""Card fraud on tabular data: the Fraud Detection Handbook's features (labels are known
after a 7-day delay), a time split that leaves that week out, LightGBM judged by average
precision."""

from typing import Any

import pandas as pd
from lightgbm import LGBMClassifier

from loopline import pipeline, step
from loopline.steps import evaluate, gate, profile, read_table, register, split, train

WINDOWS, DELAY = (1, 7, 30), 7
KINDS = ("CUSTOMER_TX", "CUSTOMER_MEAN_AMOUNT", "TERMINAL_TX", "TERMINAL_RISK")
FEATURES = ["TX_AMOUNT", "TX_DURING_WEEKEND", "TX_DURING_NIGHT"]
FEATURES += [f"{kind}_{days}D" for days in WINDOWS for kind in KINDS]


def _rolling(tx: pd.DataFrame, key: str, column: str, days: int) -> tuple[Any, pd.Index]:
    """A ``days``-long time window over each ``key``'s rows, and the row order it follows."""
    ordered = tx.sort_values([key, "TX_DATETIME"], kind="stable")
    window = ordered.groupby(key).rolling(f"{days}D", on="TX_DATETIME")[column]
    return window, ordered.index


@step
def features(tx: pd.DataFrame) -> pd.DataFrame:
    """Weekend and night flags; per customer the number and mean amount of transactions in
    the last 1, 7 and 30 days; per terminal the number and fraud share of its transactions
    in the 1, 7 and 30 days before the last 7 (whose labels are not known yet)."""
    tx = tx.assign(TX_DATETIME=pd.to_datetime(tx["TX_DATETIME"]))
    tx = tx.sort_values("TX_DATETIME", kind="stable").reset_index(drop=True)
    tx["TX_DURING_WEEKEND"] = (tx["TX_DATETIME"].dt.day_of_week >= 5).astype(int)
    tx["TX_DURING_NIGHT"] = (tx["TX_DATETIME"].dt.hour <= 6).astype(int)
    for days in WINDOWS:
        window, order = _rolling(tx, "CUSTOMER_ID", "TX_AMOUNT", days)
        tx.loc[order, f"CUSTOMER_TX_{days}D"] = window.count().to_numpy()
        tx.loc[order, f"CUSTOMER_MEAN_AMOUNT_{days}D"] = window.mean().to_numpy()
        total, order = _rolling(tx, "TERMINAL_ID", "TX_FRAUD", days + DELAY)
        recent, _ = _rolling(tx, "TERMINAL_ID", "TX_FRAUD", DELAY)
        count = total.count().to_numpy() - recent.count().to_numpy()
        frauds = total.sum().to_numpy() - recent.sum().to_numpy()
        tx.loc[order, f"TERMINAL_TX_{days}D"] = count
        tx.loc[order, f"TERMINAL_RISK_{days}D"] = frauds / count.clip(min=1)
    return tx


@pipeline
def tabular(source: str = "data/transactions", model_name: str = "fraud", seed: int = 0) -> None:
    """Train a fraud model on older transactions, test it on the newest ones."""
    tx = features(read_table(source, dataset="transactions"))
    train_df, test_df = split(tx, by="time", time="TX_DATETIME", test_size=0.25, gap="7D")
    booster = LGBMClassifier(n_estimators=300, learning_rate=0.05, random_state=seed, verbose=-1)
    model = train(train_df, model=booster, features=FEATURES, target="TX_FRAUD")
    metrics = evaluate(model, test_df, k=100)
    decision = gate(model, test_df, metrics, model_name=model_name, metric="average_precision",
                    min_value=0.2)  # fmt: skip
    register(model, decision, example=test_df, reference=profile(model, test_df))
