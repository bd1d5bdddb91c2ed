"""``loopline monitor ...``: reports and diagnosis of a served model.

Mounted by the main CLI as ``monitor``::

    loopline monitor report MODEL [--window 1D] [--since 7d] [--until ...] [--html FILE]
                                  [--group COLUMN [--bands 20,50,100]] [--positive LABEL]
                                  [--metric NAME ...] [--card COLUMN] [--version V] [--json]
    loopline monitor diagnose MODEL [--window 1D] [--since ...] [--until ...]
                                    [--metric accuracy] [--card COLUMN] [--version V] [--json]

User errors raise :class:`~loopline.errors.LooplineError`, which the main CLI prints as
one line (exit 2).
"""

from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.support import JsonOpt, lazy_console, print_json, settings_from
from loopline.errors import LooplineError

__all__ = ["monitor_app"]

monitor_app = typer.Typer(
    help="Watch a served model: drift, performance with delayed labels, fairness, diagnosis.",
    no_args_is_help=True,
)

out = lazy_console(highlight=False)

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
_METRICS = (
    "accuracy",
    "macro_f1",
    "precision",
    "recall",
    "average_precision",
    "roc_auc",
    "cp_at_100",
)
CardOpt = Annotated[
    str | None,
    typer.Option(
        "--card",
        metavar="COLUMN",
        help="Logged input with the card id, for card precision@k (default: card, card_id, "
        "CARD_ID, CUSTOMER_ID or customer_id, whichever is logged).",
    ),
]


def _bands(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise LooplineError(
            f"--bands expects comma-separated numbers, found {text!r}",
            hint="e.g. --bands 20,50,100,220",
        ) from None


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
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            metavar="NAME",
            help="Performance metric to show (repeat for several; the diagnosis follows the "
            f"first): {', '.join(_METRICS)} or cp_at_K. Default: all the log supports.",
        ),
    ] = None,
    card: CardOpt = None,
    bands: Annotated[
        str | None,
        typer.Option(
            "--bands",
            metavar="EDGES",
            help="Group a numeric --group column into bands, e.g. 20,50,100,220.",
        ),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Drift per feature over windows, performance over time, fairness and alerts."""
    from loopline.monitor.report import build_report, print_summary, write_html

    edges = _bands(bands)
    if edges is not None and group is None:
        raise LooplineError(
            "--bands needs --group COLUMN", hint="e.g. --group TX_AMOUNT --bands 20,50"
        )
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
        metrics=metric or None,
        card_column=card,
        bands=edges,
    )
    written = write_html(report, html) if html is not None else None
    if json_output:
        data = report.to_dict()
        data["html"] = None if written is None else str(written)
        print_json(data)
        return
    print_summary(report, out())
    if written is not None:
        out().print(f"HTML report written to {written}")


@monitor_app.command("diagnose")
def diagnose_command(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="The model name, as served and logged.")],
    window: WindowOpt = "1D",
    since: SinceOpt = None,
    until: UntilOpt = None,
    metric: Annotated[
        str,
        typer.Option("--metric", metavar="|".join(_METRICS), help="Metric to follow (or cp_at_K)."),
    ] = "accuracy",
    card: CardOpt = None,
    version: VersionOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Why did performance change? Instrumentation, data drift, concept drift, versions."""
    from loopline.monitor.diagnose import diagnose

    if metric not in _METRICS and not _is_card_precision(metric):
        raise LooplineError(
            f"unknown metric {metric!r}", hint=f"use one of {', '.join(_METRICS)} or cp_at_K"
        )
    settings = settings_from(ctx)
    result = diagnose(
        model,
        settings,
        window=window,
        since=since,
        until=until,
        version=version,
        metric=metric,
        card_column=card,
    )
    if json_output:
        print_json(result.to_dict())
        return
    result.print(out())


def _is_card_precision(name: str) -> bool:
    k = name.removeprefix("cp_at_")
    return name.startswith("cp_at_") and k.isdigit() and int(k) > 0
