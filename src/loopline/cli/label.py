"""``loopline label ...``: the human labeling queue from the command line.

Mounted by the main CLI as ``label``::

    loopline label queue add items.csv --labels negative,positive [--source manual]
        [--text-column CONTENT] [--label-column CLASS]  # the item's current label
    loopline label queue next --annotator ana           # prints the next item and its task id
    loopline label queue submit 17 positive --annotator ana
    loopline label queue stats [--json]
    loopline label import export.json [--config labeling.xml]   # Label Studio JSON
    loopline label export out.json [--config labeling.xml]
    loopline label serve [--host 127.0.0.1 --port 8765]

Every command takes ``--queue NAME`` (default ``default``; ``serve`` without it opens the
only queue with open tasks when ``default`` has none). User errors raise
:class:`~loopline.errors.LooplineError`, which the main CLI prints as one line (exit 2).
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopline.cli.support import JsonOpt, lazy_console, print_json, settings_from
from loopline.errors import DataError, LooplineError

if TYPE_CHECKING:
    import pandas as pd

    from loopline.label.queue import LabelQueue

__all__ = ["label_app"]

label_app = typer.Typer(
    help="Human labeling: a review queue, a labeling page, Label Studio import/export.",
    no_args_is_help=True,
)
queue_app = typer.Typer(help="Add items, label them one by one, and see agreement.")
label_app.add_typer(queue_app, name="queue")

out = lazy_console(highlight=False)

QueueOpt = Annotated[str, typer.Option("--queue", "-q", metavar="NAME", help="Queue name.")]
AnnotatorOpt = Annotated[
    str,
    typer.Option(
        "--annotator", "-a", metavar="NAME", envvar="LOOPLINE_ANNOTATOR", help="Your name."
    ),
]


def _open_queue(
    ctx: typer.Context,
    name: str,
    labels: list[str] | None = None,
    per_item: int | None = None,
    level: str | None = None,
) -> "LabelQueue":
    from loopline.label.queue import LabelQueue

    settings = settings_from(ctx)
    assert settings.metadata_url is not None
    return LabelQueue(settings.metadata_url, name, labels, per_item, level)


def _split_labels(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    labels = [part.strip() for part in raw.split(",") if part.strip()]
    if not labels:
        raise LooplineError(f"--labels needs comma-separated labels, found {raw!r}")
    return labels


def read_items(
    path: Path, text_column: str = "text", label_column: str | None = None
) -> "pd.DataFrame":
    """Items to label from CSV/TSV/Parquet (via the data reader) or JSON / JSON Lines.

    ``text_column`` becomes ``text``; ``label_column`` (optional) is each item's current
    label, kept as ``given_label`` so the labeling page shows it to the reviewer.
    """
    import pandas as pd

    from loopline.data.ingest import read_table

    if not path.is_file():
        raise DataError(f"items file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl", ".ndjson"):
        try:
            frame = pd.read_json(path, lines=suffix != ".json", dtype=False)
        except ValueError as exc:
            raise DataError(
                f"{path} is not valid JSON{' Lines' if suffix != '.json' else ''}: {exc}",
                hint="expected a list of objects with item_id and text",
            ) from None
        frame = _map_json_columns(frame, path, text_column, label_column)
    else:
        frame = read_table(path, text_column=text_column, label_column=label_column)
        if label_column is None:
            frame = frame.drop(columns="label")  # read_table's empty stand-in
        else:
            frame = frame.rename(columns={"label": "given_label"})
    if frame.empty:
        raise DataError(f"{path} holds no items")
    return frame


def _map_json_columns(
    frame: "pd.DataFrame", path: Path, text_column: str, label_column: str | None
) -> "pd.DataFrame":
    """Rename JSON items' text and label fields; items without text keep their payload."""
    columns = [str(c) for c in frame.columns]
    missing = [
        (flag, name)
        for flag, name in (("--text-column", text_column), ("--label-column", label_column))
        if name is not None and name not in columns and not (name == "text" == text_column)
    ]
    if missing:
        raise DataError(
            f"{path} has no field {' or '.join(repr(n) for _, n in missing)}; "
            f"found: {', '.join(columns) or 'no fields'}",
            hint=f"name the items' fields: {' '.join(f'{f} FIELD' for f, _ in missing)}",
        )
    renames = {text_column: "text"} if text_column != "text" else {}
    if label_column is not None:
        renames[label_column] = "given_label"
    # A field already called text/given_label that is not the mapped one keeps its data.
    clashes = {c: f"{c}_original" for c in renames.values() if c in columns and c not in renames}
    return frame.rename(columns=clashes | renames)


