"""Loopline: the whole ML lifecycle as one closed loop.

Importing this package stays cheap: heavy libraries (mlflow, scikit-learn, scipy) load
only where they are used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopline.core.pipeline import pipeline, step

__version__ = "0.1.0"
__all__ = ["__version__", "pipeline", "step"]


def __getattr__(name: str) -> Any:
    # `pipeline` and `step` load on first use: every `loopline.*` import (each command of
    # the CLI included) runs this file, and loopline.core.pipeline (with dag, step and
    # inspect) took about 20 ms of the command's start-up for nothing.
    if name in ("pipeline", "step"):
        from loopline.core.pipeline import pipeline, step

        globals().update(pipeline=pipeline, step=step)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
