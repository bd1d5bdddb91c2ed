"""Adaptive micro-batching: concurrent requests share one model call.

A model call has a large fixed cost and a small cost per row, so scoring the rows of many
concurrent requests together multiplies throughput. The :class:`MicroBatcher` of a model
keeps a bounded queue of waiting requests and one worker thread that runs the model, so the
event loop keeps accepting connections and answering ``/health`` while a batch is scored.
Batches that the model declares quick (a few milliseconds at most, see ``run_inline``) are
scored on the event loop instead: at thousands of requests per second the hand-offs of the
GIL between the loop and the worker cost more than such a batch.

How a batch forms (all bookkeeping happens on the event loop thread, so it needs no locks):

- while the worker is busy, arriving requests wait; when it finishes, everything waiting
  (up to ``max_batch_size`` rows) goes at once: under load, batches grow by themselves;
- when a request arrives at an idle worker, it waits at most ``max_wait_us`` for as many
  requests as the previous batch had (the clients just answered are about to send again),
  and goes at once when the previous batch was a single request: a lone client never waits;
- a batch scored on the event loop is formed when the loop comes to it (the next loop
  iteration), so the requests read meanwhile join it rather than waiting for the next one;
- past ``max_queue`` waiting requests, :meth:`MicroBatcher.submit` raises
  :class:`QueueFull` at once, so overload becomes a fast 503 instead of growing latency.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Batch", "BatchItem", "BatcherClosed", "MicroBatcher", "QueueFull"]

Columns = Sequence[Sequence[Any]]

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The request queue is at its bound; the client should retry after ``retry_after_s``."""

    def __init__(self, max_queue: int, retry_after_s: int = 1) -> None:
        super().__init__(f"the request queue is full ({max_queue} requests waiting)")
        self.retry_after_s = retry_after_s


class BatcherClosed(Exception):
    """The batcher was closed (its model was swapped out or the server is stopping)."""


class BatchItem:
    """One request inside a batch: its input columns, row count, caller data and results
    (filled once its batch is scored).

    A plain class with slots: one is made per request, and a dataclass's generated
    ``__init__`` with default factories cost several times as much.
    """

    __slots__ = ("columns", "future", "meta", "results", "rows")

    def __init__(
        self,
        columns: Columns,
        rows: int,
        meta: Any,
        future: asyncio.Future[list[Any]] | None,
    ) -> None:
        self.columns = columns
        self.rows = rows
        self.meta = meta
        self.future = future
        self.results: list[Any] = _NO_RESULTS

    def __repr__(self) -> str:
        return f"BatchItem(rows={self.rows}, meta={self.meta!r})"


_NO_RESULTS: list[Any] = []  # shared until the batch is scored; never appended to


class Batch(list[BatchItem]):
    """The items of one model call, as ``after_batch`` gets them, with the call's input
    ``columns`` (every item's rows, in order) and everything ``predict`` returned for them
    (``results``): a hook can read the whole batch at once when no caller gave up."""

    __slots__ = ("columns", "results")

    def __init__(self) -> None:
        super().__init__()
        self.columns: Columns = ()
        self.results: Sequence[Any] = ()


