"""Hints of the review queue and Label Studio import, as a command-line user meets them.

Each case runs the real ``loopline label ...`` command in a child process: the hint must
name what can be typed on the command line (a flag or a command) and hold no Python syntax.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

_KEYWORD = re.compile(r"\b[A-Za-z_]\w*=")
_CALL = re.compile(r"\b[A-Za-z_][\w.]*\(")
_ATTRIBUTE = re.compile(r"\b[A-Z]\w+\.[a-z_]\w*")


def run_loopline(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LOOPLINE_PROJECT_ROOT=str(project), COLUMNS="1000", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-m", "loopline", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def cli_hint(result: subprocess.CompletedProcess[str]) -> str:
    """The ``hint:`` line of a failed command (exit code 2), checked for Python syntax."""
    assert result.returncode == 2, result.stdout + result.stderr
    hints = [line for line in result.stderr.splitlines() if line.startswith("hint: ")]
    assert len(hints) == 1, result.stderr
    hint = hints[0].removeprefix("hint: ")
    assert not _KEYWORD.search(hint), f"keyword-argument syntax in the hint: {hint}"
    assert not _CALL.search(hint), f"a Python call in the hint: {hint}"
    assert not _ATTRIBUTE.search(hint), f"a Python attribute in the hint: {hint}"
    return hint


def test_queue_add_maps_columns_with_flags(project: Path) -> None:
    items = project / "comments.csv"
    items.write_text(
        "COMMENT_ID,CONTENT,CLASS\nc1,check out my channel,spam\nc2,lovely song,ham\n",
        encoding="utf-8",
    )
    hint = cli_hint(run_loopline(project, "label", "queue", "add", "comments.csv"))
    assert "--text-column CONTENT" in hint
    assert "label" not in hint.replace("labels", "")  # items need no label column

    ok(
        run_loopline(
            project,
            "label",
            "queue",
            "add",
            "comments.csv",
            "--text-column",
            "CONTENT",
            "--label-column",
            "CLASS",
            "--labels",
            "ham,spam",
        )
    )
    shown = json.loads(ok(run_loopline(project, "label", "queue", "next", "--json")))
    assert shown["labels"] == ["ham", "spam"]
    task = shown["task"]
    assert task["text"] == "check out my channel"
    # The label column is the item's current label, shown to the reviewer.
    assert task["payload"]["given_label"] == "spam"
    assert task["payload"]["COMMENT_ID"] == "c1"

    missing = cli_hint(
        run_loopline(
            project, "label", "queue", "add", "comments.csv", "--text-column", "CONTENT",
            "--label-column", "KLASS",
        )
    )  # fmt: skip
    assert "--label-column CLASS" in missing


def test_submit_hints_name_commands(project: Path) -> None:
    (project / "items.csv").write_text("item_id,text\n1,great day\n", encoding="utf-8")
    ok(run_loopline(project, "label", "queue", "add", "items.csv", "--labels", "neg,pos"))

    unknown = cli_hint(run_loopline(project, "label", "queue", "submit", "999", "pos"))
    assert "loopline label queue next" in unknown

    task = json.loads(ok(run_loopline(project, "label", "queue", "next", "--json")))["task"]
    wrong = cli_hint(run_loopline(project, "label", "queue", "submit", str(task["id"]), "meh"))
    assert "--labels" in wrong


def test_import_without_labels_names_the_flag(project: Path) -> None:
    (project / "ls.json").write_text(json.dumps([{"data": {"text": "a"}}]), encoding="utf-8")
    hint = cli_hint(run_loopline(project, "label", "import", "ls.json"))
    assert "--labels" in hint


def test_serve_without_labels_names_the_command(project: Path) -> None:
    hint = cli_hint(run_loopline(project, "label", "serve", "--queue", "nothing"))
    assert "loopline label queue add" in hint


def test_queue_add_maps_json_fields_with_flags(project: Path) -> None:
    items = project / "items.jsonl"
    items.write_text(
        '{"id": "m1", "body": "so happy today", "mood": "positive", "text": "old"}\n',
        encoding="utf-8",
    )
    missing = cli_hint(
        run_loopline(project, "label", "queue", "add", "items.jsonl", "--text-column", "content")
    )
    assert "--text-column FIELD" in missing
    ok(
        run_loopline(
            project, "label", "queue", "add", "items.jsonl", "--text-column", "body",
            "--label-column", "mood", "--labels", "negative,positive",
        )
    )  # fmt: skip
    task = json.loads(ok(run_loopline(project, "label", "queue", "next", "--json")))["task"]
    assert task["text"] == "so happy today"
    assert task["payload"] == {"id": "m1", "given_label": "positive", "text_original": "old"}
