"""Commands that only read create nothing, and say so when there is nothing to read.

Outside a project a read-only command stops with "no Loopline project in DIR" (exit 2);
``-C`` naming a missing folder stops every command; in a project where nothing ran yet
the lists are empty and look-ups name what is missing. In none of these cases is a
folder, a metadata database or an MLflow store created.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from loopline.core.metadata import MetadataStore, StoreMissing
from loopline.errors import ModelNotFound

READ_ONLY = [
    ["runs", "list"],
    ["runs", "show", "abc123"],
    ["models", "list"],
    ["models", "history", "nosuch"],
    ["models", "promote", "nosuch", "1"],
    ["models", "rollback", "nosuch"],
    ["lineage", "nosuch"],
    ["monitor", "report", "nosuch"],
    ["monitor", "diagnose", "nosuch"],
    ["label", "queue", "stats"],
    ["label", "queue", "next"],
]


def loopline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopline", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and lines[1].startswith("hint: "), done.stderr
    return done.stderr


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_outside_a_project_read_only_commands_say_so_and_create_nothing(
    tmp_path: Path, args: list[str]
) -> None:
    folder = tmp_path / "not-a-project"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello\n")

    stderr = one_line_error(loopline(*args, cwd=folder))

    assert f"no Loopline project in {folder}" in stderr
    assert "loopline init" in stderr and "-C" in stderr
    assert tree(folder) == ["notes.txt"]


@pytest.mark.parametrize(
    "args",
    [*READ_ONLY, ["run"], ["serve", "sentiment"], ["watch", "--once", "--on-drift"]],
    ids=" ".join,
)
def test_a_missing_project_folder_is_an_error_for_every_command(
    tmp_path: Path, args: list[str]
) -> None:
    missing = tmp_path / "nowhere"

    stderr = one_line_error(loopline("-C", str(missing), *args, cwd=tmp_path))

    assert f"project folder {missing} does not exist" in stderr
    assert not missing.exists()
    assert tree(tmp_path) == []


@pytest.fixture
def fresh_project(tmp_path: Path) -> Path:
    """A project as `loopline init` writes it, where nothing has run yet."""
    root = tmp_path / "fresh"
    done = loopline("init", str(root), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (root / ".loopline").exists()
    return root


def test_in_a_project_where_nothing_ran_lists_are_empty_and_nothing_is_created(
    fresh_project: Path,
) -> None:
    before = tree(fresh_project)

    runs = loopline("runs", "list", "--json", cwd=fresh_project)
    models = loopline("models", "list", "--json", cwd=fresh_project)
    history = loopline("models", "history", "nosuch", cwd=fresh_project)
    show = loopline("runs", "show", "abc123", cwd=fresh_project)
    stats = loopline("label", "queue", "stats", cwd=fresh_project)

    assert runs.returncode == 0 and json.loads(runs.stdout) == [], runs.stderr
    assert models.returncode == 0 and json.loads(models.stdout) == [], models.stderr
    assert "no registered model named 'nosuch'" in one_line_error(history)
    assert "no run with id 'abc123'" in one_line_error(show)
    assert "nothing is recorded in the project" in one_line_error(stats)
    assert tree(fresh_project) == before


def test_a_project_is_also_a_pyproject_with_a_loopline_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.loopline]\nexecutor = 'threads'\n")

    done = loopline("runs", "list", "--json", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    assert tree(tmp_path) == ["pyproject.toml"]


# -- the stores, opened without creating -------------------------------------------------------
def test_opening_a_missing_sqlite_store_without_create_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state' / 'metadata.db'}"

    with pytest.raises(StoreMissing, match="no Loopline project here") as caught:
        MetadataStore(url, create=False)

    assert "loopline run" in (caught.value.hint or "")
    assert not (tmp_path / "state").exists()


def test_an_existing_store_opens_without_create(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    MetadataStore(url).start_run("p", {}, None, None, "threads")

    store = MetadataStore(url, create=False)

    assert [r["pipeline"] for r in store.list_runs()] == ["p"]


def test_a_database_without_the_schema_is_not_a_store(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (x TEXT)")

    with pytest.raises(StoreMissing, match="no Loopline schema"):
        MetadataStore(f"sqlite:///{path}", create=False)

    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"notes"}


def test_a_postgres_database_without_the_schema_gets_none(postgres_url: str) -> None:
    import sqlalchemy as sa

    from loopline.core.dburl import sqlalchemy_url

    with pytest.raises(StoreMissing):
        MetadataStore(postgres_url, create=False)
    engine = sa.create_engine(sqlalchemy_url(postgres_url))
    try:
        with engine.connect() as conn:
            assert not sa.inspect(conn).has_table("alembic_version")
    finally:
        engine.dispose()

    MetadataStore(postgres_url).close()  # created the normal way, it opens read-only
    MetadataStore(postgres_url, create=False).close()


def test_a_read_only_registry_without_an_mlflow_store_is_empty(tmp_path: Path) -> None:
    from loopline.registry.models import ModelRegistry

    db = tmp_path / "state" / "mlflow.db"
    registry = ModelRegistry(f"sqlite:///{db}", create=False)

    assert registry.list_models() == []
    with pytest.raises(ModelNotFound, match="no registered model named 'x'"):
        registry.resolve("x@champion")
    with pytest.raises(ModelNotFound):
        registry.aliases("x")
    assert not (tmp_path / "state").exists()
