"""Finding a project's pipelines by name."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from loopline.config import Settings
from loopline.core.pipeline import Pipeline
from loopline.errors import PipelineError

# Reference systems that ship with Loopline (the templates), available in every project.
BUILTIN_PIPELINES = {
    "sentiment": "loopline.templates.sentiment:sentiment",
    "spam": "loopline.templates.spam:spam",
    "tabular": "loopline.templates.tabular:tabular",
}


def resolve_pipeline(settings: Settings, name: str | None) -> tuple[str, Pipeline]:
    """The pipeline called ``name`` (or the project's only one) and its name."""
    configured = settings.pipelines
    if name is None:
        if len(configured) != 1:
            raise PipelineError(
                "which pipeline? "
                + ("none is configured" if not configured else f"found {sorted(configured)}"),
                hint="name one: `loopline run sentiment`, or list them under pipelines: "
                "in loopline.yaml",
            )
        name = next(iter(configured))
    ref = configured.get(name) or BUILTIN_PIPELINES.get(name)
    if ref is None:
        known = sorted({*configured, *BUILTIN_PIPELINES})
        raise PipelineError(f"no pipeline named {name!r}", hint="known: " + ", ".join(known))
    return name, load_pipeline(ref, settings.project_root)


def load_pipeline(ref: str, root: Path) -> Pipeline:
    """Import ``module.path:attr`` or ``file.py:attr`` (relative to the project root)."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise PipelineError(
            f"pipeline reference {ref!r} is not MODULE:NAME or FILE.py:NAME",
            hint="e.g. pipelines/sentiment.py:sentiment",
        )
    if target.endswith(".py"):
        path = (root / target).resolve()
        if not path.is_file():
            raise PipelineError(f"pipeline file not found: {path}", hint="check loopline.yaml")
        # Sibling modules of the pipeline file (helpers) import as they would in a script.
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        module_name = f"loopline_project.{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # processes and pickling look modules up here
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise PipelineError(f"cannot import {target!r}: {exc}") from None
    found = getattr(module, attr, None)
    if not isinstance(found, Pipeline):
        raise PipelineError(
            f"{ref!r} is not a pipeline (found {type(found).__name__})",
            hint="decorate the function with @pipeline",
        )
    return found
