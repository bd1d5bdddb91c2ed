"""The project's registry: MLflow where the settings say, alias history in Loopline's store."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopline.config import Settings
    from loopline.core.metadata import MetadataStore
    from loopline.registry.models import ModelRegistry


def open_registry(settings: Settings, metadata: MetadataStore | None = None) -> ModelRegistry:
    """A :class:`ModelRegistry` for this project (opens the metadata store if not given)."""
    from loopline.core.metadata import MetadataStore
    from loopline.registry.models import ModelRegistry

    assert settings.mlflow_tracking_uri and settings.metadata_url
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    return ModelRegistry(
        settings.mlflow_tracking_uri,
        artifact_location=settings.mlflow_artifact_location,
        history=metadata or MetadataStore(settings.metadata_url),
    )
