"""Loopline: the whole ML lifecycle as one closed loop.

Importing this package stays cheap: heavy libraries (mlflow, scikit-learn, scipy) load
only where they are used.
"""

from __future__ import annotations

from loopline.core.pipeline import pipeline, step

__version__ = "0.1.0"
__all__ = ["__version__", "pipeline", "step"]
