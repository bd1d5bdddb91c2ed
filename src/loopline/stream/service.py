"""A project's streaming consumer, assembled from its settings (what ``loopline stream
consume`` runs): the source a URL names, the PII masker, the online feature store, the model
from the registry and the decision log in the metadata database."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.stream.connect import open_source, parse_url
from loopline.stream.consumer import Consumer, ConsumerStats, OnlineFeatures, RecordMasker
from loopline.stream.decisions import DecisionLog
from loopline.stream.source import StreamError

if TYPE_CHECKING:
    from loopline.config import Settings

__all__ = ["open_consumer", "open_features", "run_consumer"]


def open_features(spec: str, settings: Settings) -> OnlineFeatures | None:
    """The online feature store ``spec`` names: ``none`` (the model reads the transaction's
    own fields), ``embedded`` (SQLite under the project's ``.loopline/features/``, no
    server) or a ``redis://`` URL (:func:`loopline.features.open_feature_store`)."""
    if spec == "none":
        return None
    from loopline.features import open_feature_store

    if spec == "embedded":
        return open_feature_store(settings.home_dir / "features")
    scheme, _base, _options = parse_url(spec)
    if scheme in ("redis", "rediss"):
        return open_feature_store(spec)
    raise StreamError(
        f"unknown feature store {spec!r}",
        hint="--features takes embedded, none or a redis://HOST:6379/0 URL",
    )


def open_masker(settings: Settings, policy: str | None, no_pii: bool) -> RecordMasker | None:
    """The project's PII masker (``policy`` overrides ``pii.policy``); None with ``no_pii``."""
    if no_pii:
        return None
    from loopline.data.pii import open_masker as pii_masker

    return pii_masker(settings, policy)


def open_consumer(
    settings: Settings,
    source_url: str,
    *,
    model: str = "fraud@champion",
    features: str = "embedded",
    pii_policy: str | None = None,
    no_pii: bool = False,
    threshold: float = 0.5,
    batch_size: int = 256,
    max_attempts: int = 10,
    source_options: Mapping[str, Any] | None = None,
) -> Consumer:
    """Everything ``loopline stream consume`` needs, checked before the first message."""
    from loopline.core.metadata import MetadataStore
    from loopline.registry.project import open_registry

    masker = open_masker(settings, pii_policy, no_pii)  # fails early without a key
    assert settings.metadata_url is not None
    store = MetadataStore(settings.metadata_url)
    loaded = open_registry(settings, store).load(model)
    source = open_source(
        source_url,
        batch_size=batch_size,
        dead_letter_path=_dead_letter_file(settings, source_url),
        **dict(source_options or {}),
    )
    decisions = DecisionLog(
        store,
        source=source.name,
        model_name=loaded.info.name,
        model_version=str(loaded.info.version),
        threshold=threshold,
    )
    return Consumer(
        source,
        model=loaded.model,
        decisions=decisions,
        features=open_features(features, settings),
        masker=masker,
        threshold=threshold,
        batch_size=batch_size,
        max_attempts=max_attempts,
    )


def _dead_letter_file(settings: Settings, url: str) -> Path | None:
    scheme, base, _ = parse_url(url)
    if scheme != "file":
        return None
    return settings.home_dir / "dead-letters" / f"{Path(base).name or 'input'}.jsonl"


def run_consumer(
    consumer: Consumer,
    *,
    max_messages: int | None = None,
    idle_timeout: float | None = None,
) -> ConsumerStats:
    """Run until the source ends, a limit is reached, or SIGINT/SIGTERM (the batch in
    progress is finished and acknowledged first)."""

    async def _main() -> ConsumerStats:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            # Not the main thread, or Windows: no handler, the default behaviour stays.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        return await consumer.run(
            max_messages=max_messages, idle_timeout=idle_timeout, stop=stop, freeze_gc=True
        )

    try:
        return asyncio.run(_main())
    finally:
        consumer.decisions.close()
