"""`loopline pii audit` and `loopline pii forget SUBJECT` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from _ids import letters_id
from loopline.config import Settings, load_settings
from loopline.core.feedback import record_feedback
from loopline.core.metadata import MetadataStore
from loopline.core.predlog import PredictionLogger, PredictionRecord
from loopline.data.pii import PiiMasker
from loopline.label.queue import LabelQueue

KEY = "1:" + "c" * 32
SUBJECT = "jasonsnyder@lynch.org"


def loopline(
    *args: str, cwd: Path, key: str | None = KEY, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb")
    env.pop("LOOPLINE_PII_KEY", None)
    if key is not None:
        env["LOOPLINE_PII_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "loopline", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture
def settings(project: Path) -> Settings:
    (project / "loopline.yaml").write_text("pii:\n  policy: aws-transactions\n  engine: regex\n")
    return load_settings(project)


def _log(settings: Settings, inputs: list[dict[str, Any]]) -> list[str]:
    assert settings.prediction_log_url
    ids = [letters_id() for _ in inputs]
    with PredictionLogger(settings.prediction_log_url) as logger:
        for request_id, row in zip(ids, inputs, strict=True):
            record = PredictionRecord(
                request_id, datetime.now(UTC), "fraud", "1", "champion", row, "legit", {}, 1.0
            )
            logger.log(record)
    return ids


def _masked_project(settings: Settings) -> list[str]:
    """Predictions of two customers (masked), feedback on each, both in the review queue."""
    masker = PiiMasker("aws-transactions", KEY)
    rows = [
        masker.mask_record({"customer_email": email, "billing_phone": "585-588-4205", "x": 1.0})
        for email in (SUBJECT, "mary80@hotmail.com", SUBJECT)
    ]
    request_ids = _log(settings, rows)
    assert settings.metadata_url
    store = MetadataStore(settings.metadata_url)
    for request_id in request_ids:
        record_feedback(store, request_id, "fraud")
    queue = LabelQueue(store, "review", labels=["fraud", "legit"])
    queue.add_items([{"item_id": r, "payload": p} for r, p in zip(request_ids, rows, strict=True)])
    return request_ids


def test_audit_of_a_clean_project_exits_0(settings: Settings) -> None:
    _masked_project(settings)

    done = loopline("pii", "audit", cwd=settings.project_root)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "no personal data found" in done.stdout
    assert "distinct pseudonyms by key id: pn1_ 2" in done.stdout  # two customers


def test_audit_finds_planted_pii_says_where_and_exits_1(settings: Settings) -> None:
    _masked_project(settings)
    _log(settings, [{"customer_email": SUBJECT, "x": 2.0}])
    logs = settings.home_dir / "logs"
    logs.mkdir()
    (logs / "worker.log").write_text("ERROR could not score tx from 25.45.36.165\n")

    done = loopline("pii", "audit", "--json", cwd=settings.project_root)
    text = loopline("pii", "audit", cwd=settings.project_root)

    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["clean"] is False
    found = {(f["store"], f["kind"]) for f in report["findings"]}
    assert found == {
        ("predictions", "EMAIL_ADDRESS"),
        ("predictions", "email column customer_email not pseudonymised"),
        ("files", "IP_ADDRESS"),
    }
    assert {f["location"] for f in report["findings"] if f["store"] == "files"} == {
        "logs/worker.log"
    }
    assert text.returncode == 1
    assert "personal data found: 3 values in 3 places" in text.stdout
    for output in (done.stdout, text.stdout):
        assert SUBJECT not in output and "25.45.36.165" not in output  # examples are masked


def test_audit_of_one_store_and_its_user_errors(settings: Settings, tmp_path: Path) -> None:
    _log(settings, [{"customer_email": SUBJECT}])

    only_logs = loopline("pii", "audit", "--store", "files", cwd=settings.project_root)
    unknown = loopline("pii", "audit", "--store", "s3", cwd=settings.project_root)
    outside = loopline("pii", "audit", cwd=tmp_path)

    assert only_logs.returncode == 0, only_logs.stdout + only_logs.stderr
    assert unknown.returncode == 2 and "unknown store 's3'" in unknown.stderr
    assert "hint: --store takes one of metadata, artifacts" in unknown.stderr
    assert outside.returncode == 2 and "no Loopline project in" in outside.stderr


def test_forget_removes_a_subject_and_says_what_it_removed(settings: Settings) -> None:
    request_ids = _masked_project(settings)
    root = settings.project_root

    dry = loopline("pii", "forget", SUBJECT, "--dry-run", "--json", cwd=root)
    done = loopline("pii", "forget", "-", cwd=root, stdin=SUBJECT.upper() + "\n")
    again = loopline("pii", "forget", SUBJECT, "--json", cwd=root)

    assert dry.returncode == 0, dry.stderr
    would = json.loads(dry.stdout)
    assert would["dry_run"] is True and would["total_removed"] == 6
    assert done.returncode == 0, done.stdout + done.stderr
    for line in ("predictions", "feedback", "label_tasks (review queue)"):
        assert line in done.stdout
    assert "removed 6 records in total" in done.stdout
    assert SUBJECT not in done.stdout
    assert json.loads(again.stdout)["total_removed"] == 0
    assert settings.metadata_url
    queue = LabelQueue(MetadataStore(settings.metadata_url), "review")
    assert queue.tasks()["item_id"].tolist() == [request_ids[1]]


def test_forget_without_a_key_is_a_user_error(settings: Settings) -> None:
    _masked_project(settings)

    done = loopline("pii", "forget", SUBJECT, cwd=settings.project_root, key=None)

    assert done.returncode == 2
    assert "error: no PII key is configured" in done.stderr
    assert "hint: generate one with" in done.stderr
