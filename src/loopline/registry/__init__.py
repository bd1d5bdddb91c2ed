"""Model registry: versions, aliases (champion/previous), promote, rollback, alias history.

A wrapper over MLflow's Model Registry; see :mod:`loopline.registry.models`. Importing this
package does not import mlflow.
"""

from __future__ import annotations

from loopline.registry.models import (
    CHAMPION,
    PREVIOUS,
    TAG_DATASET_VERSION,
    TAG_MLFLOW_RUN_ID,
    AliasHistory,
    LoadedModel,
    ModelRegistry,
    ModelVersionInfo,
    parse_ref,
)

__all__ = [
    "CHAMPION",
    "PREVIOUS",
    "TAG_DATASET_VERSION",
    "TAG_MLFLOW_RUN_ID",
    "AliasHistory",
    "LoadedModel",
    "ModelRegistry",
    "ModelVersionInfo",
    "parse_ref",
]
