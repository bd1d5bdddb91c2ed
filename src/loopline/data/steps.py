"""Ready steps of the data stage: read (and validate) tables, texts and images; version an
image folder (DVC or a Loopline snapshot); split.

Reading and validating are one step on purpose: data that fails validation never reaches
the artifact store or becomes a dataset version. Each read step records its output as a
version of the dataset named by its ``dataset`` parameter.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loopline.core.step import step

if TYPE_CHECKING:
    import pandas as pd

    from loopline.core.runner import RunContext
    from loopline.data.dvc import FolderVersion


def _dataset_param(params: dict[str, Any]) -> str | None:
    return params.get("dataset")


def _database_reads_again(ctx: RunContext, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """A database is outside state that no key can see: read it on every run. Only the
    steps after it are cached, by the content of what was read."""
    return uuid.uuid4().hex if "://" in str(params["source"]) else ""


@step(dataset=_dataset_param, cache_extra=_database_reads_again)
def read_table(
    source: str | Path,
    *,
    dataset: str = "table",
    format: Literal["auto", "csv", "parquet", "sql"] = "auto",
    query: str | None = None,
    table: str | None = None,
    columns: list[str] | None = None,
    parse_dates: list[str] | None = None,
    schema: dict[str, Any] | None = None,
    max_missing_share: float = 0.95,
) -> pd.DataFrame:
    """Read a table (CSV, Parquet, a folder of them, or SQL) and validate it.

    ``source`` is a file, a folder of CSV/Parquet files (partitioned folders too) or a
    SQLAlchemy database URL read with ``query`` or ``table`` (read again on every run: a
    database can change without any key seeing it). ``schema`` (JSON-able, see
    :class:`loopline.data.validate.TableSchema`) adds column rules; the quality checks run
    either way (a column missing in more than ``max_missing_share`` of the rows is a
    violation) and a violation stops the run with a report.
    """
    from loopline.data.tables import read_table_source
    from loopline.data.validate import validate_table

    frame = read_table_source(
        source,
        format=format,
        query=query,
        table=table,
        columns=columns,
        parse_dates=parse_dates,
    )
    checked, _report = validate_table(frame, schema, max_missing_share=max_missing_share)
    return checked


@step(dataset=_dataset_param)
def read_text(
    source: str | Path,
    *,
    dataset: str = "texts",
    labels: list[str] | None = None,
    format: str = "auto",
    encoding: str | None = None,
    text_column: str = "text",
    label_column: str | None = "label",
) -> pd.DataFrame:
    """Read a labelled text dataset and check it; the result has ``text`` and ``label``.

    Formats: Sentiment140 CSV, text-per-line files named by label, VADER TSV, a folder of
    ``<label>/*.txt`` files, CSV/Parquet with ``text_column``/``label_column``, or a URL.
    ``labels`` is the allowed label set (None: any). Empty texts are dropped; schema and
    quality violations stop the run with a report.
    """
    from loopline.data.ingest import load_source
    from loopline.data.validate import validate_text_dataset

    raw = load_source(
        source,
        format=format,  # type: ignore[arg-type]
        encoding=encoding,
        text_column=text_column,
        label_column=label_column,
    )
    checked, _report = validate_text_dataset(raw, labels=labels)
    return checked


@step(dataset=_dataset_param)
def read_images(
    root: str | Path,
    *,
    dataset: str = "images",
    labels: Literal["folder", "none"] = "folder",
) -> pd.DataFrame:
    """Index an image folder (``<label>/<image>`` when ``labels="folder"``): one row per
    image with its path, label, size, mode and content hash; unreadable or truncated
    files stop the run with a list of them."""
    from loopline.data.images import read_image_folder

    return read_image_folder(root, labels=labels)


def _folder_content(ctx: RunContext, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """A folder is outside state: key the step by what identifies its content now (DVC's
    hash, Loopline's incremental snapshot), without reading unchanged files or checking out."""
    from loopline.data.dvc import folder_version

    found = folder_version(params["path"], params.get("rev"), ctx.settings, checkout=False)
    # A checkout removed from .loopline/dvc/ is made again: the cached path would be gone.
    return found.content_key() + ("" if Path(found.path).exists() else "|absent")


@step(dataset=_dataset_param, cache_extra=_folder_content)
def version_images(
    path: str,
    *,
    dataset: str = "images",
    rev: str | None = None,
    ctx: RunContext | None = None,
) -> FolderVersion:
    """Version an image folder: DVC's hash and the git revision where DVC tracks it, and
    Loopline's snapshot of the files when read from the workspace.

    With ``rev`` (a git commit, branch or tag) the DVC-tracked folder is read as it was
    there (checked out once per DVC hash under ``.loopline/dvc/``). The output's ``path`` is
    the folder to read; it is recorded as a version of ``dataset``, and ``loopline lineage``
    shows its DVC hash, git revision and snapshot. ``path`` is a plain string on purpose:
    the runner would hash every file of a path parameter on each run, and the snapshot does
    that incrementally.
    """
    from loopline.config import load_settings
    from loopline.data.dvc import folder_version

    return folder_version(path, rev, ctx.settings if ctx is not None else load_settings())


@step(outputs=("train", "test"))
def split(
    data: pd.DataFrame,
    *,
    by: Literal["random", "stratified", "group", "time"] = "random",
    test_size: float = 0.2,
    label: str | None = None,
    group: str | None = None,
    time: str | None = None,
    cutoff: str | None = None,
    gap: str | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into (train, test): ``by`` random, stratified (by ``label``), group (rows
    sharing a ``group`` value stay together; stratified too when ``label`` is given) or
    time (test from ``cutoff``, or the last ``test_size`` share; ``gap`` such as ``"7D"``
    leaves the period before the test out of training, as a label delay does)."""
    from loopline.data.split import group_split, split_frame

    if by == "group" and group is not None and label is not None:
        return group_split(
            data, test_size=test_size, seed=seed, group_column=group, label_column=label
        )
    return split_frame(
        data,
        how=by,
        test_size=test_size,
        label=label,
        group=group,
        time=time,
        cutoff=cutoff,
        gap=gap,
        seed=seed,
    )
