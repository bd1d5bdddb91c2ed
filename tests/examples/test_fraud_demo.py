"""`loopline demo fraud`: the fraud reference system end to end on the handbook's data.

The real command (typer's runner, in-process) in an empty project with the shared data:
both models trained by pipelines with lineage, every June transaction of the region
decided exactly once, the analyst's reviews recorded as labels, the heavy model retrained
through the gate, a bad release rolled back automatically (in the alias history with its
reason), and the summary's numbers where the measured run put them (floors with margin).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from loopline.cli import app
from loopline.config import load_settings
from loopline.core import schema
from loopline.core.metadata import MetadataStore
from loopline.errors import LooplineError

REGION = 10  # the demo's default: every tenth customer


def _listing(folder: Path) -> list[tuple[str, int, float]]:
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime) for p in folder.iterdir())


@pytest.mark.slow
def test_demo_fraud_runs_the_whole_loop(project: Path, shared_data: Path) -> None:
    data = shared_data / "fraud" / "fraud_handbook_simulated"
    before = _listing(data)
    result = CliRunner().invoke(
        app, ["-C", str(project), "demo", "fraud", "--data", str(data), "--json"]
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    summary = json.loads(result.stdout)
    assert _listing(data) == before  # the shared data is only read
    store = MetadataStore(load_settings(project).metadata_url or "")

    # Both models trained by pipelines and registered as champions, with their lineage.
    for name in ("fraud-fast", "fraud-heavy"):
        lineage = store.model_version(name, "1")
        assert lineage is not None and lineage["datasets"] == ["fraud-history:v1"]
        assert lineage["run_id"] == summary["models"][name]["run_id"]
        assert summary["models"][name]["gate"]["passed"] is True
    assert store.current_alias("fraud-fast", "champion") == "1"

    # Every June transaction of the region decided exactly once, none lost or repeated.
    june = pd.read_csv(data / "transactions_2018-06.csv.gz")
    june = june[june["CUSTOMER_ID"] % REGION == 0]
    d = schema.decisions
    with store.engine.connect() as conn:
        decided = [str(t) for t in conn.execute(sa.select(d.c.tx_id)).scalars()]
        customers = conn.execute(sa.select(d.c.features).limit(50)).scalars().all()
    assert sorted(decided) == sorted(june["TRANSACTION_ID"].astype(str))
    stream = summary["stream"]
    assert stream["decided"] == stream["transactions"] == len(june) == len(decided)
    assert (stream["duplicates"], stream["dead_lettered"]) == (0, 0)
    assert all('"CUSTOMER_ID":"pn1_' in f for f in customers)  # masked at the door

    # The analyst's answers are labels: feedback of source review, true to the simulator.
    truth = dict(zip(june["TRANSACTION_ID"].astype(str), june["TX_FRAUD"].astype(str), strict=True))
    fb = schema.feedback
    with store.engine.connect() as conn:
        reviews = conn.execute(
            sa.select(fb.c.request_id, fb.c.label).where(
                fb.c.source == "review", fb.c.model_name == "fraud-fast"
            )
        ).all()
    assert len(reviews) == stream["reviewed"] > 100
    assert all(truth[tx] == label for tx, label in reviews)
    assert sum(label == "1" for _, label in reviews) == stream["reviewed_fraud"] > 20
    # Labels 7 days late: those of June 1-23 are in by the end of June 30.
    assert stream["delayed_labels"] == int((june["TX_DATETIME"] < "2018-06-24").sum())

    # The retrain: a new version through the gate, trained on the labelled decisions.
    retrain = next(e for e in summary["events"] if e["event"] == "retrain")
    assert retrain["version"] == "2" and retrain["gate"]["passed"] is True
    assert any("vs champion" in r for r in retrain["gate"]["reasons"])
    assert {"review", "delayed"} <= set(retrain["label_sources"])
    lineage = store.model_version("fraud-heavy", "2")
    assert lineage is not None and lineage["datasets"] == ["labelled_decisions:v1"]

    # The bad release, rolled back by the watcher on delayed-label average precision.
    rolled = next(e for e in summary["events"] if e["event"] == "auto_rollback")
    assert (rolled["rolled_back_from"], rolled["champion"]) == ("3", "2")
    moves = [
        (e["version"], e["actor"], e["reason"])
        for e in store.alias_history("fraud-heavy")
        if e["alias"] == "champion"
    ]
    assert [v for v, _, _ in moves] == ["1", "2", "3", "2"]
    assert moves[2][1] == "demo-operator"
    assert moves[3][1] == "loopline monitor"
    assert moves[3][2].startswith("automatic rollback: live average_precision of v3 is ")
    assert store.current_alias("fraud-heavy", "champion") == "2"

    # The numbers (measured: heavy v1 test AP 0.54-0.55, June fast AUC 0.80 / AP 0.37,
    # heavy v2 0.83 and v3 0.01 on their traffic).
    assert summary["models"]["fraud-heavy"]["test"]["average_precision"] > 0.4
    assert summary["models"]["fraud-fast"]["test"]["average_precision"] > 0.35
    quality = summary["june_quality"]
    assert quality["fast"]["auc"] > 0.75 and quality["fast"]["ap"] > 0.25
    assert 0 < quality["fast"]["cp100"] <= quality["ceiling"]["cp100"]
    versions = summary["monitoring"]["fraud-heavy"]["by_version"]
    assert versions["3"]["average_precision"] < 0.1 < versions["2"]["average_precision"] - 0.2
    weeks = summary["monitoring"]["fraud-heavy"]["weeks"]
    assert len(weeks) == 5 and all(w["roc_auc"] is not None for w in weeks)
    assert weeks[0]["label_coverage"] == 1.0 and weeks[-1]["label_coverage"] < 0.1
    # the decision service logs the (pseudonymised) customer beside fraud-fast's inputs:
    # its weeks get card precision@100 too
    fast_weeks = summary["monitoring"]["fraud-fast"]["weeks"]
    assert all(w["cp_at_100"] is not None for w in fast_weeks[:4])
    bands = [g["group"] for g in summary["monitoring"]["fraud-fast"]["fairness"]]
    assert bands == ["< 20", "[20, 50)", "[50, 100)", "[100, 220)", ">= 220"]
    assert Path(summary["monitoring"]["fraud-heavy"]["html"]).is_file()

    # A second run in the same project says so instead of mixing two runs.
    again = CliRunner().invoke(app, ["-C", str(project), "demo", "fraud", "--data", str(data)])
    assert isinstance(again.exception, LooplineError)
    assert "already has a fraud-fast champion" in again.exception.message


def test_demo_fraud_without_its_data_says_where_to_point(project: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    missing.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "loopline", "-C", str(project), "demo", "fraud",
         "--data", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: --data {missing} does not hold transactions_2018-04")
    assert lines[1].startswith("hint: pass --data FOLDER")
