"""Environment MLflow needs before it is imported (kept out of MLflow's own defaults)."""

from __future__ import annotations

import logging
import os


def quiet_mlflow() -> None:
    """Turn off telemetry, git probing and INFO chatter before the first ``import mlflow``.

    MLflow logs every schema migration of its SQLite store at INFO; Loopline's own
    output says what happened instead.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    # MLflow configures its loggers on import from this variable (INFO by default).
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("alembic").setLevel(logging.WARNING)
