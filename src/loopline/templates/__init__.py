"""Starter projects written by ``loopline init``: a pipeline file, settings and data.

Each template's pipeline is a real module beside this file (``sentiment.py``, ``spam.py``,
``tabular.py``, ``vision.py``), copied verbatim into the new project's ``pipeline.py``: what
a user starts from is exactly what Loopline ships and tests. The data is generated (seeded,
synthetic, offline) unless ``data`` points at real files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loopline.errors import LooplineError

_HERE = Path(__file__).parent
_CONFIG = """\
# Loopline project settings. Every location can be a server instead:
#   metadata_url: postgresql://user@host/db     artifact_root: s3://bucket/artifacts
#   mlflow_tracking_uri: http://mlflow:5000     (or LOOPLINE_* environment variables)
pipelines:
  {name}: pipeline.py:{name}
params:
  {name}:
    source: {source}
"""


@dataclass(frozen=True)
class Template:
    """A starter project: its pipeline module, where its data goes, how it is made."""

    name: str
    data: str  # the data's path inside the project (the pipeline's default ``source``)
    write_data: Callable[[Path], object]  # writes generated data at that path

    @property
    def pipeline_file(self) -> Path:
        return _HERE / f"{self.name}.py"


def _tweets(path: Path) -> None:
    from loopline.examples.sentiment.synthetic import generate_tweets

    path.parent.mkdir(parents=True, exist_ok=True)
    generate_tweets().to_csv(path, index=False)


def _comments(path: Path) -> None:
    from loopline.examples.spam_comments import write_comments

    path.mkdir(parents=True, exist_ok=True)
    write_comments(path)


def _transactions(path: Path) -> None:
    from loopline.examples.transactions import write_transactions

    path.mkdir(parents=True, exist_ok=True)
    write_transactions(path / "transactions.csv.gz")


def _canvases(path: Path) -> None:
    from loopline.data.canvas import write_canvas_dataset

    # MNIST digits from $LOOPLINE_MNIST (or the checkout's shared data): train/ and
    # heldout/ draw on disjoint digits.
    write_canvas_dataset(path, train=600, heldout=150)


TEMPLATES = {
    t.name: t
    for t in (
        Template("sentiment", "data/tweets.csv", _tweets),
        Template("spam", "data/comments", _comments),
        Template("tabular", "data/transactions", _transactions),
        Template("vision", "data/canvases", _canvases),
    )
}


def write_template(directory: Path, template: str, data: Path | None = None) -> list[Path]:
    """Create the starter files of ``template`` in ``directory``; never overwrite.

    With ``data`` (a file or folder of real data) the project reads it from there instead
    of generated data.
    """
    chosen = TEMPLATES.get(template)
    if chosen is None:
        raise LooplineError(
            f"unknown template {template!r}", hint="available: " + ", ".join(TEMPLATES)
        )
    if data is not None and not data.exists():
        raise LooplineError(
            f"data not found: {data}", hint="pass an existing file or folder with --data"
        )
    source = str(data.resolve()) if data is not None else chosen.data
    files = {
        directory / "loopline.yaml": _CONFIG.format(name=chosen.name, source=source),
        directory / "pipeline.py": chosen.pipeline_file.read_text(encoding="utf-8"),
    }
    generated = directory / chosen.data
    targets = [*files, *([] if data is not None else [generated])]
    clashes = [str(p) for p in targets if p.exists()]
    if clashes:
        raise LooplineError(
            f"not overwriting existing files: {', '.join(clashes)}",
            hint="choose an empty folder: loopline init NEW_DIR",
        )
    directory.mkdir(parents=True, exist_ok=True)
    if data is None:  # first: data that cannot be made leaves no half-made project
        chosen.write_data(generated)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return targets
