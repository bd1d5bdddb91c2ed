"""``loopline predict``: batch inference from the command line (:mod:`loopline.serve.batch`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.support import JsonOpt, print_json, settings_from
from loopline.serve.batch import Progress, input_format_of, predict_file

__all__ = ["predict_command"]


def predict_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL[@ALIAS]", help="e.g. sentiment@champion")],
    input: Annotated[
        Path, typer.Argument(metavar="INPUT", help="CSV, CSV.gz or Parquet file (or folder).")
    ],
    output: Annotated[
        Path,
        typer.Argument(metavar="OUTPUT", help="Where to write; format from the suffix."),
    ],
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Rows scored at a time; bounds the memory used.")
    ] = 50_000,
    json: JsonOpt = False,
) -> None:
    """Score a CSV or Parquet file with a registered model, chunk by chunk.

    The output gets the input columns plus prediction, proba.<class>, model_name and
    model_version; it appears only once complete.
    """
    from loopline.registry.project import open_registry

    input_format_of(input)  # a wrong path fails before the (slow) model load
    ref = model if ("@" in model or "/" in model) else f"{model}@champion"
    loaded = open_registry(settings_from(ctx)).load(ref)
    with _progress_bar(f"{loaded.info.name} v{loaded.info.version}") as update:
        summary = predict_file(loaded, input, output, chunk_rows=chunk_rows, progress=update)
    if json:
        print_json(summary)
        return
    typer.echo(
        f"scored {summary['rows']:,} rows with {summary['model_name']} version "
        f"{summary['model_version']} in {summary['seconds']:.1f} s "
        f"({summary['rows_per_s'] or 0:,.0f} rows/s) -> {summary['output']}"
    )


@contextmanager
def _progress_bar(label: str) -> Iterator[Progress]:
    """A rich progress bar on stderr (silent when stderr is not a terminal)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    console = Console(stderr=True)
    bar = RichProgress(
        TextColumn("scoring with {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )
    with bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield update
