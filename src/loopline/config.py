"""Project configuration: one settings object for every part of Loopline.

Values come from, highest priority first: keyword arguments, ``LOOPLINE_*`` environment
variables, ``loopline.yaml`` in the project root, ``[tool.loopline]`` in the project's
``pyproject.toml``, and the defaults (everything embedded under ``<project>/.loopline/``).
"""

from __future__ import annotations

import os
import tomllib
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from loopline.errors import ConfigError

if TYPE_CHECKING:
    import yaml

CONFIG_FILE = "loopline.yaml"
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
        home = self.home or Path(".loopline")
        self.home = home if home.is_absolute() else self.project_root / home
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


def _read_project_files(root: Path) -> dict[str, Any]:
    """The settings in ``loopline.yaml`` and ``[tool.loopline]`` of ``pyproject.toml``.

    A file that cannot be parsed is a :class:`ConfigError` of one line: the file, the
    problem and where (line and column), with a hint.
    """
    values: dict[str, Any] = {}
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise _not_utf8(pyproject, exc) from None
        except tomllib.TOMLDecodeError as exc:
            # tomllib's message is one line and ends with "(at line L, column C)".
            raise ConfigError(
                f"{pyproject} is not valid TOML: {_one_line(str(exc))}",
                hint="fix the file at that line (Loopline reads its [tool.loopline] table)",
            ) from None
        values.update(data.get("tool", {}).get("loopline", {}))
    config = root / CONFIG_FILE
    if config.is_file():
        import yaml  # only with a loopline.yaml: PyYAML costs ~11 ms of a command's start-up

        try:
            data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise _not_utf8(config, exc) from None
        except yaml.YAMLError as exc:
            raise _yaml_error(config, exc) from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"{config} must hold a mapping of settings, found {type(data).__name__}",
                hint="see `loopline init` for a starter file",
            )
        values.update(data)
    return values


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> ConfigError:
    return ConfigError(
        f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})",
        hint=f"save {path.name} as UTF-8",
    )


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    """PyYAML's several-line message as one line: the problem and where it is."""
    problem = str(getattr(exc, "problem", None) or exc)
    if problem.startswith("expected <block end>"):  # PyYAML's words for a bad indent
        problem = f"the indentation does not match the lines above ({problem})"
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return ConfigError(
        f"{path} is not valid YAML{where}: {_one_line(problem)}",
        hint=f"fix {path.name}{where}: settings are `key: value` "
        "lines, nested ones indented with spaces (no tabs); quote values holding ': ' or '#'",
    )


def load_settings(project_root: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the project's settings; raise :class:`ConfigError` with the offending field."""
    root_value = project_root or os.environ.get("LOOPLINE_PROJECT_ROOT") or Path.cwd()
    root = Path(root_value).expanduser().resolve()
    file_values = _read_project_files(root)
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
