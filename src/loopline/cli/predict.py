"""``loopline predict``: batch inference from the command line (:mod:`loopline.serve.batch`)."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopline.cli.support import JsonOpt, print_json, settings_from
from loopline.errors import LooplineError

if TYPE_CHECKING:
    from loopline.serve.batch import Progress

__all__ = ["predict_command"]


def predict_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL[@ALIAS]", help="e.g. sentiment@champion")],
    input: Annotated[
        Path, typer.Argument(metavar="INPUT", help="CSV, CSV.gz or Parquet file (or folder).")
    ],
    output: Annotated[
        Path,
        typer.Argument(
            metavar="OUTPUT",
            help="Where to write: the suffix (.csv, .csv.gz, .parquet, .pq) sets the format.",
        ),
    ],
    chunk_rows: Annotated[
        int, typer.Option(min=1, help="Rows scored at a time; bounds the memory used.")
    ] = 50_000,
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            metavar="INPUT=COLUMN",
            help="Feed the model input INPUT from the file's COLUMN when their names differ, "
            "e.g. --column text=CONTENT (repeat for several inputs).",
        ),
    ] = None,
    create_dirs: Annotated[
        bool,
        typer.Option("--create-dirs", help="Create the output's folder if it does not exist."),
    ] = False,
    skip_malformed: Annotated[
        bool,
        typer.Option(
            "--skip-malformed",
            help="Leave out CSV rows with the wrong number of fields (and count them) "
            "instead of stopping at the first.",
        ),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            metavar="local|ray",
            help="local: this process, chunk by chunk. ray: Ray Data over a Parquet file or "
            "folder of shards, a pool of actors each holding the model; OUTPUT is then a new "
            "folder of Parquet files (row order not kept). Joins the cluster of the "
            "ray_address setting, else starts Ray here.",
        ),
    ] = "local",
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="With --engine ray: scoring actors (default: the CPUs)."),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Score a CSV or Parquet file with a registered model, chunk by chunk.

    The output gets the input columns plus prediction, proba.<class>,
    model_name and model_version; it appears only once complete. Rows whose
    text is empty or only whitespace are not scored: they keep their place
    with empty predictions. A CSV row with the wrong number of fields, or a
    quote that is never closed, stops the command at its line (nothing is
    written). The summary counts rows read, scored, empty and malformed.
    """
    # Here, not at the top: loopline.serve.batch took ~2.5 ms of every command's start-up.
    from loopline.registry.project import open_registry
    from loopline.serve.batch import input_format_of, output_format_of, predict_file

    if engine not in ("local", "ray"):
        raise LooplineError(f"unknown engine {engine!r}", hint="use --engine local or ray")
    if concurrency is not None and engine != "ray":
        raise LooplineError("--concurrency applies to --engine ray", hint="drop --concurrency")
    # Wrong paths and options fail before the (slow) model load.
    input_format_of(input)
    if engine == "ray":
        from loopline.serve.batch_ray import check_paths

        check_paths(input, output, create_dirs=create_dirs)
    else:
        output_format_of(output, create_dirs=create_dirs)
    columns = _column_mapping(column or [])
    ref = model if ("@" in model or "/" in model) else f"{model}@champion"
    settings = settings_from(ctx)
    loaded = open_registry(settings).load(ref)
    if engine == "ray":
        from loopline.serve.batch_ray import predict_parquet_ray

        summary = predict_parquet_ray(
            loaded,
            input,
            output,
            ray_address=settings.ray_address,
            chunk_rows=chunk_rows,
            concurrency=concurrency,
            columns=columns,
            create_dirs=create_dirs,
        )
        _report(summary, json)
        return
    with _progress_bar(f"{loaded.info.name} v{loaded.info.version}") as update:
        summary = predict_file(
            loaded,
            input,
            output,
            chunk_rows=chunk_rows,
            progress=update,
            columns=columns,
            create_dirs=create_dirs,
            skip_malformed=skip_malformed,
        )
    _report(summary, json)


def _report(summary: dict[str, Any], json: bool) -> None:
    if json:
        print_json(summary)
        return
    typer.echo(
        f"scored {summary['rows_scored']:,} rows with {summary['model_name']} version "
        f"{summary['model_version']} in {summary['seconds']:.1f} s "
        f"({summary['rows_per_s'] or 0:,.0f} rows/s) -> {summary['output']}"
    )
    typer.echo(_counts(summary))


def _column_mapping(values: list[str]) -> dict[str, str]:
    """``--column INPUT=COLUMN`` values as ``{model input: file column}``."""
    mapping: dict[str, str] = {}
    for value in values:
        model_input, equals, file_column = value.partition("=")
        if not equals or not model_input or not file_column:
            example = file_column or model_input or "CONTENT"
            raise LooplineError(
                f"--column takes INPUT=COLUMN, the model's input and the file's column; "
                f"found {value!r}",
                hint=f"e.g. --column text={example} reads the model input text from {example}",
            )
        if mapping.get(model_input, file_column) != file_column:
            raise LooplineError(
                f"--column gives two columns for the model input {model_input!r}: "
                f"{mapping[model_input]!r} and {file_column!r}",
                hint=f"keep one --column {model_input}=COLUMN",
            )
        mapping[model_input] = file_column
    return mapping


def _counts(summary: dict[str, Any]) -> str:
    """``read N rows: N scored, N with empty text (not scored), N malformed (...)``."""
    malformed = f"{summary['rows_malformed']:,} malformed"
    lines = summary["malformed_lines"]
    if lines:
        more = ", ..." if summary["rows_malformed"] > len(lines) else ""
        word = "line" if len(lines) == 1 and not more else "lines"
        malformed += f" (skipped, {word} {', '.join(map(str, lines))}{more})"
    return (
        f"read {summary['rows_read']:,} rows: {summary['rows_scored']:,} scored, "
        f"{summary['rows_empty']:,} with empty text (not scored), {malformed}"
    )


@contextmanager
def _progress_bar(label: str) -> "Iterator[Progress]":
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
