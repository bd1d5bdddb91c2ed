"""``loopline stream ...``: the decision service, its batch re-score and review loop, and
test traffic.

Mounted by the main CLI as ``stream``::

    loopline stream consume SOURCE_URL [--model NAME@ALIAS] [--features embedded|none|URL]
        [--pii-policy NAME|FILE | --no-pii] [--threshold P] [--batch-size N]
        [--group G] [--consumer C] [--max-messages N] [--idle-exit SECONDS] [--json]
    loopline stream rescore [--model NAME@ALIAS] [--json]
    loopline stream apply-reviews [--json]
    loopline stream replay FILE STREAM_URL [--rate 1000] [--limit N] [--skip N] [--json]

SOURCE_URL is a file or folder, ``redis://HOST:6379/0?stream=tx``,
``nats://HOST:4222?subject=tx``, ``amqp://guest:guest@HOST:5672/?queue=tx`` or
``kafka://HOST:9092?topic=tx``. The decision policy (models, thresholds, review queue,
fallbacks) is the ``fraud`` section of ``loopline.yaml`` (:mod:`loopline.stream.policy`);
the options override it. User errors (a broker that cannot be reached, a missing PII key,
an invalid ``fraud`` section) raise :class:`~loopline.errors.LooplineError`, which the main
CLI prints as one line with a hint (exit 2).
"""

from pathlib import Path
from typing import Annotated

import typer

from loopline.cli.support import JsonOpt, lazy_console, print_json, settings_from

__all__ = ["stream_app"]

stream_app = typer.Typer(
    help="Streams and files in: validate, mask PII, features, decide exactly once; "
    "re-score in batch; apply the analysts' reviews.",
    no_args_is_help=True,
)

out = lazy_console(highlight=False)


@stream_app.command("consume")
def consume(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(help="A file/folder or a redis://, nats://, amqp://, kafka:// URL.")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            metavar="NAME@ALIAS",
            help="The fast model that scores online (default: fraud.fast_model, "
            "fraud-fast@champion).",
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            metavar="embedded|none|URL",
            help="Online feature store: embedded, a redis:// URL, or none (the model reads "
            "the transaction's own fields); default: fraud.features, embedded.",
        ),
    ] = None,
    pii_policy: Annotated[
        str | None,
        typer.Option("--pii-policy", metavar="NAME|FILE", help="PII policy (default: pii.policy)."),
    ] = None,
    no_pii: Annotated[
        bool,
        typer.Option("--no-pii", help="The data holds no personal data: do not mask."),
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Review a transaction when its score is at least this "
            "(default: fraud.thresholds.review, 0.5).",
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            help="Most messages decided in one transaction (default: "
            "fraud.group_commit.batch_size, 256).",
        ),
    ] = None,
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
    """Decide every transaction of SOURCE exactly once (fast model, heavy scores,
    thresholds, fallbacks); reviews go to the review queue, refused messages to dead letters."""
    from loopline.stream.service import open_consumer, run_consumer

    _log_fallbacks()
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
    out().print(
        f"decided {summary['decided']} transaction(s) ({summary['flagged']} flagged, "
        f"{summary['reviews']} sent to review), {summary['duplicates']} already decided, "
        f"{summary['dead_lettered']} dead-lettered, in {summary['seconds']} s",
        markup=False,
    )
    if summary["actions"]:
        actions = ", ".join(f"{k} {v}" for k, v in sorted(summary["actions"].items()))
        out().print(f"  actions: {actions}", markup=False)
    for flag, count in summary["fallbacks"].items():
        out().print(f"  fallback {flag}: {count} decision(s)", markup=False)
    for reason, count in summary["dead_letter_reasons"].items():
        out().print(f"  dead letters: {count} x {reason}", markup=False)


def _log_fallbacks() -> None:
    """The service's fallbacks (a model or the feature store unavailable, and back) on
    stderr, one timestamped line each."""
    import logging

    logger = logging.getLogger("loopline.stream")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s warning: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


@stream_app.command("rescore")
def rescore(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(metavar="NAME@ALIAS", help="The heavy model (default: fraud.heavy_model)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score the recent decisions with the heavy model, write the scores back, and send
    the newly suspicious transactions to the review queue."""
    from loopline.stream.rescore import rescore as run_rescore

    result = run_rescore(settings_from(ctx), model=model)
    if as_json:
        print_json(result.to_dict())
        return
    out().print(
        f"re-scored {result.scored} decision(s) with {result.model} version {result.version} "
        f"in {result.seconds:.1f} s; {result.newly_suspicious} newly suspicious sent to review; "
        f"{result.logged} first score(s) in the prediction log"
        + (f"; {result.unscorable} without the inputs it needs" if result.unscorable else ""),
        markup=False,
    )


@stream_app.command("apply-reviews")
def apply_reviews(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Turn the review queue's new labels into feedback and late labels for the online
    feature store (idempotent)."""
    from loopline.stream.reviews import apply_reviews as run_apply

    result = run_apply(settings_from(ctx))
    if as_json:
        print_json(result.to_dict())
        return
    store = " and the feature store" if result.feature_store else ""
    out().print(
        f"applied {result.applied} review label(s) ({result.fraud} fraud, {result.legit} "
        f"legit) to feedback{store}; {result.unchanged} already applied",
        markup=False,
    )


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
    out().print(
        f"sent {result.sent} message(s) in {result.seconds:.1f} s ({result.rate:.0f}/s)",
        markup=False,
    )
