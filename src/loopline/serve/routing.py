"""Which model answers: registry-following model slots, hot swap, canary and shadow routing.

A :class:`ModelSlot` serves one *reference* (``sentiment@champion``): it holds the model
currently behind it and, on :meth:`ModelSlot.refresh` (called by the :class:`Poller` every
few seconds and by ``POST /admin/reload``), re-resolves the reference and, if the version
changed, loads the new version in the calling (background) thread, warms it up and swaps it
in with one assignment on the event loop. Requests already queued on the old model finish
there; the old model's worker thread exits once it is idle. Slots only ever re-resolve the
reference they were built with, so nothing a client sends can load another model.

The :class:`Router` picks the slot for each request: the champion, or the canary for a
percentage of traffic (sticky by request key), and names an optional shadow slot that gets a
copy of every request.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import os
import random
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from loopline.errors import LooplineError
from loopline.serve.metrics import multiprocess_mode

if TYPE_CHECKING:
    from fastapi import FastAPI

    from loopline.core.predlog import PredictionLogger
    from loopline.registry.models import LoadedModel, ModelRegistry
    from loopline.serve.batching import MicroBatcher
    from loopline.serve.inference import Predictor

__all__ = [
    "FixedModel",
    "ModelSlot",
    "ModelSource",
    "Poller",
    "RegistryModel",
    "Router",
    "ServedModel",
    "freeze_heap",
    "parse_canary",
    "parse_model_ref",
    "serving_lifespan",
]

log = logging.getLogger(__name__)

CHAMPION_ROUTE = "champion"
CANARY_ROUTE = "canary"
SHADOW_ROUTE = "shadow"


# --- where models come from ------------------------------------------------------------------


class ModelSource(Protocol):
    """A reference the server can (re)load: a registry alias, or a fixed in-memory model."""

    ref: str

    def current_version(self) -> str:
        """The version the reference points at now (cheap: no model is loaded)."""
        ...

    def load(self) -> LoadedModel:
        """Load the version the reference points at now."""
        ...


class FixedModel:
    """An already-loaded model that never changes (tests, embedding in a Python program)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.ref = f"{loaded.info.name}/{loaded.info.version}"

    def current_version(self) -> str:
        """Always the loaded version."""
        return self.loaded.info.version

    def load(self) -> LoadedModel:
        """The same model object."""
        return self.loaded


class RegistryModel:
    """``name@alias`` (followed as the alias moves) or ``name/version`` in a registry."""

    def __init__(self, registry: ModelRegistry, ref: str) -> None:
        self.registry = registry
        self.ref = parse_model_ref(ref)

    @property
    def name(self) -> str:
        """The registered model name."""
        return self.ref.split("@", 1)[0].split("/", 1)[0]

    @property
    def alias(self) -> str | None:
        """The followed alias, or None for a pinned version."""
        return self.ref.rsplit("@", 1)[1] if "@" in self.ref else None

    def current_version(self) -> str:
        """Resolve the reference in the registry."""
        return self.registry.resolve(self.ref).version

    def load(self) -> LoadedModel:
        """Resolve and load (the alias may have moved since ``current_version``)."""
        return self.registry.load(self.ref)


def parse_model_ref(ref: str) -> str:
    """Normalise ``NAME``, ``NAME@ALIAS`` or ``NAME/VERSION``; a bare name means the champion."""
    from loopline.registry.models import parse_ref

    name, alias, version = parse_ref(ref)
    return f"{name}@{alias}" if alias is not None else f"{name}/{version}"


def parse_canary(spec: str) -> tuple[str, float]:
    """Split ``NAME@ALIAS:PCT`` into the reference and a percentage in (0, 100]."""
    ref, sep, percent_text = spec.rpartition(":")
    hint = "write --canary NAME@ALIAS:PERCENT, e.g. sentiment@challenger:10"
    if not sep or not ref:
        raise LooplineError(f"cannot read the canary spec {spec!r}: no ':PERCENT'", hint=hint)
    try:
        percent = float(percent_text.rstrip("%"))
    except ValueError:
        raise LooplineError(
            f"cannot read the canary spec {spec!r}: {percent_text!r} is not a number", hint=hint
        ) from None
    if not 0 < percent <= 100:
        raise LooplineError(
            f"the canary percentage must be above 0 and at most 100, got {percent_text}",
            hint=hint,
        )
    return parse_model_ref(ref), percent


# --- a served model and its slot -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ServedModel:
    """A loaded model version ready to answer: its predictor and its batcher."""

    loaded: LoadedModel
    predictor: Predictor
    batcher: MicroBatcher
    route: str

    @property
    def name(self) -> str:
        """Registered model name."""
        return self.loaded.info.name

    @property
    def version(self) -> str:
        """Model version."""
        return self.loaded.info.version


# Builds the ServedModel of a loaded version for a route (predictor, warm-up, batcher).
ServedFactory = Callable[[Any, str], ServedModel]


