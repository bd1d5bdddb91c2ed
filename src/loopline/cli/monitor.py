"""``loopline monitor ...``: reports and diagnosis of a served model.

Mounted by the main CLI as ``monitor``::

    loopline monitor report MODEL [--window 1D] [--since 7d] [--until ...] [--html FILE]
                                  [--group COLUMN] [--positive LABEL] [--version V] [--json]
    loopline monitor diagnose MODEL [--window 1D] [--since ...] [--until ...]
                                    [--metric accuracy] [--version V] [--json]

User errors raise :class:`~loopline.errors.LooplineError`, which the main CLI prints as
one line (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from loopline.cli.support import JsonOpt, print_json, settings_from
from loopline.errors import LooplineError

__all__ = ["monitor_app"]

monitor_app = typer.Typer(
    help="Watch a served model: drift, performance with delayed labels, fairness, diagnosis.",
    no_args_is_help=True,
)

out = Console(highlight=False)

WindowOpt = Annotated[
    str,
    typer.Option(
        "--window",
        "-w",
        metavar="LENGTH",
        help="Window length (30min, 1h, 1D, 7D) or rows per window.",
    ),
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        help="Start: a date, a UTC time, or a look-back such as 7d or 24h.",
    ),
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", metavar="WHEN", help="End (exclusive), same forms.")
]
VersionOpt = Annotated[
    str | None,
    typer.Option(
        "--version", metavar="VERSION", help="Compare with this version's reference profile."
    ),
]
_METRICS = ("accuracy", "macro_f1", "precision", "recall")


@monitor_app.command("report")
def report_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model name, as served and logged.")],
    window: WindowOpt = "1D",
    since: SinceOpt = None,
    until: UntilOpt = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML report.")
    ] = None,
    group: Annotated[
        str | None,
        typer.Option("--group", metavar="COLUMN", help="Input column for the fairness section."),
    ] = None,
    positive: Annotated[
        str | None,
        typer.Option("--positive", metavar="LABEL", help="The positive class (fairness, recall)."),
    ] = None,
    version: VersionOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Drift per feature over windows, performance over time, fairness and alerts."""
    from loopline.monitor.report import build_report, print_summary, write_html

    settings = settings_from(ctx)
    report = build_report(
        model,
        settings,
        window=window,
        since=since,
        group_column=group,
        until=until,
        version=version,
        positive_label=positive,
    )
    written = write_html(report, html) if html is not None else None
    if json_output:
        data = report.to_dict()
        data["html"] = None if written is None else str(written)
        print_json(data)
        return
    print_summary(report, out)
    if written is not None:
        out.print(f"HTML report written to {written}")


@monitor_app.command("diagnose")
def diagnose_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model name, as served and logged.")],
    window: WindowOpt = "1D",
    since: SinceOpt = None,
    until: UntilOpt = None,
    metric: Annotated[
        str,
        typer.Option("--metric", metavar="|".join(_METRICS), help="Metric to follow."),
    ] = "accuracy",
    version: VersionOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Why did performance change? Instrumentation, data drift, concept drift, versions."""
    from loopline.monitor.diagnose import diagnose

    if metric not in _METRICS:
        raise LooplineError(f"unknown metric {metric!r}", hint=f"use one of {', '.join(_METRICS)}")
    settings = settings_from(ctx)
    result = diagnose(
        model, settings, window=window, since=since, until=until, version=version, metric=metric
    )
    if json_output:
        print_json(result.to_dict())
        return
    result.print(out)
