"""``loopline data snapshot|diff|check-detection``: folder snapshots and detection datasets.

Registered on the main CLI's ``data`` group::

    loopline data snapshot DIR [--json]          # manifest of content hashes, stored
    loopline data diff A B [--json]              # A, B: snapshot ids (or prefixes) or folders
    loopline data check-detection DIR [--format coco|yolo] [--json]

``check-detection`` exits 1 when the report has errors. User errors raise
:class:`~loopline.errors.LooplineError`, which the main CLI prints as one line (exit 2).
"""

from pathlib import Path
from typing import Annotated, cast

import typer

from loopline.cli.support import (
    JsonOpt,
    existing_project_folder,
    lazy_console,
    print_json,
    project_root,
)
from loopline.errors import LooplineError

__all__ = ["check_detection_command", "diff_command", "snapshot_command"]

out = lazy_console(highlight=False, soft_wrap=True)
_SHOWN_PATHS = 50


def snapshot_command(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="The folder to snapshot.")],
    as_json: JsonOpt = False,
) -> None:
    """Hash every file under DIR and store the manifest in the project (.loopline/snapshots).

    Files unchanged since the folder's previous snapshot (same size, mtime and inode) are
    not read again. Prints the snapshot id, which `loopline data diff` takes.
    """
    from loopline.data.snapshot import take_snapshot

    snap = take_snapshot(folder, existing_project_folder(project_root(ctx)))
    if as_json:
        print_json(snap.summary())
        return
    out().print(f"snapshot {snap.id}", markup=False)
    out().print(
        f"{len(snap.files)} files · {snap.total_bytes:,} bytes · {snap.rehashed} re-hashed, "
        f"{snap.reused} unchanged (not read) · {snap.root}",
        markup=False,
    )


def diff_command(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(metavar="A", help="Snapshot id (or prefix), or a folder.")],
    b: Annotated[str, typer.Argument(metavar="B", help="Snapshot id (or prefix), or a folder.")],
    as_json: JsonOpt = False,
) -> None:
    """The files added, removed and changed from A to B.

    A folder is compared as it is now (hashed without storing a snapshot).
    """
    from loopline.data.snapshot import diff, resolve_snapshot

    project = existing_project_folder(project_root(ctx))
    result = diff(resolve_snapshot(a, project), resolve_snapshot(b, project))
    if as_json:
        print_json(result.to_dict())
        return
    out().print(f"{result.a[:12]} -> {result.b[:12]}", markup=False)
    if result.unchanged:
        out().print("no changes", markup=False)
        return
    for sign, label, paths in (
        ("+", "added", result.added),
        ("-", "removed", result.removed),
        ("~", "changed", result.changed),
    ):
        for path in paths[:_SHOWN_PATHS]:
            out().print(f"{sign} {path}", markup=False)
        if len(paths) > _SHOWN_PATHS:
            out().print(f"{sign} ... and {len(paths) - _SHOWN_PATHS} more {label}", markup=False)
    out().print(
        f"{len(result.added)} added, {len(result.removed)} removed, {len(result.changed)} changed",
        markup=False,
    )


def check_detection_command(
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="DIR", help="YOLO folder (images/, labels/) or COCO JSON file or its folder."
        ),
    ],
    fmt: Annotated[
        str | None,
        typer.Option("--format", metavar="coco|yolo", help="The format (default: detected)."),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="COCO: the folder its file_names are relative to."),
    ] = None,
    min_side: Annotated[
        int, typer.Option(min=1, metavar="PX", help="Smallest image side allowed.")
    ] = 32,
    max_side: Annotated[
        int, typer.Option(min=1, metavar="PX", help="Largest image side allowed.")
    ] = 10_000,
    min_class_share: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, metavar="FRACTION", help="Warn for classes with fewer boxes."
        ),
    ] = 0.01,
    as_json: JsonOpt = False,
) -> None:
    """Validate an object-detection dataset; print the report (exit 1 when it has errors).

    Every image is decoded; boxes, class ids, images without labels, labels without images,
    duplicates and class balance are checked.
    """
    from loopline.data.detection import (
        DetectionFormat,
        DetectionRules,
        read_detection,
        validate_detection,
    )

    if fmt not in (None, "coco", "yolo"):
        raise LooplineError(f"unknown --format {fmt!r}", hint="use --format coco or --format yolo")
    dataset = read_detection(folder, cast(DetectionFormat | None, fmt), images_dir=images)
    rules = DetectionRules(min_side=min_side, max_side=max_side, min_class_share=min_class_share)
    report = validate_detection(dataset, rules)
    if as_json:
        print_json(report.to_dict())
    else:
        out().print(report.format_text(), markup=False)
    if not report.passed:
        raise typer.Exit(1)
