"""``loopline pii ...``: personal data in a project's stores.

Mounted by the main CLI as ``pii``::

    loopline pii audit [--store metadata --store artifacts ...] [--policy NAME|FILE] [--json]
    loopline pii forget SUBJECT [--dry-run] [--json]     # SUBJECT "-": read it from stdin

``audit`` exits 1 when it finds personal data (or cannot read a configured store), 0 when
the project is clean. User errors raise :class:`~loopline.errors.LooplineError`, which the
main CLI prints as one line (exit 2).
"""

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopline.cli.support import (
    JsonOpt,
    lazy_console,
    load_project_settings,
    print_json,
    project_root,
)
from loopline.errors import LooplineError

if TYPE_CHECKING:
    from loopline.config import Settings
    from loopline.data.pii_stores import SubjectStore

__all__ = ["pii_app"]

pii_app = typer.Typer(
    help="Personal data: audit every store of the project, erase a data subject.",
    no_args_is_help=True,
)

out = lazy_console(highlight=False)
err = lazy_console(stderr=True, highlight=False, soft_wrap=True)


def _settings(ctx: typer.Context) -> "Settings":
    # Both commands work on an existing project and create nothing in it.
    return load_project_settings(project_root(ctx), existing=True)


@pii_app.command("audit")
def audit_command(
    ctx: typer.Context,
    store: Annotated[
        list[str] | None,
        typer.Option(
            "--store",
            "-s",
            metavar="NAME",
            help="Scan only this store (repeatable): metadata, artifacts, mlflow, "
            "predictions, files, streams.",
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            metavar="NAME|FILE",
            help="Check this policy's personal columns (default: pii.policy of the project).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Scan every store for personal data; say what was found where (exit 1 if anything).

    Recognisers look for e-mails, phone numbers, IP addresses, SSN-like and card numbers
    and street addresses in every text value; the policy's personal columns must hold
    pseudonyms or masked values. Nothing is changed.
    """
    from loopline.data.pii_stores import STORES, audit_project

    settings = _settings(ctx)
    chosen = list(store or STORES)
    unknown = [s for s in chosen if s not in STORES]
    if unknown:
        raise LooplineError(
            f"unknown store {unknown[0]!r}", hint=f"--store takes one of {', '.join(STORES)}"
        )
    report = audit_project(settings, policy=policy, stores=chosen)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_audit(report)
    if not report.clean:
        raise typer.Exit(1)


def _print_audit(report: Any) -> None:
    from rich.table import Table

    if report.findings:
        table = Table(title="personal data found")
        for col in ("store", "where", "what", "count", "example"):
            table.add_column(col, overflow="fold")
        for f in report.findings:
            table.add_row(f.store, f.location, f.kind, str(f.count), f.example)
        out().print(table)
    scanned = ", ".join(f"{store} {n:,}" for store, n in report.scanned.items()) or "nothing"
    out().print(f"values scanned: {scanned} (recognisers: {report.engine})", markup=False)
    for skipped in report.skipped:
        out().print(f"not scanned: {skipped['store']}: {skipped['why']}", markup=False)
    if report.pseudonyms:
        keys = ", ".join(f"{k}_ {n:,}" for k, n in sorted(report.pseudonyms.items()))
        out().print(f"distinct pseudonyms by key id: {keys}", markup=False)
    for problem in report.errors:
        err().print(
            f"could not scan {problem['store']} ({problem['where']}): {problem['error']}",
            markup=False,
        )
    if report.clean:
        out().print("no personal data found")
    elif report.findings:
        total = sum(f.count for f in report.findings)
        out().print(f"personal data found: {total:,} values in {len(report.findings)} places")


@pii_app.command("forget")
def forget_command(
    ctx: typer.Context,
    subject: Annotated[
        str,
        typer.Argument(
            metavar="SUBJECT",
            help="The identifier as it arrived (an e-mail, a customer id), a pseudonym, or "
            "- to read it from stdin (keeps it out of the shell history).",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Change nothing; say what would be removed.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Erase one data subject's records from every store (right to erasure).

    Prediction log rows, their feedback, review-queue tasks, stream decisions and dead
    letters, online feature state, and the rows of table artifacts and MLflow input
    examples that carry the subject's pseudonym. Prints what was removed, which models were
    trained on the subject's data, and where the subject is still found.
    """
    from loopline.data.pii_stores import forget_subject

    if subject == "-":
        subject = sys.stdin.readline().strip()
    settings = _settings(ctx)
    report = forget_subject(
        settings, subject, dry_run=dry_run, extra=_subject_stores(settings, dry_run)
    )
    if as_json:
        print_json(report.to_dict())
        return
    _print_forget(report)


def _subject_stores(settings: "Settings", dry_run: bool) -> "list[SubjectStore]":
    """The online feature store, when the project has one (its ``forget`` erases a subject)."""
    path = settings.home_dir / "features" / "online.sqlite"
    if not path.is_file():
        return []
    return [_OnlineFeatures(str(path))]


class _OnlineFeatures:
    """Adapter: :class:`loopline.features.online.OnlineFeatureStore` as a SubjectStore."""

    name = "online features"

    def __init__(self, url: str) -> None:
        self.url = url

    def forget(self, pseudonyms: Sequence[str], dry_run: bool) -> int:
        if dry_run:
            return 0  # the store has no way to count without erasing
        from loopline.features.online import open_feature_store

        store = open_feature_store(self.url)
        try:
            return sum(store.forget(p) for p in pseudonyms)
        finally:
            store.close()


def _print_forget(report: Any) -> None:
    from rich.table import Table

    verb = "would remove" if report.dry_run else "removed"
    if report.removed:
        table = Table(title=f"{verb} (subject {report.subject})")
        for col in ("store", "where", "rows"):
            table.add_column(col, overflow="fold")
        for row in report.removed:
            table.add_row(row["store"], row["location"], str(row["rows"]))
        out().print(table)
    else:
        out().print(f"nothing to remove: no record carries the subject {report.subject}")
    for artifact in report.rewritten_artifacts:
        out().print(
            f"artifact {artifact['artifact'][:12]} rewritten under the same id without "
            f"{artifact['rows_removed']} rows (recorded in its meta.json)",
            markup=False,
        )
    for model in report.models_to_retrain:
        out().print(
            f"model {model['model']} version {model['version']} was trained on data that held "
            "the subject: retrain it to remove their influence",
            markup=False,
        )
    for left in report.remaining:
        out().print(
            f"still found in {left['store']}: {left['location']} ({left['count']})", markup=False
        )
    for skipped in report.skipped:
        out().print(f"not covered: {skipped['store']}: {skipped['why']}", markup=False)
    out().print(f"{verb} {report.total_removed} records in total")