# -- queue -----------------------------------------------------------------------------------
@queue_app.command("add")
def queue_add(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV, TSV, Parquet, JSON or JSONL with text.")],
    queue: QueueOpt = "default",
    source: Annotated[
        str, typer.Option(help="Where the items come from: manual, active_learning, ...")
    ] = "manual",
    labels: Annotated[
        str | None,
        typer.Option(metavar="A,B,...", help="Comma-separated label set, in keyboard order."),
    ] = None,
    priority: Annotated[float, typer.Option(help="Priority of these items.")] = 0.0,
    per_item: Annotated[
        int | None, typer.Option("--per-item", help="Annotations wanted per item.")
    ] = None,
    assignee: Annotated[
        list[str] | None, typer.Option("--assignee", help="Only these annotators (repeatable).")
    ] = None,
    text_column: Annotated[
        str, typer.Option("--text-column", metavar="COLUMN", help="The column holding the text.")
    ] = "text",
    label_column: Annotated[
        str | None,
        typer.Option(
            "--label-column",
            metavar="COLUMN",
            help="A column with each item's current label, shown to the reviewer.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add items to the queue (an item_id column is optional: ids derive from the text)."""
    items = read_items(file, text_column, label_column)
    with _open_queue(ctx, queue, _split_labels(labels), per_item) as q:
        added = q.add_items(items, source=source, priority=priority, assignees=assignee)
        progress = q.progress()
    if as_json:
        print_json({"added": added, "skipped": len(items) - added, **progress})
        return
    out().print(f"added {added} item(s) to queue {queue!r} ({len(items) - added} already there)")
    out().print(f"queue now holds {progress['total']} item(s), {progress['open']} open")


@queue_app.command("next")
def queue_next(
    ctx: typer.Context,
    annotator: AnnotatorOpt = "annotator",
    queue: QueueOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Print the next item for you to label, with its task id and the labels to choose from."""
    with _open_queue(ctx, queue) as q:
        task = q.next_task(annotator)
        labels = q.label_set
    if as_json:
        print_json({"task": None if task is None else task.to_dict(), "labels": labels})
        return
    if task is None:
        out().print(f"nothing left for {annotator} in queue {queue!r}")
        return
    out().print(f"[bold]task {task.id}[/] (item {task.item_id}, from {task.source})")
    out().print(task.text if task.text is not None else json.dumps(task.payload), markup=False)
    out().print(f"labels: {', '.join(labels)}")
    out().print(f"submit: loopline label queue submit {task.id} LABEL --annotator {annotator}")


@queue_app.command("submit")
def queue_submit(
    ctx: typer.Context,
    task_id: Annotated[int, typer.Argument(help="Task id from `queue next`.")],
    label: Annotated[str, typer.Argument(help="One of the queue's labels.")],
    annotator: AnnotatorOpt = "annotator",
    queue: QueueOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Record your label for a task (a second submit replaces your earlier label)."""
    with _open_queue(ctx, queue) as q:
        annotation_id = q.submit(task_id, annotator, label)
        progress = q.progress(annotator)
    if as_json:
        print_json({"annotation_id": annotation_id, "progress": progress})
        return
    out().print(
        f"saved {label!r} for task {task_id}; {progress['open']} item(s) open, "
        f"you labelled {progress['mine']}",
        markup=False,
    )


@queue_app.command("stats")
def queue_stats(ctx: typer.Context, queue: QueueOpt = "default", as_json: JsonOpt = False) -> None:
    """Counts, annotators and agreement statistics (Krippendorff's alpha, kappas)."""
    with _open_queue(ctx, queue) as q:
        stats = q.stats()
    if as_json:
        print_json(stats)
        return
    _print_stats(stats)


# What the agreement statistics count, named so they read like the header above them.
_STAT_NAMES = {
    "items": "items with a label",
    "ratings": "labels given",
    "items_multi_rated": "items with 2+ labels",
}


def _print_stats(stats: dict[str, Any]) -> None:
    tasks = stats["tasks"]
    out().print(
        f"queue {stats['queue']!r}: {tasks['total']} item(s), {tasks['labelled']} with a label "
        f"({tasks['done']} done, {tasks['open']} open); {stats['annotations']} label(s) given "
        f"by {len(stats['annotators'])} annotator(s)",
        markup=False,
    )
    from rich.table import Table

    table = Table("statistic", "value")
    for key, value in stats["agreement"].items():
        shown = "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else value)
        table.add_row(_STAT_NAMES.get(key, key), str(shown))
    table.add_row("items with disagreement", str(stats["disagreements"]))
    table.add_row("ties (no majority)", str(stats["ties"]))
    out().print(table)


# -- Label Studio ----------------------------------------------------------------------------
_CONFIG_OPTION = typer.Option(
    "--config",
    metavar="FILE",
    help="The project's labeling config (XML): names the Choices and Text tags.",
)


@label_app.command("import")
def import_file(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="A Label Studio JSON export (list of tasks).")],
    queue: QueueOpt = "default",
    labels: Annotated[
        str | None,
        typer.Option(metavar="A,B,...", help="Comma-separated label set (default: the queue's)."),
    ] = None,
    config: Annotated[Path | None, _CONFIG_OPTION] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import Label Studio tasks, annotations and predictions; a malformed task imports
    nothing. Control and object names are kept, so `label export` writes them back."""
    from loopline.label.labelstudio import import_labelstudio

    with _open_queue(ctx, queue) as q:
        summary = import_labelstudio(q, file, labels=_split_labels(labels), config=config)
    if as_json:
        print_json(summary.__dict__)
        return
    out().print(
        f"imported {summary.tasks} task(s) ({summary.new_tasks} new) and "
        f"{summary.annotations} annotation(s) into queue {queue!r}"
        + (f"; skipped {summary.skipped_annotations} empty" if summary.skipped_annotations else "")
        + (
            f"; {summary.predictions} prediction(s) kept as model suggestions"
            if summary.predictions
            else ""
        ),
        markup=False,
    )


@label_app.command("export")
def export_file(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Where to write the Label Studio JSON.")],
    queue: QueueOpt = "default",
    config: Annotated[Path | None, _CONFIG_OPTION] = None,
) -> None:
    """Export the queue as Label Studio JSON tasks (with every annotation and prediction),
    named as imported or as the --config labeling config names them."""
    from loopline.label.labelstudio import export_labelstudio

    with _open_queue(ctx, queue) as q:
        tasks = export_labelstudio(q, file, config=config)
    count = sum(len(t["annotations"]) for t in tasks)
    out().print(f"wrote {len(tasks)} task(s) with {count} annotation(s) to {file}")


# -- web page --------------------------------------------------------------------------------
@label_app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue",
            "-q",
            metavar="NAME",
            help="Queue name (default: 'default', or the only queue with open tasks).",
        ),
    ] = None,
    annotator: Annotated[
        str, typer.Option(help="Annotator name the page starts with.")
    ] = "annotator",
) -> None:
    """Serve the labeling page (label with keys 1-9, s to skip, u to undo; /review).

    Without --queue it serves the `default` queue; when that has nothing to label and
    exactly one other queue has open tasks (e.g. the noise audit's), it serves that one.
    """
    from loopline.label.queue import list_queues
    from loopline.label.web import serve_label_app

    settings = settings_from(ctx)
    assert settings.metadata_url is not None
    queues = list_queues(settings.metadata_url)
    name = queue if queue is not None else _queue_to_serve(queues)
    with _open_queue(ctx, name) as q:
        if not q.label_set:
            waiting = [f for f in _with_work(queues) if f["name"] != name]
            raise LooplineError(
                f"queue {name!r} has no label set",
                hint="add items with `loopline label queue add FILE --labels a,b` first"
                + "".join(
                    f"; queue {f['name']!r} has {f['open']} open task(s): "
                    f"`loopline label serve --queue {f['name']}`"
                    for f in waiting
                ),
            )
        out().print(f"labeling page for queue {name!r} on http://{host}:{port}/", markup=False)
        serve_label_app(q, host=host, port=port, annotator_default=annotator)


def _with_work(queues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Queues someone can label now: a label set and open tasks."""
    return [q for q in queues if q["labels"] and q["open"]]


def _queue_to_serve(queues: list[dict[str, Any]]) -> str:
    """`default`, unless it has nothing to label and exactly one other queue has work."""
    waiting = _with_work(queues)
    if not waiting or any(q["name"] == "default" for q in waiting):
        return "default"
    if len(waiting) == 1:
        name = str(waiting[0]["name"])
        out().print(
            f"queue 'default' has nothing to label; opening queue {name!r}, "
            "the only queue with open tasks",
            markup=False,
        )
        return name
    listed = ", ".join(f"{q['name']} ({q['open']} open)" for q in waiting)
    raise LooplineError(
        f"queue 'default' has nothing to label; {len(waiting)} queues have open tasks: {listed}",
        hint=f"name one: `loopline label serve --queue {waiting[0]['name']}`",
    )
