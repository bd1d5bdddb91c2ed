"""Fixtures for the registry tests: a team's shared stores (see _team_stores.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _team_stores import TeamStores, start_team_stores


@pytest.fixture(scope="module")
def team_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamStores]:
    """PostgreSQL + an S3 API server + an MLflow tracking server, for one test module."""
    with start_team_stores(tmp_path_factory.mktemp("team")) as stores:
        yield stores