class MicroBatcher:
    """Gathers concurrent requests into one call of ``predict`` in a dedicated thread.

    Args:
        predict: scores a batch given as one sequence per input column; returns one result
            per row, in order. Runs in the worker thread (or inline, see ``run_inline``).
        after_batch: called after ``predict`` with the batch's items (results filled; a
            :class:`Batch`, which also holds the call's columns and all its results),
            *after* their callers were answered, e.g. to write a prediction log; a slow
            ``after_batch`` delays the next batch, never a response.
        on_batch: called after ``predict`` with (rows, seconds) of each model call,
            *before* its callers are answered (metrics a client can then read): keep it to
            a few counter increments.
        run_inline: given a batch's columns, whether to score it on the event loop itself
            instead of the worker thread. Worth it only for batches of a couple of
            milliseconds at most: every batch handed to a thread costs GIL hand-offs
            between it and the event loop, measured at more than such a batch's own work at
            thousands of requests per second. The callable must bound the time (say, by
            the size of the input), since the loop serves nothing else meanwhile.
        max_batch_size: most rows in one call (a larger single request goes alone).
        max_wait_us: longest time a request waits at an idle worker for others to join.
        max_queue: most requests waiting; more raise :class:`QueueFull`.
        name: names the worker thread.
    """

    def __init__(
        self,
        predict: Callable[[Columns], Sequence[Any]],
        *,
        after_batch: Callable[[list[BatchItem]], None] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        run_inline: Callable[[Columns], bool] | None = None,
        max_batch_size: int = 64,
        max_wait_us: int = 1_000,
        max_queue: int = 1_024,
        name: str = "model",
    ) -> None:
        if max_batch_size < 1 or max_queue < 1 or max_wait_us < 0:
            raise ValueError("max_batch_size and max_queue must be >= 1, max_wait_us >= 0")
        self._predict = predict
        self._after_batch = after_batch
        self._on_batch = on_batch
        self._run_inline = run_inline
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_us / 1e6
        self.max_queue = max_queue
        self.name = name
        # A plain thread fed by a SimpleQueue: a ThreadPoolExecutor's per-submit bookkeeping
        # showed in profiles at thousands of batches per second.
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0  # the thread that runs _loop
        self._pending: deque[BatchItem] = deque()
        self._pending_rows = 0
        self._busy = False
        self._target = 1  # requests to wait for at an idle worker (the last batch's count)
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._shut_down = False
        self._idle: asyncio.Event | None = None

    @property
    def queued(self) -> int:
        """Requests waiting for the worker (not counting the batch being scored)."""
        return len(self._pending)

    @property
    def shut_down(self) -> bool:
        """Whether the worker was told to stop (it exits once its last batch is done)."""
        return self._shut_down

    # -- submitting (event loop thread) ---------------------------------------------------

    def submit(self, columns: Columns, rows: int, meta: Any = None) -> asyncio.Future[list[Any]]:
        """Queue a request; the future resolves to its ``rows`` results, in order.

        Raises :class:`QueueFull` at once when ``max_queue`` requests are waiting, and
        :class:`BatcherClosed` after the batcher shut down.
        """
        loop = self._bind_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._enqueue(BatchItem(columns, rows, meta, future))
        return future

    def submit_nowait(self, columns: Columns, rows: int, meta: Any = None) -> bool:
        """Queue a request whose result nobody awaits (a shadow copy); False if dropped."""
        self._bind_loop()
        try:
            self._enqueue(BatchItem(columns, rows, meta, None))
        except (QueueFull, BatcherClosed):
            return False
        return True

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop of the latest request (None before the first)."""
        return self._loop

    def _bind_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        # A thread runs one loop at a time: if the bound loop runs in this thread, it is the
        # running one. This skips asyncio.get_running_loop(), which makes a getpid() system
        # call each time (CPython 3.11), on every request.
        if loop is not None and self._loop_thread == threading.get_ident() and loop.is_running():
            return loop
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new loop (e.g. a test client that runs each request in its own loop) may
            # only take over an idle batcher: futures cannot move between loops.
            if self._busy or self._pending:
                raise RuntimeError("a MicroBatcher is in use by another event loop")
            self._loop = loop
            self._idle = None
        self._loop_thread = threading.get_ident()
        return loop

    def _enqueue(self, item: BatchItem) -> None:
        if self._shut_down:
            raise BatcherClosed("this model is no longer served")
        if len(self._pending) >= self.max_queue:
            raise QueueFull(self.max_queue)
        self._pending.append(item)
        self._pending_rows += item.rows
        if not self._busy:
            self._dispatch_or_wait()

    def _dispatch_or_wait(self) -> None:
        if (
            self._pending_rows >= self.max_batch_size
            or len(self._pending) >= self._target
            or self.max_wait_s == 0
        ):
            self._dispatch()
        elif self._timer is None:
            assert self._loop is not None
            self._timer = self._loop.call_later(self.max_wait_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._busy:
            self._dispatch()

    def _dispatch(self) -> None:
        """Hand up to ``max_batch_size`` rows to the worker (at least one request).

        With ``run_inline``, the batch is formed only when the event loop comes to it (the
        next loop iteration), so the requests that the loop reads meanwhile join it: the
        clients answered by the previous batch send again together, and one model call for
        all of them costs less than two (a batch has a fixed cost of tens of microseconds).
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._run_inline is not None:
            assert self._loop is not None
            self._busy = True
            self._loop.call_soon(self._form_batch)
            return
        self._form_batch()

    def _form_batch(self) -> None:
        """Take up to ``max_batch_size`` rows of the waiting requests and score them (inline
        when ``run_inline`` accepts them, else in the worker thread)."""
        batch = Batch()
        rows = 0
        while self._pending:
            item = self._pending[0]
            if batch and rows + item.rows > self.max_batch_size:
                break
            self._pending.popleft()
            self._pending_rows -= item.rows
            if item.future is not None and item.future.done():
                continue  # the caller timed out or went away while waiting
            batch.append(item)
            rows += item.rows
        if not batch:
            self._busy = False
            self._after_idle()
            return
        self._busy = True
        self._target = len(batch)
        columns = _concat(batch)
        if self._run_inline is not None and self._run_inline(columns):
            self._run_guarded(_Job(batch, rows, columns, inline=True))
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._work, name=f"loopline-{self.name}", daemon=True
            )
            self._thread.start()
        self._jobs.put(_Job(batch, rows, columns, inline=False))

    # -- scoring (the worker thread, or the event loop for inline batches) -----------------

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._run_guarded(job)

    def _run_guarded(self, job: _Job) -> None:
        try:
            self._run(job)
        except Exception:  # a failing hook must not stop the worker
            log.exception("model worker %s: a batch hook failed", self.name)

    def _run(self, job: _Job) -> None:
        batch, rows = job.batch, job.rows
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            results = self._predict(job.columns)
            if len(results) != rows:
                raise RuntimeError(f"the model returned {len(results)} results for {rows} rows")
            batch.columns = job.columns
            batch.results = results
            offset = 0
            for item in batch:
                size = item.rows
                if size == 1:
                    item.results = [results[offset]]
                else:
                    item.results = list(results[offset : offset + size])
                offset += size
        except Exception as exc:  # every caller of the batch gets the error
            error = exc
        seconds = time.perf_counter() - started
        # The counts go in before the answers leave (a few locked increments), so a client
        # that has its answer finds it counted in /metrics; a failing count loses no answer.
        if self._on_batch is not None:
            try:
                self._on_batch(rows, seconds)
            except Exception:
                log.exception("model worker %s: the batch metrics hook failed", self.name)
        if job.inline:
            self._deliver(batch, error)
        else:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._deliver, batch, error)
        # The prediction log runs after the answers are on their way: a slow or failing
        # hook delays the next batch at most, never a response.
        if error is None and self._after_batch is not None:
            self._after_batch(batch)

    # -- completion (event loop thread) ---------------------------------------------------

    def _deliver(self, batch: list[BatchItem], error: BaseException | None) -> None:
        for item in batch:
            future = item.future
            if future is None or future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(item.results)
        self._busy = False
        if self._pending:
            self._dispatch()  # these already waited for the busy worker: no extra wait
        else:
            self._after_idle()

    def _after_idle(self) -> None:
        if self._idle is not None:
            self._idle.set()
        if self._closing and not self._pending:
            self._shutdown()

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker once the queued requests are answered (call on the loop thread).

        Requests submitted before it are still served; the worker thread exits after them.
        """
        self._closing = True
        if not self._busy and not self._pending:
            self._shutdown()

    async def aclose(self) -> None:
        """Close, wait until every queued request is answered, and join the worker thread."""
        self._closing = True
        if self._busy or self._pending:
            self._idle = asyncio.Event()
            while self._busy or self._pending:
                self._idle.clear()
                await self._idle.wait()
        self._shutdown()
        # Joining waits for the last after_batch (e.g. the prediction log) to finish.
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    def _shutdown(self) -> None:
        if not self._shut_down:
            self._shut_down = True
            self._jobs.put(None)  # the worker exits after the batches queued before this


@dataclass(frozen=True, slots=True)
class _Job:
    """A batch handed to scoring: its items, row count and concatenated input columns."""

    batch: Batch
    rows: int
    columns: Columns
    inline: bool  # scored on the event loop, not in the worker thread


def _concat(batch: list[BatchItem]) -> Columns:
    """One list per input column with the rows of every request, in order."""
    if len(batch) == 1:
        return batch[0].columns
    n_columns = len(batch[0].columns)
    return [[value for item in batch for value in item.columns[i]] for i in range(n_columns)]
