"""The metadata store on SQLite and PostgreSQL, and its migrations."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from loopline import pipeline, step
from loopline.config import load_settings
from loopline.core.metadata import SCHEMA_HEAD, MetadataStore
from loopline.errors import ConfigError, LooplineError


def test_new_store_is_migrated_to_head_and_reopens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    MetadataStore(url).close()
    store = MetadataStore(url)
    with store.engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert version == SCHEMA_HEAD
    assert store.list_runs() == []


def test_alias_history_is_recorded_in_order(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'm.db'}")
    for version, previous in (("1", None), ("2", "1")):
        store.record_alias_event(
            model_name="m",
            alias="champion",
            version=version,
            previous_version=previous,
            reason=f"promote {version}",
            actor="test",
            run_id=None,
        )
    history = store.alias_history("m")
    assert [e["version"] for e in history] == ["1", "2"]
    assert history[1]["previous_version"] == "1" and history[1]["reason"] == "promote 2"
    assert store.current_alias("m", "champion") == "2"
    assert store.current_alias("m", "previous") is None


def test_unknown_run_id_is_a_user_error(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(LooplineError, match="no run with id"):
        store.get_run("nope")


def test_a_run_id_is_a_prefix_not_a_pattern(tmp_path: Path) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path / 'm.db'}")
    first = store.start_run("p", {}, None, None, "threads")
    store.start_run("p", {}, None, None, "threads")
    assert store.get_run(first[:6])["id"] == first
    with pytest.raises(LooplineError, match="no run id given"):
        store.get_run("")
    with pytest.raises(LooplineError, match="no run with id '%'"):
        store.get_run("%")  # LIKE's wildcard matched every run before


def test_unreachable_database_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot open the metadata store"):
        MetadataStore("postgresql://nobody@127.0.0.1:1/none")


@step
def double(x: int = 2) -> int:
    return x * 2


@pipeline
def doubling(x: int = 2) -> None:
    double(x)


@pytest.mark.postgres
def test_pipeline_runs_against_postgresql(project: Path, postgres_url: str) -> None:
    settings = load_settings(project, metadata_url=postgres_url)
    first = doubling.run(settings, x=21)
    assert first.load("double") == 42
    second = doubling.run(settings, x=21)
    assert second.steps["double"].status == "cached"
    store = MetadataStore(postgres_url)
    runs = store.list_runs()
    assert [r["status"] for r in runs] == ["completed", "completed"]
    assert store.get_run(second.run_id)["steps"][0]["cached_from"] is not None
    store.close()
