"""Batch inference on Ray Data: a folder of Parquet shards scored by a pool of actors.

``loopline predict MODEL INPUT OUTPUT --engine ray`` calls :func:`predict_parquet_ray`. The
dataset streams through three stages, ``read_parquet`` -> ``map_batches`` -> ``write_parquet``:
Ray Data's streaming executor keeps only a bounded number of blocks in flight (back-pressure
on the object store, whose size a local instance sets, see
:mod:`loopline.core.ray_executor`), so memory stays bounded whatever the input size. Each
scoring actor takes the model from the object store once, when it starts, and scores
batches of ``chunk_rows`` with the same function as the single-process path
(:mod:`loopline.serve.batch`): same columns, same predictions and probabilities, the model's
name and version on every row. Row order across shards is not kept: join on an id column.

The output is a folder of Parquet files written under a temporary name beside the target
and renamed when complete, so a failed run leaves nothing behind. Ray is imported only
here, and this module only for ``--engine ray``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopline.errors import DataError, LooplineError
from loopline.serve.batch import (
    PREDICTION,
    _check_mapping,
    _create_folders,
    _OutputPlan,
    _remove_folders,
    _score,
    input_format_of,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from loopline.registry.models import LoadedModel

__all__ = ["check_paths", "predict_parquet_ray"]


class _Scorer:
    """A Ray Data actor: the model fetched once, then one batch at a time."""

    def __init__(self, model: Any, plan: _OutputPlan) -> None:
        import ray

        self._loaded: LoadedModel = ray.get(model)
        self._plan = plan

    def __call__(self, batch: pa.Table) -> pa.Table:
        table, _ = _score(self._loaded, batch, self._plan, None)
        return table


def check_paths(source: Path, path: Path, *, create_dirs: bool = False) -> None:
    """The Ray engine reads Parquet (a file or a folder of shards) and writes a new folder
    of Parquet files: ``path`` must not exist yet (or be an empty folder), and its parent
    must exist unless ``create_dirs``. A :class:`DataError` says which is wrong."""
    if input_format_of(source) != "parquet":
        raise DataError(
            f"the Ray engine reads Parquet; {source} is CSV",
            hint="convert it to Parquet shards, or score it with the default engine "
            "(no --engine ray)",
        )
    if path.is_file() or (path.is_dir() and any(path.iterdir())):
        raise DataError(
            f"the output {path} already exists; the Ray engine writes a new folder of "
            "Parquet files there",
            hint="remove it, or name a folder that does not exist yet",
        )
    if not create_dirs and not path.parent.is_dir():
        raise DataError(
            f"the output folder {path.parent} does not exist",
            hint="create it first, or add --create-dirs (create_dirs=True in Python)",
        )


def predict_parquet_ray(
    loaded: LoadedModel,
    input_path: str | Path,
    output_path: str | Path,
    *,
    ray_address: str | None = None,
    chunk_rows: int = 50_000,
    concurrency: int | None = None,
    columns: Mapping[str, str] | None = None,
    create_dirs: bool = False,
) -> dict[str, Any]:
    """Score a Parquet file or folder of shards with Ray Data into the folder ``output_path``.

    ``concurrency`` scoring actors (default: the cluster's CPUs) each hold ``loaded``'s
    model; batches have ``chunk_rows`` rows. ``ray_address`` as in the settings (None: a
    local Ray instance in this process). ``columns`` maps model inputs to file columns, as
    for :func:`~loopline.serve.batch.predict_file`. Returns a summary like
    ``predict_file``'s (rows, rows_scored, rows_empty, seconds, rows_per_s, files...).
    """
    started = time.perf_counter()
    source, target = Path(input_path), Path(output_path)
    if chunk_rows < 1:
        raise LooplineError(
            f"chunk_rows must be at least 1; found {chunk_rows}", hint="the default is 50000"
        )
    check_paths(source, target, create_dirs=create_dirs)
    mapping = _check_mapping(loaded, columns or {})
    import pyarrow.dataset as pds

    shards = pds.dataset(str(source), format="parquet")
    plan = _OutputPlan.build(loaded, shards.schema, source, mapping)
    # Blocks of about chunk_rows: Ray Data would bundle small files into a few large blocks,
    # and a block goes to one actor whole, so the actors would take turns instead of sharing.
    blocks = max(len(shards.files), -(-shards.count_rows() // chunk_rows))
    from loopline.core.ray_executor import RayExecutor

    ray = _ray()
    cpus = RayExecutor(ray_address).parallelism  # joins the cluster, or starts Ray here
    actors = concurrency or cpus
    # Ray Data lists the files in a task that asks for a whole CPU, and Ray holds an actor's
    # CPUs for its lifetime: scorers asking for every core would leave that task waiting
    # forever. They share all but one core (logical CPUs only: they still use every core);
    # reads and writes ask for none.
    per_actor = min(1.0, (cpus - 1) / actors)
    created = _create_folders(target.parent) if create_dirs else []
    temp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        (
            ray.data.read_parquet(str(source), num_cpus=0, override_num_blocks=blocks)
            .map_batches(
                _Scorer,
                fn_constructor_kwargs={"model": ray.put(loaded), "plan": plan},
                batch_size=chunk_rows,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=per_actor,
            )
            .write_parquet(str(temp), ray_remote_args={"num_cpus": 0})
        )
        if target.is_dir():
            target.rmdir()  # empty, checked above
        os.replace(temp, target)
    except BaseException as exc:
        shutil.rmtree(temp, ignore_errors=True)
        _remove_folders(created)
        cause = _loopline_cause(exc)
        if cause is not None:
            raise cause from None
        raise
    written = pds.dataset(str(target), format="parquet")
    rows = written.count_rows()
    empty = written.to_table(columns=[PREDICTION]).column(PREDICTION).null_count if rows else 0
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "rows_read": rows,
        "rows_scored": rows - empty,
        "rows_empty": empty,
        "rows_malformed": 0,
        "malformed_lines": [],
        "files": len(written.files),
        "actors": actors,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds, 1) if seconds > 0 else None,
        "input": str(source),
        "output": str(target),
        "input_format": "parquet",
        "output_format": "parquet",
        "columns": plan.mapping,
        "model_name": loaded.info.name,
        "model_version": loaded.info.version,
        "classes": plan.classes,
        "replaced_columns": plan.replaced,
    }


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ModuleNotFoundError:
        raise LooplineError(
            "--engine ray needs Ray Data, which is not installed",
            hint="pip install 'loopline[ray]', or score without --engine ray",
        ) from None
    # Progress bars and the plan of every operator would fill the terminal; the CLI prints
    # a summary.
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


def _loopline_cause(exc: BaseException) -> LooplineError | None:
    """The Loopline error (e.g. a DataError of the model) inside Ray's wrapping, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, LooplineError):
            return current
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        current = cause if isinstance(cause, BaseException) else current.__cause__
    return None
