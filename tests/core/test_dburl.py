"""Driverless PostgreSQL URLs go to psycopg 3, the driver Loopline ships."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from loopline.config import load_settings
from loopline.core.dburl import sqlalchemy_url
from loopline.core.metadata import MetadataStore
from loopline.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"),
        ("postgres://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"),
        ("postgresql:///app?host=/run/pg", "postgresql+psycopg:///app?host=/run/pg"),
        ("PostgreSQL://u@db/App", "postgresql+psycopg://u@db/App"),
        # A driver named explicitly is the user's choice.
        ("postgresql+psycopg://u@db/app", "postgresql+psycopg://u@db/app"),
        ("postgresql+psycopg2://u@db/app", "postgresql+psycopg2://u@db/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
        # Not PostgreSQL at all.
        ("sqlite:///.loopline/metadata.db", "sqlite:///.loopline/metadata.db"),
        ("sqlite://", "sqlite://"),
        ("mysql://u@db/app", "mysql://u@db/app"),
        ("postgresqlish://u@db/app", "postgresqlish://u@db/app"),
        ("/var/log/predictions", "/var/log/predictions"),
    ],
)
def test_sqlalchemy_url_rewrites_only_driverless_postgres(url: str, expected: str) -> None:
    assert sqlalchemy_url(url) == expected


def test_a_bare_postgresql_url_makes_a_psycopg_engine() -> None:
    # SQLAlchemy 2.0 would pick psycopg2 (not installed) for the bare URL.
    engine = sa.create_engine(sqlalchemy_url("postgresql://postgres@127.0.0.1:5432/postgres"))
    assert engine.dialect.driver == "psycopg"
    assert sa.create_engine(sqlalchemy_url("postgres://x@h/db")).dialect.driver == "psycopg"


def test_settings_accept_every_postgres_spelling(project: Path) -> None:
    for url in ("postgresql://u@h/db", "postgresql+psycopg://u@h/db", "postgres://u@h/db"):
        assert load_settings(project, metadata_url=url).metadata_url == url
    with pytest.raises(ConfigError, match="metadata_url"):
        load_settings(project, metadata_url="mysql://u@h/db")


@pytest.mark.postgres
def test_metadata_store_on_a_bare_postgresql_url_uses_psycopg(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql://")
    store = MetadataStore(postgres_url)
    try:
        assert store.engine.dialect.driver == "psycopg"
        assert store.url == postgres_url  # what the user wrote is kept for messages
        run_id = store.start_run("p", params={}, commit=None, dirty=None, executor="local")
        assert store.get_run(run_id)["pipeline"] == "p"
    finally:
        store.close()
