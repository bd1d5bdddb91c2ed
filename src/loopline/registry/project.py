"""The project's registry: MLflow where the settings say, alias history in Loopline's store."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopline.config import Settings
    from loopline.core.metadata import MetadataStore
    from loopline.registry.models import ModelRegistry


def open_registry(
    settings: Settings, metadata: MetadataStore | None = None, *, create: bool = True
) -> ModelRegistry:
    """A :class:`ModelRegistry` for this project (opens the metadata store if not given).

    ``create=False`` (commands that only read) creates nothing: no ``.loopline/`` folder,
    no metadata database, no MLflow store. A project where nothing is registered yet
    then reads as an empty registry (see :class:`ModelRegistry`).
    """
    from loopline.core.metadata import MetadataStore, StoreMissing
    from loopline.registry.models import ModelRegistry

    assert settings.mlflow_tracking_uri and settings.metadata_url
    if create:
        settings.home_dir.mkdir(parents=True, exist_ok=True)
    history = metadata
    if history is None:
        try:
            history = MetadataStore(settings.metadata_url, create=create)
        except StoreMissing:
            history = None  # nothing recorded yet, so no alias history either
    # A tracking server decides where artifacts go (its --artifacts-destination, proxied
    # for every client); a folder on this machine would be unreadable to the rest of a team.
    server = settings.mlflow_tracking_uri.startswith(("http://", "https://"))
    return ModelRegistry(
        settings.mlflow_tracking_uri,
        artifact_location=None if server else settings.mlflow_artifact_location,
        history=history,
        create=create,
    )