class ModelSlot:
    """One route's model, following its source; :attr:`current` is swapped atomically."""

    def __init__(
        self,
        route: str,
        source: ModelSource,
        build: ServedFactory,
        on_swap: Callable[[ServedModel, ServedModel], None] | None = None,
    ) -> None:
        self.route = route
        self.source = source
        self._build = build
        self._on_swap = on_swap
        self._lock = threading.Lock()  # one refresh at a time (poller vs admin reload)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.retired: list[ServedModel] = []
        self.current: ServedModel = build(source.load(), route)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Swap on this event loop from now on (the loop that runs the batchers)."""
        self._loop = loop

    def refresh(self) -> bool:
        """Re-resolve the reference; load, warm up and swap in a new version. Blocking.

        Returns whether the model changed. Registry errors propagate; the current model
        keeps serving whatever happens.
        """
        with self._lock:
            if self.source.current_version() == self.current.version:
                return False
            loaded = self.source.load()
            if loaded.info.version == self.current.version:
                return False  # the alias moved back while we were loading
            new = self._build(loaded, self.route)
            self._swap(new)
            return True

    def _swap(self, new: ServedModel) -> None:
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            self._install(new)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._install(new)
            return
        done = threading.Event()

        def install() -> None:
            try:
                self._install(new)
            finally:
                done.set()

        loop.call_soon_threadsafe(install)
        # Returning only once the new model answers lets /admin/reload report a done swap.
        if not done.wait(30.0):
            raise LooplineError(f"the server did not swap in {new.name}/{new.version} in time")

    def _install(self, new: ServedModel) -> None:
        """Runs on the event loop: requests read ``current`` and submit without awaiting in
        between, so every request is queued on exactly one model, old or new."""
        old = self.current
        self.current = new
        old.batcher.close()  # its queued requests still finish; then its thread exits
        self.retired = [m for m in self.retired if not _finished(m)] + [old]
        log.info("%s: now serving %s/%s (was %s)", self.route, new.name, new.version, old.version)
        if self._on_swap is not None:
            self._on_swap(old, new)

    def all_models(self) -> list[ServedModel]:
        """The current model and the retired ones that may still be finishing work."""
        return [self.current, *self.retired]


def _finished(model: ServedModel) -> bool:
    return model.batcher.shut_down and model.batcher.queued == 0


class Poller:
    """Calls :meth:`ModelSlot.refresh` on every slot every ``interval_s`` in a daemon thread."""

    def __init__(self, slots: list[ModelSlot], interval_s: float) -> None:
        self.slots = slots
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start polling (no-op when the interval is 0 or nothing can change)."""
        followed = [s for s in self.slots if isinstance(s.source, RegistryModel)]
        if self.interval_s <= 0 or not followed or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="loopline-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and wait for a refresh in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            for slot in self.slots:
                try:
                    slot.refresh()
                except Exception as exc:  # keep serving the current model
                    log.warning("cannot refresh %s (%s): %s", slot.route, slot.source.ref, exc)


# --- routing ---------------------------------------------------------------------------------


class Router:
    """Chooses the slot of each request and names the shadow slot, if any."""

    def __init__(
        self,
        champion: ModelSlot,
        canary: ModelSlot | None = None,
        canary_percent: float = 0.0,
        shadow: ModelSlot | None = None,
    ) -> None:
        if canary is not None and not 0 < canary_percent <= 100:
            raise ValueError("canary_percent must be in (0, 100]")
        self.champion = champion
        self.canary = canary
        # Compared with a number in [0, 10000): 0.01 % resolution.
        self._threshold = round(canary_percent * 100) if canary is not None else 0
        self.canary_percent = canary_percent if canary is not None else 0.0
        self.shadow = shadow

    @property
    def slots(self) -> list[ModelSlot]:
        """Every slot (champion first)."""
        return [s for s in (self.champion, self.canary, self.shadow) if s is not None]

    def choose(self, key: str | None) -> ModelSlot:
        """The canary for ``canary_percent`` % of requests, else the champion.

        With a key, the choice is a stable hash of it (the same key always gets the same
        route in every worker process); without, it is random.
        """
        if self.canary is None:
            return self.champion
        if key:
            digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
            bucket = int.from_bytes(digest, "big") % 10_000
        else:
            bucket = random.randrange(10_000)  # not for security: a traffic split
        return self.canary if bucket < self._threshold else self.champion


def freeze_heap() -> None:
    """Exclude everything allocated so far (the model, imported modules) from cyclic GC.

    A loaded model and MLflow's imports leave hundreds of thousands of long-lived objects;
    every full collection walked them all, pausing the server for up to 0.5 s (measured:
    p99 of 340 ms at 16 connections, 21 ms once frozen). Frozen objects are still freed by
    reference counting when a swapped-out model goes away.
    """
    gc.freeze()


def serving_lifespan(
    slots: Sequence[ModelSlot],
    poll_interval_s: float,
    prediction_log: PredictionLogger | None,
    *,
    after_batchers: Callable[[], None] | None = None,
) -> Callable[[FastAPI], Any]:
    """A model service's lifespan: attach the slots to the event loop, start the prediction
    log and the registry poller; at shutdown, stop following the registry, let every model
    finish its queue (``after_batchers`` then runs, e.g. to flush counts), close the log."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        for slot in slots:
            slot.attach(loop)
        if prediction_log is not None:
            prediction_log.start()
        poller = Poller(list(slots), poll_interval_s)
        poller.start()
        freeze_heap()  # what the server itself imported since the models were loaded
        try:
            yield
        finally:
            # uvicorn calls this after the in-flight requests finished.
            await asyncio.to_thread(poller.stop)
            for slot in slots:
                for served in slot.all_models():
                    await served.batcher.aclose()
            if after_batchers is not None:
                after_batchers()
            if prediction_log is not None:
                await asyncio.to_thread(prediction_log.close)
            if multiprocess_mode():
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())

    return lifespan
