"""The project's state folder found without the settings model agrees with the settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopline.config import load_settings
from loopline.config_files import project_home
from loopline.errors import ConfigError


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("LOOPLINE_HOME", "LOOPLINE_PROJECT_ROOT"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.mark.parametrize(
    ("yaml", "pyproject", "env"),
    [
        (None, None, {}),
        ("pipelines: {}\n", None, {}),
        ("home: state\n", None, {}),
        ('{"home": "state/deeper"}\n', None, {}),
        (None, '[tool.loopline]\nhome = "from-toml"\n', {}),
        ("home: from-yaml\n", '[tool.loopline]\nhome = "from-toml"\n', {}),
        ("home: from-yaml\n", None, {"LOOPLINE_HOME": "/srv/loopline-state"}),
        (None, None, {"loopline_home": "lower-case-name"}),
        ("home: from-yaml\n", None, {"LOOPLINE_HOME": ""}),
    ],
)
def test_project_home_is_the_settings_home(
    root: Path,
    monkeypatch: pytest.MonkeyPatch,
    yaml: str | None,
    pyproject: str | None,
    env: dict[str, str],
) -> None:
    if yaml is not None:
        (root / "loopline.yaml").write_text(yaml)
    if pyproject is not None:
        (root / "pyproject.toml").write_text(pyproject)
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    assert project_home(root) == load_settings(root).home_dir


def test_project_root_comes_from_the_environment_when_not_given(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root / "loopline.yaml").write_text("home: state\n")
    monkeypatch.setenv("LOOPLINE_PROJECT_ROOT", str(root))

    assert project_home() == root.resolve() / "state" == load_settings().home_dir


def test_a_home_that_is_not_a_path_is_a_config_error(root: Path) -> None:
    (root / "loopline.yaml").write_text("home: [a, b]\n")

    with pytest.raises(ConfigError, match="home: expected a folder path, found"):
        project_home(root)


def test_a_broken_file_that_mentions_home_is_reported(root: Path) -> None:
    (root / "loopline.yaml").write_text("home: state\n  bad: indent\n")

    with pytest.raises(ConfigError, match="is not valid YAML at line 2"):
        project_home(root)


def test_a_file_that_cannot_set_home_is_not_parsed(root: Path) -> None:
    # Only the state folder is looked up: a file without the word cannot set it, and is
    # left to the commands that read every setting (which report it).
    (root / "loopline.yaml").write_text("pipelines: [unclosed\n")

    assert project_home(root) == root.resolve() / ".loopline"
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_settings(root)
