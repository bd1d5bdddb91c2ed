"""The web dashboard of the whole loop (``loopline ui``).

Runs with their DAGs and artifacts, lineage from a model version or a request, models with
their aliases, alias history, gate results and alias moves, monitoring reports, dataset
versions with profiles and diffs, and the labeling and review pages: one FastAPI app,
rendered on the server, with every asset in the package (it works offline).

It is thin: each page calls the same public functions as the command line.
"""

from loopline.ui.app import create_app, open_dashboard, serve_ui
from loopline.ui.views import Dashboard

__all__ = ["Dashboard", "create_app", "open_dashboard", "serve_ui"]
