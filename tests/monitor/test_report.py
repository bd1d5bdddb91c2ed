"""`loopline monitor report`: the JSON summary, the terminal summary and the HTML file.

The HTML test opens the file in headless Chromium (Playwright) and checks that every plot
rendered with a non-zero size, with no console error and no network request.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa
import typer
from rich.console import Console
from typer.testing import CliRunner

from _browser import CHROMIUM_ARGS
from loopline.cli.monitor import monitor_app
from loopline.config import load_settings
from loopline.core import schema
from loopline.core.feedback import record_feedback
from loopline.core.metadata import MetadataStore
from loopline.core.predlog import ParquetSink, PredictionRecord
from loopline.errors import LooplineError
from loopline.monitor.profile import build_profile
from loopline.monitor.report import (
    MonitorData,
    MonitorReport,
    build_report,
    build_report_from_data,
    parse_since,
    print_summary,
    render_html,
    short_labels,
    write_html,
)

T0 = datetime(2026, 6, 1, tzinfo=UTC)
CHROMIUM = "/usr/bin/chromium"


def applicants(rng: np.random.Generator, n: int, day: int) -> pd.DataFrame:
    """Loan applications; from day 3 incomes fall, and on day 4 the income is not logged."""
    income = rng.normal(50.0 if day < 3 else 38.0, 12.0, n)
    sex = rng.choice(["f", "m"], n)
    purpose = rng.choice(["car", "home", "study"], n, p=[0.5, 0.3, 0.2])
    approve = income + np.where(sex == "m", 4.0, 0.0) > 48
    truth = np.where(rng.random(n) < 0.1, ~(income > 48), income > 48)
    frame = pd.DataFrame(
        {
            "income": income.round(1),
            "sex": sex,
            "purpose": purpose,
            "prediction": np.where(approve, "approve", "deny"),
            "label": np.where(truth, "approve", "deny"),
        }
    )
    if day == 4:
        frame["income"] = np.nan
    return frame


def monitor_data(days: int = 6, per_day: int = 200, *, with_profile: bool = True) -> MonitorData:
    """The same story in memory, as :func:`load_monitor_data` would return it."""
    rng = np.random.default_rng(11)
    parts = []
    for day in range(days):
        frame = applicants(rng, per_day, day)
        labelled = rng.random(per_day) < 0.6
        parts.append(
            pd.DataFrame(
                {
                    "request_id": [f"d{day}-{i}" for i in range(per_day)],
                    "ts": pd.Timestamp(T0)
                    + pd.Timedelta(days=day)
                    + pd.to_timedelta(np.arange(per_day) * 5, unit="min"),
                    "model_name": "loans",
                    "model_version": "1" if day < 3 else "2",
                    "route": "champion",
                    "input.income": frame["income"],
                    "input.sex": frame["sex"],
                    "input.purpose": frame["purpose"],
                    "prediction": frame["prediction"],
                    "proba.approve": np.where(frame["prediction"] == "approve", 0.7, 0.3),
                    "proba.deny": np.where(frame["prediction"] == "approve", 0.3, 0.7),
                    "label_true": frame["label"].where(labelled),
                }
            )
        )
    train = applicants(rng, 3000, 0)
    profile = (
        build_profile(
            train,
            numeric=["income"],
            categorical=["sex", "purpose"],
            prediction="prediction",
            labels="label",
            slices=["sex"],
        )
        if with_profile
        else None
    )
    return MonitorData(
        model_name="loans",
        frame=pd.concat(parts, ignore_index=True),
        unmatched_feedback=3,
        profile=profile,
        reference_version="2" if with_profile else None,
        reference_note="reference profile of version 2" if with_profile else "no reference",
    )


@pytest.fixture(scope="module")
def report() -> MonitorReport:
    """One report shared by the tests that only read it (building it takes a second)."""
    return build_report_from_data(monitor_data(), "1D", group_column="sex")


def test_report_sections_are_complete_and_json_able(report: MonitorReport) -> None:
    data = json.loads(orjson.dumps(report.to_dict(), default=str))

    assert data["n_predictions"] == 1200 and data["versions"] == ["1", "2"]
    assert data["unmatched_feedback"] == 3
    assert [w["start"][:10] for w in data["drift_over_time"]][:2] == ["2026-06-01", "2026-06-02"]
    income = [w["features"]["income"] for w in data["drift_over_time"]]
    assert [f["drifted"] for f in income] == [False, False, False, True, True, True]
    assert income[4]["status"] == "all_missing"
    assert any(i["kind"] == "all_missing" for i in data["drift_over_time"][4]["issues"])
    assert {d["feature"] for d in data["distributions"]} == {"income", "sex", "purpose"}
    for dist in data["distributions"]:
        assert sum(dist["reference"]) == pytest.approx(1.0, abs=1e-6)
    windows = [w for w in data["performance"]["windows"] if w["model_version"] is None]
    assert len(windows) == 6 and all(0.5 < w["label_coverage"] < 0.7 for w in windows)
    assert {g["group"] for g in data["fairness"]["overall"]["groups"]} == {"f", "m"}
    assert data["fairness"]["overall"]["demographic_parity_difference"] > 0.05
    assert len(data["fairness"]["over_time"]) == 6
    assert data["reference"]["source"] == "reference profile of version 2"


def test_without_a_stored_profile_the_first_window_is_the_reference() -> None:
    report = build_report_from_data(monitor_data(with_profile=False), "1D")
    assert "first window" in report.reference["source"]
    assert any("no reference profile" in m for m in report.messages)
    assert report.fairness is None


def test_terminal_summary(report: MonitorReport) -> None:
    console = Console(record=True, width=120)
    print_summary(report, console)
    text = console.export_text()
    assert "loans" in text and "income" in text and "demographic-parity" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-01", datetime(2026, 5, 1, tzinfo=UTC)),
        ("2026-05-01T12:30", datetime(2026, 5, 1, 12, 30, tzinfo=UTC)),
        ("7d", datetime(2026, 5, 24, tzinfo=UTC)),
        ("24h", datetime(2026, 5, 30, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, now=datetime(2026, 5, 31, tzinfo=UTC)) == expected


def test_parse_since_rejects_nonsense() -> None:
    with pytest.raises(LooplineError, match="cannot read the time"):
        parse_since("yesterday-ish")


# --- on disk, through the CLI --------------------------------------------------------------


def write_project(root: Path) -> None:
    """Log the in-memory story with the real sink, feedback with the real API."""
    data = monitor_data()
    settings = load_settings(root)
    store = MetadataStore(str(settings.metadata_url))
    from loopline.core.artifacts import ArtifactStore

    assert data.profile is not None
    stored = ArtifactStore(str(settings.artifact_root)).save(data.profile.to_dict())
    store.record_model_version(
        model_name="loans",
        version="2",
        model_hash="0" * 64,
        dataset_hash=None,
        dataset_version=None,
        mlflow_run_id=None,
        run_id=None,
    )
    with store.engine.begin() as conn:
        conn.execute(sa.update(schema.model_versions).values(profile_hash=stored.hash))
    sink = ParquetSink(str(settings.prediction_log_url))
    for _, day in data.frame.groupby(data.frame["ts"].dt.day):
        sink.write(
            [
                PredictionRecord(
                    request_id=row["request_id"],
                    ts=row["ts"].to_pydatetime(),
                    model_name="loans",
                    model_version=row["model_version"],
                    route="champion",
                    inputs={
                        "income": row["input.income"],
                        "sex": row["input.sex"],
                        "purpose": row["input.purpose"],
                    },
                    label=row["prediction"],
                    probabilities={"approve": row["proba.approve"], "deny": row["proba.deny"]},
                    latency_ms=1.0,
                )
                for row in day.to_dict("records")
            ]
        )
    for row in data.frame.dropna(subset=["label_true"]).itertuples():
        record_feedback(store, row.request_id, row.label_true, model_name="loans")
    record_feedback(store, "not-a-request", "deny", model_name="loans")
    with store.engine.begin() as conn:
        conn.execute(
            schema.alert_events.insert().values(
                model_name="loans",
                model_version="2",
                rule="accuracy-floor",
                metric="accuracy",
                value=0.71,
                threshold=0.8,
                action="log",
                status="fired",
                created_at=T0 + timedelta(days=5),
            )
        )
    store.close()


def _cli() -> typer.Typer:
    root = typer.Typer()

    @root.callback()
    def _root(project: Path = typer.Option(None, "--project", "-C")) -> None:
        """Test root."""

    root.add_typer(monitor_app, name="monitor")
    return root


def test_report_cli_writes_html_and_json(project: Path, tmp_path: Path) -> None:
    write_project(project)
    html = tmp_path / "out" / "report.html"
    args = [
        "-C",
        str(project),
        "monitor",
        "report",
        "loans",
        "--window",
        "1D",
        "--group",
        "sex",
        "--html",
        str(html),
    ]

    result = CliRunner().invoke(_cli(), [*args, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["html"] == str(html) and html.is_file()
    assert payload["unmatched_feedback"] == 1
    assert payload["n_labeled"] == int(monitor_data().frame["label_true"].notna().sum())
    assert payload["alerts"][0]["rule"] == "accuracy-floor"
    assert payload["reference"]["version"] == "2"

    text = CliRunner().invoke(_cli(), args)
    assert text.exit_code == 0, text.output
    assert "HTML report written" in text.output and "Performance per 1D window" in text.output

    later = CliRunner().invoke(_cli(), [*args[:5], "--since", "2030-01-01"])
    assert isinstance(later.exception, LooplineError)
    assert "no predictions of model 'loans' are logged since 2030-01-01" in str(later.exception)
    missing = CliRunner().invoke(_cli(), [*args[:5], "--group", "age"])
    assert isinstance(missing.exception, LooplineError)
    assert "'age' is not in the prediction log" in str(missing.exception)


def test_build_report_of_unknown_model_is_a_clear_error(project: Path) -> None:
    with pytest.raises(LooplineError, match="no predictions of model 'ghost'") as info:
        build_report("ghost", load_settings(project))
    # Nothing is registered: the hint says how to get a model, never to serve 'ghost'.
    assert info.value.hint and "loopline serve ghost" not in info.value.hint
    assert "no registered model" in info.value.hint


# --- the HTML in a real browser --------------------------------------------------------------


def _browser_or_skip() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        if os.environ.get("CI"):
            pytest.fail(f"Chromium is missing at {CHROMIUM}")
        pytest.skip("Chromium is not installed (apt-get install chromium)")


def test_html_report_renders_in_headless_chromium(report: MonitorReport, tmp_path: Path) -> None:
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    path = write_html(report, tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in text

    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri())
            charts = page.evaluate(
                """() => Array.from(document.querySelectorAll('section')).map(s => ({
                    id: s.id,
                    svgs: Array.from(s.querySelectorAll('svg')).map(svg => {
                        const box = svg.getBoundingClientRect();
                        return {w: box.width, h: box.height,
                                marks: svg.querySelectorAll('rect, circle, polyline').length};
                    })
                }))"""
            )
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()

    assert errors == []
    assert requests == [path.as_uri()]  # the file itself, nothing else
    by_id = {c["id"]: c["svgs"] for c in charts}
    for section in ("drift-over-time", "distributions", "performance", "fairness"):
        assert by_id[section], f"no plot in {section}"
        for svg in by_id[section]:
            assert svg["w"] > 100 and svg["h"] > 100 and svg["marks"] > 0, section
    assert len(by_id["distributions"]) == 3


# --- one diagnosis, one wording ----------------------------------------------------------


def test_the_report_explains_with_the_words_of_diagnose(report: MonitorReport) -> None:
    from loopline.monitor.diagnose import diagnose_data

    diagnosis = diagnose_data(monitor_data(), "1D")
    html = render_html(report.to_dict())
    console = Console(record=True, width=400)
    print_summary(report, console)
    text = console.export_text()

    for line in [diagnosis.summary, *(e for f in diagnosis.findings for e in f.evidence)]:
        assert escape(line) in html, line
    assert diagnosis.summary in text.replace("\n", " ")
    # No second, independent explanation: every concept-drift sentence is the diagnosis'.
    explained = {e for f in diagnosis.findings for e in f.evidence}
    for line in report.to_dict()["concept_drift"]["evidence"]:
        assert line in explained, line
    assert report.to_dict()["diagnosis"]["recommendation"] == diagnosis.recommendation


def test_a_note_is_shown_once_in_the_html(report: MonitorReport) -> None:
    html = render_html(report.to_dict())
    assert html.count("name request ids that are not in the log") == 1


def test_unknown_model_lists_the_known_ones_and_suggests_no_serving(project: Path) -> None:
    write_project(project)
    store = MetadataStore(str(load_settings(project).metadata_url))
    store.record_model_version(
        model_name="idle",
        version="1",
        model_hash="1" * 64,
        dataset_hash=None,
        dataset_version=None,
        mlflow_run_id=None,
        run_id=None,
    )
    store.close()

    for command in ("report", "diagnose"):
        result = CliRunner().invoke(_cli(), ["-C", str(project), "monitor", command, "nosuch"])
        error = result.exception
        assert isinstance(error, LooplineError), result.output
        said = f"{error} {error.hint}"
        assert "no model 'nosuch' is registered" in said
        assert "loans" in said and "idle" in said  # the names that exist
        assert "serve nosuch" not in said

        # A registered model that never served: serving it is the right advice.
        idle = CliRunner().invoke(_cli(), ["-C", str(project), "monitor", command, "idle"])
        assert isinstance(idle.exception, LooplineError)
        assert "'idle' is registered" in str(idle.exception)
        assert "loopline serve idle" in (idle.exception.hint or "")


# --- time axes and the drift heat map -------------------------------------------------------


@pytest.mark.parametrize(
    ("starts", "expected"),
    [
        (["2026-11-30T03:21:05", "2026-11-30T03:21:07", "2026-11-30T03:21:09"],
         ["03:21:05", "03:21:07", "03:21:09"]),
        (["2026-11-30T03:21:05.100", "2026-11-30T03:21:05.350", "2026-11-30T03:21:06"],
         ["03:21:05.100", "03:21:05.350", "03:21:06.000"]),
        (["2026-06-01T00:00", "2026-06-02T00:00", "2026-06-03T00:00"],
         ["06-01", "06-02", "06-03"]),
        (["2026-06-01T22:00", "2026-06-01T23:00", "2026-06-02T00:00"],
         ["06-01 22:00", "06-01 23:00", "06-02 00:00"]),
        (["2026-06-01T10:00", "2026-06-01T10:30"], ["10:00", "10:30"]),
        (["2025-12-31T00:00", "2026-01-01T00:00"], ["2025-12-31", "2026-01-01"]),
    ],
)  # fmt: skip
def test_time_labels_use_the_resolution_the_range_needs(
    starts: list[str], expected: list[str]
) -> None:
    from loopline.monitor.report import short_labels

    assert short_labels([s + "+00:00" for s in starts]) == expected


def _seconds_apart() -> MonitorData:
    """The story squeezed into seconds: one prediction per second, windows of 20 rows."""
    data = monitor_data(days=1)
    data.frame["ts"] = pd.Timestamp(T0) + pd.to_timedelta(np.arange(len(data.frame)), unit="s")
    return data


def _x_axis_labels(svg: str) -> list[str]:
    return re.findall(r"<text [^>]*(?:text-anchor='middle'|transform='rotate)[^>]*>([^<]*)<", svg)


def test_every_time_axis_has_distinct_labels_for_distinct_windows() -> None:
    data = build_report_from_data(_seconds_apart(), "20").to_dict()
    html = render_html(data)
    sections = dict(re.findall(r"<section id='([^']+)'>(.*?)</section>", html))
    svgs = [
        svg
        for name in ("drift-over-time", "performance")
        for svg in re.findall(r"<svg.*?</svg>", sections[name])
    ]
    assert len(svgs) == 4  # heat map, share line, metrics, label coverage
    for svg in svgs:
        labels = _x_axis_labels(svg)
        assert len(labels) >= 3
        assert len(set(labels)) == len(labels), labels
        assert all(":" in label for label in labels), labels  # seconds apart: times


def _rgb(fill: str) -> tuple[int, int, int] | None:
    match = re.fullmatch(r"rgb\((\d+),(\d+),(\d+)\)", fill)
    if match:
        return int(match[1]), int(match[2]), int(match[3])
    if re.fullmatch(r"#[0-9a-fA-F]{6}", fill):
        return int(fill[1:3], 16), int(fill[3:5], 16), int(fill[5:7], 16)
    return None


def test_a_red_heat_map_cell_is_a_flagged_feature_and_counts_in_the_share() -> None:
    data = monitor_data()
    # A last, small window (10 rows, fewer than min_rows) whose incomes are far off.
    tail = data.frame.iloc[:10].copy()
    tail["ts"] = pd.Timestamp(T0) + pd.Timedelta(days=6, hours=1)
    tail["input.income"] = 500.0
    tail["request_id"] = [f"tail-{i}" for i in range(10)]
    data.frame = pd.concat([data.frame, tail], ignore_index=True)

    payload = build_report_from_data(data, "1D").to_dict()
    windows = payload["drift_over_time"]
    labels = short_labels([w["start"] for w in windows])
    assert windows[-1]["share_drifted"] is None  # too few rows: nothing was judged

    section = re.search(r"<section id='drift-over-time'>.*?</section>", render_html(payload))
    assert section is not None
    cells = re.findall(r"<rect [^>]*fill='([^']+)'[^>]*><title>([^<@]+) @ ([^:]+):", section[0])
    assert len(cells) == 3 * len(windows)
    red = 0
    for fill, feature, label in cells:
        rgb = _rgb(fill)
        assert rgb is not None, fill
        if rgb[0] - max(rgb[1], rgb[2]) > 40:  # a red cell
            red += 1
            window = windows[labels.index(label.strip())]
            assert window["features"][feature.strip()]["drifted"], (feature, label)
            assert window["share_drifted"] and window["share_drifted"] > 0, (feature, label)
    assert red >= 3  # the income drift of days 3-5 (day 4: income not logged)


def test_looking_up_the_known_models_creates_no_store(project: Path) -> None:
    from loopline.monitor.report import load_monitor_data

    before = sorted(project.rglob("*"))
    with pytest.raises(LooplineError, match="no model 'ghost' is registered"):
        load_monitor_data("ghost", load_settings(project))
    assert sorted(project.rglob("*")) == before
