"""The decision service, assembled from a project's settings (what ``loopline stream
consume`` runs): the source a URL names, the PII masker, the online feature store, the
:class:`~loopline.stream.policy.DecisionPolicy` of the ``fraud`` section (the fast model
from the registry, the heavy model's latest batch scores, thresholds, fallbacks), the
decision log and review queue in the metadata database, and the prediction log.

A model that cannot be loaded does not stop the service (unless the policy says
``fast_down: stop``): it starts on its fallback, logs it, and a :class:`ModelWatcher`
thread looks at the aliases every ``model_poll_s`` seconds, loading a new champion (or the
model that was missing, or the version a rollback moved the alias to) off the decision
path and swapping it in between batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.stream.connect import open_source, parse_url
from loopline.stream.consumer import Consumer, ConsumerStats
from loopline.stream.decisions import DecisionLog
from loopline.stream.heavy import HeavyScores
from loopline.stream.policy import (
    DecisionPolicy,
    FastModel,
    FraudSettings,
    fraud_settings,
    model_name,
)
from loopline.stream.reviews import REVIEW_LABELS, open_review_queue
from loopline.stream.stores import open_features, open_masker

if TYPE_CHECKING:
    from loopline.config import Settings
    from loopline.core.metadata import MetadataStore
    from loopline.registry.models import ModelRegistry

__all__ = [
    "REVIEW_LABELS",
    "ModelWatcher",
    "open_consumer",
    "open_features",
    "open_masker",
    "open_review_queue",
    "run_consumer",
]

_log = logging.getLogger("loopline.stream")


class ModelWatcher:
    """Follows the fast and heavy models' aliases in a daemon thread (see the module)."""

    def __init__(
        self,
        registry: ModelRegistry,
        policy: DecisionPolicy,
        heavy: HeavyScores | None,
        *,
        fast_ref: str,
        heavy_ref: str | None,
        interval: float,
        store: MetadataStore | None = None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.policy = policy
        self.heavy = heavy
        self.fast_ref = fast_ref
        self.heavy_ref = heavy_ref
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def _version(self, ref: str) -> str:
        """The version ``ref`` names now: Loopline's alias history first (one query; every
        promotion and rollback through Loopline is there), else MLflow."""
        from loopline.registry.models import parse_ref

        name, alias, version = parse_ref(ref)
        if version is not None:
            return version
        if self.store is not None and alias is not None:
            found = self.store.current_alias(name, alias)
            if found is not None:
                return str(found)
        return str(self.registry.resolve(ref).version)

    def check(self) -> None:
        """Look at both aliases once; load and swap what changed."""
        current = self.policy.fast
        try:
            version = self._version(self.fast_ref)
            if current is None or version != current.version:
                fast = load_fast(self.registry, self.fast_ref)
                fast.scorer.score([dict.fromkeys(fast.scorer.columns, 0.0)])  # its first call
                self.policy.set_fast(fast)
                _log.warning("fast model is now %s version %s", fast.name, fast.version)
        except Exception as exc:
            if current is None:
                self.policy.set_fast(None, _why(exc))
        if self.heavy is not None and self.heavy_ref is not None:
            try:
                self.heavy.set_version(self._version(self.heavy_ref))
            except Exception as exc:
                if self.heavy.version is not None:
                    _log.warning("heavy model %s unavailable: %s", self.heavy_ref, _why(exc))
                self.heavy.set_version(None)


def _why(exc: BaseException) -> str:
    return getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"


def load_fast(registry: ModelRegistry, ref: str) -> FastModel:
    loaded = registry.load(ref)
    return FastModel.of(loaded.model, loaded.info.name, str(loaded.info.version))


def resolve_version(registry: ModelRegistry, ref: str) -> str | None:
    """The version ``ref`` names, or None (logged) when it is not registered."""
    try:
        return str(registry.resolve(ref).version)
    except Exception as exc:
        _log.warning("heavy model %s unavailable: %s", ref, _why(exc))
        return None


def open_consumer(
    settings: Settings,
    source_url: str,
    *,
    model: str | None = None,
    features: str | None = None,
    pii_policy: str | None = None,
    no_pii: bool = False,
    threshold: float | None = None,
    batch_size: int | None = None,
    max_attempts: int = 10,
    source_options: Mapping[str, Any] | None = None,
    config: FraudSettings | Mapping[str, Any] | None = None,
) -> Consumer:
    """The decision service ``loopline stream consume`` runs, checked before the first
    message. ``config`` (default: the settings' ``fraud`` section) is the policy; ``model``,
    ``features``, ``threshold`` (the review threshold) and ``batch_size`` override it."""
    from loopline.core.codeversion import code_version
    from loopline.core.metadata import MetadataStore
    from loopline.registry.project import open_registry

    if isinstance(config, FraudSettings):
        fraud = config
    else:
        fraud = fraud_settings(config if config is not None else settings)
    updates: dict[str, Any] = {}
    if model is not None:
        updates["fast_model"] = model
    if features is not None:
        updates["features"] = features
    if threshold is not None:
        block = fraud.thresholds.block
        updates["thresholds"] = fraud.thresholds.model_copy(
            update={"review": threshold, "block": None if block is None else max(block, threshold)}
        )
    if batch_size is not None:
        updates["group_commit"] = fraud.group_commit.model_copy(update={"batch_size": batch_size})
    fraud = fraud.model_copy(update=updates)
    size = fraud.group_commit.batch_size

    masker = open_masker(settings, pii_policy, no_pii)  # fails early without a key
    assert settings.metadata_url is not None
    store = MetadataStore(settings.metadata_url)
    registry = open_registry(settings, store)
    fast: FastModel | None = None
    fast_error = None
    try:
        fast = load_fast(registry, fraud.fast_model)
    except Exception as exc:
        if fraud.fallback.fast_down == "stop":
            raise
        fast_error = _why(exc)
        _log.warning(
            "fast model %s unavailable (%s): deciding by the amount rule until it is "
            "registered (fallback fast_unavailable)",
            fraud.fast_model,
            fast_error,
        )
    online = open_features(fraud.features, settings)
    source = open_source(
        source_url,
        batch_size=size,
        dead_letter_path=_dead_letter_file(settings, source_url),
        **dict(source_options or {}),
    )
    if fraud.review_queue is not None:
        open_review_queue(store, fraud.review_queue)
    decisions = DecisionLog(
        store,
        source=source.name,
        model_name=fast.name if fast is not None else model_name(fraud.fast_model),
        model_version=fast.version if fast is not None else None,
        threshold=fraud.thresholds.review,
        review_queue=fraud.review_queue,
        code_version=str(code_version(settings.project_root))[:100],
        commit=fraud.group_commit.commit,
        synchronous=fraud.group_commit.synchronous,
    )
    heavy: HeavyScores | None = None
    if fraud.heavy_model is not None:
        heavy = HeavyScores(
            decisions.engine,
            name=model_name(fraud.heavy_model),
            version=resolve_version(registry, fraud.heavy_model),
            keys=fraud.heavy_keys,
            min_score=fraud.thresholds.review,
            max_age_days=fraud.heavy_max_age_days,
            stale_s=fraud.heavy_stale_s,
            time_field=fraud.time_field,
        )
    policy = DecisionPolicy(
        fraud,
        fast=fast,
        fast_name=model_name(fraud.fast_model),
        heavy=heavy,
    )
    if fast is None:
        policy.set_fast(None, fast_error)
    predictions = None
    if fraud.prediction_log:
        from loopline.core.predlog import open_prediction_logger

        predictions = open_prediction_logger(settings)
    consumer = Consumer(
        source,
        policy=policy,
        decisions=decisions,
        features=online,
        masker=masker,
        batch_size=size,
        max_attempts=max_attempts,
        prediction_log=predictions,
    )
    if heavy is not None:
        heavy.start()
        consumer.on_close.append(heavy.stop)
    if fraud.model_poll_s is not None:
        watcher = ModelWatcher(
            registry,
            policy,
            heavy,
            fast_ref=fraud.fast_model,
            heavy_ref=fraud.heavy_model,
            interval=fraud.model_poll_s,
            store=store,
        )
        watcher.start()
        consumer.on_close.append(watcher.stop)
    closer = getattr(online, "close", None)
    if callable(closer):
        consumer.on_close.insert(0, closer)  # closed last, after the threads stopped
    return consumer


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
        consumer.close()
