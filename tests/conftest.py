"""Shared fixtures: an isolated project per test, the shared data sets, a fresh PostgreSQL DB."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# Helpers shared by test folders (e.g. _browser.py) import by name: --import-mode=importlib
# puts no test folder on sys.path.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="session")
def _scratch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep MLflow, onnxruntime and friends from writing into the real HOME."""
    home = tmp_path_factory.mktemp("home")
    saved = {k: os.environ.get(k) for k in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    os.environ["HOME"] = str(home)
    os.environ["XDG_CACHE_HOME"] = str(home / ".cache")
    os.environ["XDG_CONFIG_HOME"] = str(home / ".config")
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    for key in [k for k in os.environ if k.startswith("LOOPLINE_")]:
        del os.environ[key]
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def shared_data() -> Path:
    """The read-only data sets beside the repository."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder (its .loopline/ is created on first use)."""
    root = tmp_path / "project"
    root.mkdir()
    return root


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A brand-new PostgreSQL database on the local server, dropped afterwards."""
    sa = pytest.importorskip("sqlalchemy")
    base = os.environ.get("LOOPLINE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"loopline_test_{uuid.uuid4().hex[:10]}"
    from loopline.core.dburl import sqlalchemy_url

    admin = sa.create_engine(sqlalchemy_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the server is not running here
        pytest.fail(f"PostgreSQL at {base} is not reachable: {exc}")
    url = base.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
