"""``loopline stream ...``: decide transactions from a stream or files; replay test traffic.

Mounted by the main CLI as ``stream``::

    loopline stream consume SOURCE_URL [--model fraud@champion] [--features embedded|none|URL]
        [--pii-policy NAME|FILE | --no-pii] [--threshold 0.5] [--batch-size 256]
        [--group G] [--consumer C] [--max-messages N] [--idle-exit SECONDS] [--json]
    loopline stream replay FILE STREAM_URL [--rate 1000] [--limit N] [--skip N] [--json]

SOURCE_URL is a file or folder, ``redis://HOST:6379/0?stream=tx``,
``nats://HOST:4222?subject=tx``, ``amqp://guest:guest@HOST:5672/?queue=tx`` or
``kafka://HOST:9092?topic=tx``. User errors (a broker that cannot be reached, a missing
PII key, an unknown model) raise :class:`~loopline.errors.LooplineError`, which the main
CLI prints as one line with a hint (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from loopline.cli.support import JsonOpt, print_json, settings_from

__all__ = ["stream_app"]

stream_app = typer.Typer(
    help="Streams and files in: validate, mask PII, features, score, decide exactly once.",
    no_args_is_help=True,
)

out = Console(highlight=False)


@stream_app.command("consume")
def consume(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(help="A file/folder or a redis://, nats://, amqp://, kafka:// URL.")
    ],
    model: Annotated[
        str, typer.Option(metavar="NAME@ALIAS", help="Registered model that scores.")
    ] = "fraud@champion",
    features: Annotated[
        str,
        typer.Option(
            metavar="embedded|none|URL",
            help="Online feature store: embedded, a redis:// URL, or none (the model reads "
            "the transaction's own fields).",
        ),
    ] = "embedded",
    pii_policy: Annotated[
        str | None,
        typer.Option("--pii-policy", metavar="NAME|FILE", help="PII policy (default: pii.policy)."),
    ] = None,
    no_pii: Annotated[
        bool,
        typer.Option("--no-pii", help="The data holds no personal data: do not mask."),
    ] = False,
    threshold: Annotated[
        float, typer.Option(help="Flag a transaction when its score is at least this.")
    ] = 0.5,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Most messages decided in one transaction.")
    ] = 256,
    group: Annotated[
        str | None, typer.Option(metavar="NAME", help="Consumer group (Redis, Kafka).")
    ] = None,
    consumer: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Consumer name in the group (Redis); keep it across restarts.",
        ),
    ] = None,
    max_attempts: Annotated[
        int,
        typer.Option(
            "--max-attempts",
            help="Dead-letter a message delivered this many times without a decision (0: never).",
        ),
    ] = 10,
    max_messages: Annotated[
        int | None, typer.Option("--max-messages", help="Stop after reading this many.")
    ] = None,
    idle_exit: Annotated[
        float | None,
        typer.Option("--idle-exit", metavar="SECONDS", help="Stop when nothing came this long."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Decide every transaction of SOURCE exactly once; refused messages go to dead letters."""
    from loopline.stream.service import open_consumer, run_consumer

    settings = settings_from(ctx)
    options = {"group": group, "consumer": consumer}
    worker = open_consumer(
        settings,
        source,
        model=model,
        features=features,
        pii_policy=pii_policy,
        no_pii=no_pii,
        threshold=threshold,
        batch_size=batch_size,
        max_attempts=max_attempts,
        source_options={k: v for k, v in options.items() if v is not None},
    )
    stats = run_consumer(worker, max_messages=max_messages, idle_timeout=idle_exit)
    summary = stats.summary()
    if as_json:
        print_json(summary)
        return
    out.print(
        f"decided {summary['decided']} transaction(s) ({summary['flagged']} flagged), "
        f"{summary['duplicates']} already decided, {summary['dead_lettered']} dead-lettered, "
        f"in {summary['seconds']} s",
        markup=False,
    )
    for reason, count in summary["dead_letter_reasons"].items():
        out.print(f"  dead letters: {count} x {reason}", markup=False)


@stream_app.command("replay")
def replay(
    file: Annotated[Path, typer.Argument(help="CSV/Parquet file or folder of transactions.")],
    stream: Annotated[str, typer.Argument(help="redis://, nats://, amqp:// or kafka:// URL.")],
    rate: Annotated[
        float, typer.Option(help="Messages per second (0: as fast as possible).")
    ] = 1000.0,
    limit: Annotated[int | None, typer.Option(help="Send at most this many rows.")] = None,
    skip: Annotated[int, typer.Option(help="Skip this many rows first.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Send the rows of FILE to STREAM at a steady rate, each stamped with produced_at."""
    from loopline.stream.replay import replay as run_replay

    result = run_replay(file, stream, rate=rate, limit=limit, skip=skip)
    if as_json:
        print_json(result.to_dict())
        return
    out.print(
        f"sent {result.sent} message(s) in {result.seconds:.1f} s ({result.rate:.0f}/s)",
        markup=False,
    )
