"""Environment MLflow needs before it is imported (kept out of MLflow's own defaults)."""

from __future__ import annotations

import os


def quiet_mlflow() -> None:
    """Turn off MLflow's telemetry and its git probing before the first ``import mlflow``."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
