"""``loopline demo fraud``: the fraud reference system end to end, offline, in about a minute.

The Fraud Detection Handbook's simulated transactions, one region's customers (every
tenth customer id: about 960 transactions a day): fraud-fast and fraud-heavy trained on
April-May by Loopline pipelines, June streamed day by day through the decision service
with an analyst on the review queue and the true labels 7 days late, then the heavy
model retrained through the gate, a bad release rolled back automatically, and the
monitoring report of both models (see :mod:`loopline.examples.fraud.simulate`).

Everything is embedded (SQLite metadata, local MLflow, the embedded feature store) in the
project's ``.loopline/``; the demo's own files (the PII key, the heavy features, the
reports) are in ``.loopline/demo/fraud/``.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.config import Settings
from loopline.errors import LooplineError

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

    from loopline.core.metadata import MetadataStore
    from loopline.core.runner import RunEvent
    from loopline.examples.fraud.data import World
    from loopline.examples.fraud.simulate import Simulation

__all__ = ["FRAUD", "MONITORING", "print_summary", "run_demo"]

FAST, HEAVY = "fraud-fast", "fraud-heavy"
#: the decision service's policy (the ``fraud`` section of ``loopline.yaml``)
FRAUD: dict[str, Any] = {
    "fast_model": f"{FAST}@champion",
    "heavy_model": f"{HEAVY}@champion",
    "features": "embedded",
    "thresholds": {"review": 0.1, "block": 0.9},
    "review_queue": "fraud-review",
    "model_poll_s": None,  # the service is opened afresh each simulated day
}
#: the watcher's rule (the ``monitoring`` section): the heavy champion is rolled back when
#: its delayed-label average precision trails the previous champion's by more than 0.1
MONITORING: dict[str, Any] = {
    "auto_rollback": [
        {"model": HEAVY, "metric": "average_precision", "margin": 0.1, "min_labels": 500}
    ],
}


def demo_settings(settings: Settings) -> Settings:
    """The project's settings with the demo's PII policy and key, decision policy and
    monitoring rules (the project's own ``loopline.yaml`` is left as it is)."""
    from loopline.examples.fraud.pipelines import POLICY

    folder = settings.home_dir / "demo" / "fraud"
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "pii.key"
    if not key.exists():
        key.touch(mode=0o600)
        key.write_text(secrets.token_hex(32) + "\n", encoding="utf-8")
    pii = {**settings.pii, "policy": POLICY, "key_file": str(key)}
    return settings.model_copy(update={"pii": pii, "fraud": FRAUD, "monitoring": MONITORING})


def _check_fresh(store: MetadataStore) -> None:
    for name in (FAST, HEAVY):
        if store.current_alias(name, "champion") is not None:
            raise LooplineError(
                f"this project already has a {name} champion (a fraud demo ran here before)",
                hint="run the demo in an empty folder: `loopline -C NEW_FOLDER demo fraud`",
            )


def run_demo(
    settings: Settings,
    *,
    data: Path | None = None,
    on_event: Callable[[RunEvent], None] | None = None,
    region: int = 10,
    days: int = 30,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the whole fraud system (see the module); returns a JSON-able summary.

    ``region``: every ``region``-th customer is streamed (10: about 960 transactions a
    day); ``days``: how many of June's days (the retrain, the bad release and the rollback
    need the whole month). ``progress`` gets a line per stage.
    """
    import logging
    import warnings

    # MLflow's notes on integer columns in the models' input examples (the calendar flags
    # and counts, never missing here) and on LightGBM's pickle format (a local store).
    quiet = logging.getLogger("mlflow.lightgbm")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
            return _run(settings, data, on_event, region, days, progress)
    finally:
        quiet.setLevel(level)


def _run(
    settings: Settings,
    data: Path | None,
    on_event: Callable[[RunEvent], None] | None,
    region: int,
    days: int,
    progress: Callable[[str], None] | None,
) -> dict[str, Any]:
    from loopline.core.metadata import MetadataStore
    from loopline.examples.fraud.data import find_data, load_world

    started = time.perf_counter()
    say = progress or (lambda _text: None)
    folder = find_data(data)
    assert settings.metadata_url is not None
    store = MetadataStore(settings.metadata_url)
    _check_fresh(store)
    settings = demo_settings(settings)
    demo_dir = settings.home_dir / "demo" / "fraud"
    world = load_world(folder, region=region, days=days)
    say(
        f"data: {len(world.history):,} transactions of April-May and {len(world.june):,} of "
        f"June for every {region}th customer"
    )
    with tempfile.TemporaryDirectory(prefix="loopline-fraud-demo-") as tmp:
        inputs = Path(tmp)
        heavy = _heavy_table(world, demo_dir)
        say("training fraud-fast and fraud-heavy on April-May")
        trained = _train(settings, world, inputs, on_event)
        _warm_store(settings, world, days_delay=7)
        sim = _simulate(settings, store, world, heavy, inputs, demo_dir, on_event, say)
    from loopline.examples.fraud.results import june_quality, report, stream_summary

    say("monitoring reports")
    monitoring = {
        name: report(settings, name, demo_dir, fairness=name == FAST) for name in (FAST, HEAVY)
    }
    return {
        "data": {
            "source": str(folder),
            "region": f"customers whose id is a multiple of {region}",
            "history": _counts(world.history),
            "june": _counts(world.june),
            "june_days": [world.june_days[0], world.june_days[-1]],
        },
        "models": trained,
        "stream": stream_summary(sim),
        "events": sim.events,
        "june_quality": june_quality(store, world),
        "monitoring": monitoring,
        "alias_history": {
            name: [
                {k: e[k] for k in ("alias", "version", "actor", "reason")}
                for e in store.alias_history(name)
                if e["alias"] == "champion"
            ]
            for name in (FAST, HEAVY)
        },
        "champions": {name: store.current_alias(name, "champion") for name in (FAST, HEAVY)},
        "duration_s": round(time.perf_counter() - started, 1),
        "artifacts": settings.artifact_root,
        "mlflow": settings.mlflow_tracking_uri,
        "metadata": settings.metadata_url,
        "demo_dir": str(demo_dir),
    }


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    return {"transactions": len(frame), "frauds": int(frame["TX_FRAUD"].sum())}


# -- set-up -------------------------------------------------------------------------------
def _heavy_table(world: World, demo_dir: Path) -> pd.DataFrame:
    """The heavy features of every transaction of the region (the batch side computes them
    offline, point in time), by transaction id; and the labelled history with them, for
    the retrain (both without personal data)."""
    from loopline.fraud.features import compute_heavy

    frame = world.frame
    heavy = compute_heavy(frame, threads=2)
    heavy.to_parquet(demo_dir / "heavy_features.parquet", index=False)
    history = heavy.iloc[: len(world.history)].drop(columns=["TX_AMOUNT"], errors="ignore")
    keep = world.history[["TRANSACTION_ID", "TX_DATETIME", "TX_AMOUNT", "TX_FRAUD"]]
    history = keep.merge(history, on="TRANSACTION_ID", validate="one_to_one")
    history.to_parquet(demo_dir / "history_heavy.parquet", index=False)
    return heavy.set_index("TRANSACTION_ID")


def _train(
    settings: Settings, world: World, inputs: Path, on_event: Callable[[RunEvent], None] | None
) -> dict[str, Any]:
    from loopline.examples.fraud.pipelines import fraud_fast, fraud_heavy

    source = inputs / "history_2018-04-01_2018-05-31.parquet"
    world.history.to_parquet(source, index=False)  # the door's input: masked when read
    out = {}
    for name, pipe, params in (
        (FAST, fraud_fast, {}),
        (HEAVY, fraud_heavy, {"n_jobs": 1}),
    ):
        result = pipe.run(settings, on_event=on_event, source=str(source), **params)
        out[name] = _trained(result)
    return out


def _trained(result: Any) -> dict[str, Any]:
    registered = result.load("register")
    decision = result.load("gate")
    metrics = result.load("evaluate")
    return {
        "run_id": result.run_id,
        "version": registered.version,
        "promoted": registered.promoted,
        "dataset_version": registered.dataset_version,
        "gate": {"passed": decision["passed"], "reasons": decision["reasons"]},
        "test": {k: metrics.get(k) for k in ("n", "roc_auc", "average_precision")},
        "seconds": round(result.duration_s, 1),
    }


def _warm_store(settings: Settings, world: World, *, days_delay: int) -> None:
    """The online store as of June 1st: every April-May transaction (masked) and their
    frauds as labels known ``days_delay`` days after each one."""
    import pandas as pd

    from loopline.data.pii import open_masker
    from loopline.examples.fraud.data import LABELS
    from loopline.stream.stores import open_features

    masked = open_masker(settings).mask_frame(world.history.drop(columns=list(LABELS)))
    online = open_features("embedded", settings)
    assert online is not None
    try:
        online.warm(masked.to_dict("records"))  # type: ignore[attr-defined]
        frauds = world.history[world.history["TX_FRAUD"] == 1]
        known = frauds["TX_DATETIME"] + pd.Timedelta(days=days_delay)
        online.add_labels(  # type: ignore[attr-defined]
            zip(frauds["TRANSACTION_ID"], [1.0] * len(frauds), known, strict=True)
        )
    finally:
        online.close()  # type: ignore[attr-defined]


# -- June ---------------------------------------------------------------------------------
def _simulate(
    settings: Settings,
    store: MetadataStore,
    world: World,
    heavy: pd.DataFrame,
    inputs: Path,
    demo_dir: Path,
    on_event: Callable[[RunEvent], None] | None,
    say: Callable[[str], None],
) -> Simulation:
    from loopline.examples.fraud.simulate import Plan, Simulation
    from loopline.stream.policy import fraud_settings

    plan = Plan()
    sim = Simulation(
        settings=settings,
        store=store,
        world=world,
        heavy=heavy,
        config=fraud_settings(settings),
        folder=inputs,
        plan=plan if len(world.june_days) >= 30 else _short_plan(len(world.june_days)),
    )
    sim.retrain = lambda: _retrain(settings, demo_dir, on_event)
    sim.bad_release = lambda: _bad_release(settings, store, demo_dir)
    say(f"streaming June ({len(world.june_days)} days) through the decision service")
    sim.run()
    return sim


def _short_plan(days: int) -> Any:
    from loopline.examples.fraud.simulate import Plan

    return Plan(retrain_day=max(1, days // 2), bad_release_day=max(2, days // 2 + 2))


def _retrain(
    settings: Settings, demo_dir: Path, on_event: Callable[[RunEvent], None] | None
) -> dict[str, Any]:
    """fraud-heavy retrained on April-May and June's labelled decisions (reviews, delayed
    labels), scored by the gate on the newest labelled tenth against the champion."""
    from loopline.examples.fraud.pipelines import retrain
    from loopline.fraud.models import heavy_columns, heavy_model

    result = retrain.run(
        settings,
        on_event=on_event,
        model_name=HEAVY,
        features=list(heavy_columns()),
        model=heavy_model(n_jobs=1),
        test_size=0.1,
        frame_params={
            "features": str(demo_dir / "heavy_features.parquet"),
            "history": str(demo_dir / "history_heavy.parquet"),
        },
    )
    frame = result.load("labelled_heavy")
    sources = frame["label_source"].fillna("history").value_counts().to_dict()
    return {**_trained(result), "rows": len(frame), "label_sources": sources}


def _bad_release(settings: Settings, store: MetadataStore, demo_dir: Path) -> dict[str, Any]:
    """A heavy model trained on misaligned (shuffled) labels, registered and promoted by
    hand, past the gate: the release the automatic rollback has to catch."""
    import pandas as pd

    from loopline.fraud.models import heavy_columns, heavy_model
    from loopline.registry.project import open_registry
    from loopline.train.model import fit_model

    history = pd.read_parquet(demo_dir / "history_heavy.parquet")
    shuffled = history.assign(
        TX_FRAUD=history["TX_FRAUD"].sample(frac=1, random_state=1).to_numpy()
    )
    features = list(heavy_columns())
    registry = open_registry(settings, store)
    info = registry.register(
        fit_model(shuffled, heavy_model(n_jobs=1, n_estimators=100), features=features,
                  target="TX_FRAUD"),
        name=HEAVY,
        params={"note": "training labels misaligned"},
        metrics={},
        dataset_version="history-shuffled",
        input_example=shuffled[features].head(2),
    )  # fmt: skip
    reason = "manual: hotfix release (promoted without the gate)"
    registry.promote(HEAVY, info.version, reason=reason, actor="demo-operator")
    return {"version": str(info.version), "reason": reason}


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The demo's closing tables."""
    from loopline.examples.fraud.summary import print_tables

    print_tables(summary, console)
