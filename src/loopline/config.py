"""Project configuration: one settings object for every part of Loopline.

Values come from, highest priority first: keyword arguments, ``LOOPLINE_*`` environment
variables, ``loopline.yaml`` in the project root, ``[tool.loopline]`` in the project's
``pyproject.toml``, and the defaults (everything embedded under ``<project>/.loopline/``).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from loopline.config_files import CONFIG_FILE, home_folder, project_root_of, read_project_files
from loopline.errors import ConfigError

# How a run executes its steps: threads of the run's process, child processes, Ray tasks.
ExecutorName = Literal["threads", "processes", "ray"]
_file_values: ContextVar[dict[str, Any] | None] = ContextVar("loopline_file_values", default=None)


class _ProjectFileSource(PydanticBaseSettingsSource):
    """Feeds the values read from loopline.yaml / pyproject.toml (below env vars)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_file_values.get() or {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_file_values.get() or {})


class Settings(BaseSettings):
    """Where Loopline keeps its state, and the project's pipelines.

    Every location has an embedded default and takes a server URL instead:
    ``metadata_url`` a SQLAlchemy URL (``sqlite:///...`` or ``postgresql://...``),
    ``artifact_root`` a folder or any fsspec URL, ``mlflow_tracking_uri`` any MLflow URI,
    ``prediction_log_url`` a folder of Parquet segments or a ``postgresql://`` URL.
    ``monitoring`` holds the alert rules (validated by :mod:`loopline.monitor`).
    """

    model_config = SettingsConfigDict(env_prefix="LOOPLINE_", extra="forbid")

    project_root: Path = Field(default_factory=Path.cwd)
    home: Path | None = None
    metadata_url: str | None = None
    artifact_root: str | None = None
    mlflow_tracking_uri: str | None = None
    prediction_log_url: str | None = None
    executor: ExecutorName = "threads"
    # With executor ray: None starts a Ray instance inside the run's process; "auto" joins
    # the cluster `ray start` runs on this machine; "HOST:PORT" joins the cluster whose head
    # listens there (its nodes must reach artifact_root and metadata_url: use s3:// and
    # postgresql:// for a real cluster).
    ray_address: str | None = None
    # Steps that hold the GIL gain nothing from more threads than cores, and lose to
    # contention; the default follows the machine.
    max_workers: int = Field(default_factory=lambda: min(4, os.cpu_count() or 1), ge=1)
    pipelines: dict[str, str] = Field(default_factory=dict)
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    monitoring: dict[str, Any] = Field(default_factory=dict)
    pii: dict[str, Any] = Field(default_factory=dict)  # validated by loopline.data.pii
    fraud: dict[str, Any] = Field(default_factory=dict)  # validated by loopline.stream.policy

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _ProjectFileSource(settings_cls))

    @field_validator("metadata_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        # postgresql://, postgresql+<driver>:// and the postgres:// alias (see core/dburl.py).
        if value is not None and not value.startswith(("sqlite:", "postgresql", "postgres:")):
            raise ValueError(f"expected a sqlite:/// or postgresql:// URL, found {value!r}")
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.project_root = self.project_root.expanduser().resolve()
        self.home = home_folder(self.project_root, self.home)
        if self.metadata_url is None:
            self.metadata_url = f"sqlite:///{self.home / 'metadata.db'}"
        if self.artifact_root is None:
            self.artifact_root = str(self.home / "artifacts")
        elif "://" not in self.artifact_root and not Path(self.artifact_root).is_absolute():
            self.artifact_root = str(self.project_root / self.artifact_root)
        if self.mlflow_tracking_uri is None:
            self.mlflow_tracking_uri = f"sqlite:///{self.home / 'mlflow.db'}"
        if self.prediction_log_url is None:
            self.prediction_log_url = str(self.home / "predictions")
        return self

    @property
    def home_dir(self) -> Path:
        """The ``.loopline`` folder (created on first use)."""
        assert self.home is not None
        return self.home

    @property
    def mlflow_artifact_location(self) -> str:
        """Where MLflow keeps run artifacts when the tracking store is local."""
        return (self.home_dir / "mlruns").as_uri()


def load_settings(project_root: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the project's settings; raise :class:`ConfigError` with the offending field."""
    root = project_root_of(project_root)
    file_values = read_project_files(root)
    file_values.setdefault("project_root", root)
    token = _file_values.set(file_values)
    try:
        if project_root is not None:
            overrides.setdefault("project_root", root)
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(
            f"invalid Loopline settings: {problems}",
            hint=f"check {root / CONFIG_FILE}, [tool.loopline] in pyproject.toml "
            "and the LOOPLINE_* variables",
        ) from None
    finally:
        _file_values.reset(token)
