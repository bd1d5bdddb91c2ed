"""The demo's data: the Fraud Detection Handbook's simulated transactions of April-June 2018,
cut down to one region's customers so the whole loop runs in about a minute.

The three files ``transactions_2018-0{4,5,6}.csv.gz`` are read where ``--data`` points
(the folder holding them, or a folder above it), by default from the shared data folder
beside a source checkout (``../shared/data/fraud/fraud_handbook_simulated``, where the
tests and benchmarks find them). They are only read: everything the demo writes goes to
the project's ``.loopline/`` folder or to a temporary folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loopline.errors import LooplineError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FILES", "LABELS", "World", "default_data_dir", "find_data", "load_world"]

FILES = tuple(f"transactions_2018-0{m}.csv.gz" for m in (4, 5, 6))
FOLDER = Path("fraud") / "fraud_handbook_simulated"
#: the simulator's labels: known to the demo's clock, never sent on the stream
LABELS = ("TX_FRAUD", "TX_FRAUD_SCENARIO")
COLUMNS = ("TRANSACTION_ID", "TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT", *LABELS)


def default_data_dir() -> Path:
    """The shared data beside a source checkout: ``<checkout>/../shared/data/fraud/...``."""
    checkout = Path(__file__).resolve().parents[4]
    return checkout.parent / "shared" / "data" / FOLDER


def _holds_files(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


def find_data(path: Path | None = None) -> Path:
    """The folder holding the three files: ``path`` (or ``fraud_handbook_simulated`` or
    ``fraud/fraud_handbook_simulated`` inside it), else :func:`default_data_dir`."""
    hint = (
        "pass --data FOLDER with transactions_2018-04/05/06.csv.gz, the Fraud Detection "
        "Handbook's simulated transactions (see shared/data/SOURCES.md, 3b)"
    )
    if path is None:
        folder = default_data_dir()
        if _holds_files(folder):
            return folder
        raise LooplineError(f"the fraud demo's data is not at {folder}", hint=hint)
    given = Path(path).expanduser()
    for folder in (given, given / FOLDER.name, given / FOLDER):
        if folder.is_dir() and _holds_files(folder):
            return folder
    missing = [n for n in FILES if not (given / n).is_file()]
    raise LooplineError(
        f"--data {given} does not hold {', '.join(missing) if given.is_dir() else FILES[0]}",
        hint=hint,
    )


@dataclass
class World:
    """One region's transactions (every ``region``-th customer): April-May to train on,
    June to stream; ``june_days`` the days streamed."""

    history: pd.DataFrame
    june: pd.DataFrame
    region: int
    june_days: list[str]

    @property
    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.concat([self.history, self.june], ignore_index=True)


def load_world(folder: Path, *, region: int = 10, days: int = 30) -> World:
    """The transactions of the customers whose id is a multiple of ``region``, in time
    order; June cut to its first ``days`` days."""
    import pandas as pd

    if region < 1 or not 1 <= days <= 30:
        raise LooplineError(
            f"region must be at least 1 and days 1..30, found {region} and {days}",
            hint="the demo streams June 2018 (30 days)",
        )
    parts = []
    for name in FILES:
        try:
            part = pd.read_csv(folder / name, usecols=list(COLUMNS))
        except (OSError, ValueError) as exc:
            raise LooplineError(
                f"cannot read {folder / name}: {exc}",
                hint="the file must be the handbook's CSV (columns TRANSACTION_ID, "
                "TX_DATETIME, CUSTOMER_ID, TERMINAL_ID, TX_AMOUNT, TX_FRAUD, ...)",
            ) from None
        parts.append(part[part["CUSTOMER_ID"] % region == 0])
    tx = pd.concat(parts, ignore_index=True)
    tx["TX_DATETIME"] = pd.to_datetime(tx["TX_DATETIME"])
    tx = tx.sort_values(["TX_DATETIME", "TRANSACTION_ID"], kind="stable").reset_index(drop=True)
    june_start = pd.Timestamp("2018-06-01")
    end = june_start + pd.Timedelta(days=days)
    history = tx[tx["TX_DATETIME"] < june_start].reset_index(drop=True)
    june = tx[(tx["TX_DATETIME"] >= june_start) & (tx["TX_DATETIME"] < end)]
    day_names = [str(d.date()) for d in pd.date_range(june_start, periods=days, freq="D")]
    return World(history, june.reset_index(drop=True), region, day_names)
