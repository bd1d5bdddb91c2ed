"""What each dashboard page shows, gathered through the same public functions as the
command line (``loopline runs``, ``models``, ``lineage``, ``monitor``, ``label``).

Every function takes the :class:`Dashboard` (the project's stores, opened once) and the
page's parameters, and returns the template's context. Wrong parameters raise
:class:`~loopline.errors.LooplineError` (shown as a 400 page with its hint); things that do
not exist raise :class:`NotFound` (404).
"""

from __future__ import annotations

import contextlib
import importlib
import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from loopline.errors import LooplineError, ModelNotFound

if TYPE_CHECKING:
    from loopline.config import Settings
    from loopline.core.artifacts import ArtifactStore
    from loopline.core.metadata import MetadataStore
    from loopline.registry.models import ModelRegistry

__all__ = ["Dashboard", "NotFound"]

RUNS_PER_PAGE = 50
VERSIONS_PER_PAGE = 20
RUN_STATUSES = ("completed", "failed", "running")
_COMPARED = 6  # versions side by side at most
_HISTORY = 100  # alias moves shown
_RECENT_REQUESTS = 10
_HEX = re.compile(r"[0-9a-f]{8,128}")
_WARM_MODULES = (
    "loopline.monitor.report",
    "loopline.monitor.drift",
    "scipy.stats",
    "loopline.stream.audit",
    "loopline.data.dvc",
    "loopline.label.web",
    "pyarrow.parquet",
)


class NotFound(LooplineError):
    """A run, artifact, model, dataset or queue the dashboard was asked for does not exist."""


class _Cache:
    """A small LRU of values computed from immutable content (keyed by content hash)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value


def _query(**params: Any) -> str:
    """``?a=1&b=2`` of the non-empty parameters (lists repeat their key)."""
    kept = {k: v for k, v in params.items() if v not in (None, "", [])}
    return "?" + urlencode(kept, doseq=True) if kept else ""


def _when(text: str | None, what: str, *, end: bool = False) -> datetime | None:
    """A filter's date (``YYYY-MM-DD``, or an ISO time) as UTC; the end of a bare date is
    the start of the next day, so that ``until`` includes the day it names."""
    if not text or not text.strip():
        return None
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise LooplineError(
            f"{what}: {text!r} is not a date", hint="use YYYY-MM-DD, e.g. 2026-11-30"
        ) from None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    if end and len(text.strip()) == 10:
        value += timedelta(days=1)
    return value.astimezone(UTC)


def _page_number(page: int) -> int:
    if page < 1:
        raise LooplineError(f"page {page} does not exist", hint="pages start at 1")
    return page


def _decode(text: str | None) -> Any:
    return orjson.loads(text) if text else {}


class Dashboard:
    """The project's stores, opened once for the app's lifetime, and the pages' data."""

    def __init__(
        self,
        settings: Settings,
        store: MetadataStore,
        registry: ModelRegistry,
        artifacts: ArtifactStore,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.artifacts = artifacts
        self.warmed = threading.Event()  # set by warm()
        self._decisions = _Cache(4096)  # gate decisions, by artifact hash
        self._profiles = _Cache(16)  # dataset profiles, by artifact hash
        self._diffs = _Cache(16)  # dataset diffs, by the two artifact hashes

    def warm(self) -> None:
        """Open MLflow's client and import what the pages need (SciPy's stats alone takes
        seconds), so that no page pays for it; then set :attr:`warmed`."""
        try:
            with contextlib.suppress(ModelNotFound):  # no MLflow store yet: nothing registered
                self.registry.client  # noqa: B018
            for name in _WARM_MODULES:
                importlib.import_module(name)
        finally:
            self.warmed.set()

    # -- runs -----------------------------------------------------------------------------
    def runs(
        self,
        pipeline: str | None,
        status: str | None,
        since: str | None,
        until: str | None,
        page: int,
    ) -> dict[str, Any]:
        """One page of runs, newest first, filtered by pipeline, status and start time."""
        if status and status not in RUN_STATUSES:
            raise LooplineError(
                f"unknown run status {status!r}", hint=f"use one of {', '.join(RUN_STATUSES)}"
            )
        page = _page_number(page)
        rows, total = self.store.page_runs(
            pipeline=pipeline or None,
            status=status or None,
            since=_when(since, "since"),
            until=_when(until, "until", end=True),
            limit=RUNS_PER_PAGE,
            offset=(page - 1) * RUNS_PER_PAGE,
        )
        pages = max(1, math.ceil(total / RUNS_PER_PAGE))
        filters = {"pipeline": pipeline, "status": status, "since": since, "until": until}
        return {
            "runs": rows,
            "total": total,
            "page": page,
            "pages": pages,
            "first": (page - 1) * RUNS_PER_PAGE + 1,
            "previous": _query(**filters, page=page - 1) if page > 1 else None,
            "next": _query(**filters, page=page + 1) if page < pages else None,
            "pipelines": self.store.run_pipelines(),
            "statuses": RUN_STATUSES,
            "filters": filters,
        }

    def run(self, run_id: str) -> dict[str, Any]:
        """One run: its DAG, steps, parameters, code version, artifacts and models."""
        from loopline.ui.dag import dag_svg

        try:
            run = self.store.get_run(run_id)
        except LooplineError as exc:
            raise NotFound(exc.message, hint=exc.hint) from None
        hashes = [h for s in run["steps"] for h in (*s["inputs"].values(), *s["outputs"].values())]
        info = self.store.artifacts_info(hashes)
        datasets = {
            d["artifact_hash"]: f"{d['name']}:v{d['version']}" for d in self.store.list_datasets()
        }
        for step in run["steps"]:
            step["params"] = _decode(step["params"])
        versions, _ = self.store.page_model_versions(run_id=run["id"])
        return {
            "run": run,
            "params": _decode(run["params"]),
            "dag": dag_svg(run["steps"]),
            "artifacts": info,
            "datasets": datasets,
            "versions": versions,
        }

    def artifact(self, digest: str) -> dict[str, Any]:
        """An artifact's record and a preview of its content."""
        from loopline.ui.preview import preview_artifact

        self._check_artifact(digest)
        meta = self.artifacts.meta(digest)
        folder = self.artifacts.local_folder(digest)
        dataset = self.store.dataset_of(digest)
        return {
            "digest": digest,
            "meta": meta,
            "record": self.store.artifacts_info([digest]).get(digest),
            "dataset": f"{dataset[0]}:v{dataset[1]}" if dataset else None,
            "folder": self._folder_version(digest),
            "preview": preview_artifact(folder, str(meta.get("materializer"))),
        }

    def artifact_file(self, digest: str, path: str) -> Any:
        """The path of one file inside an artifact (never outside its folder)."""
        self._check_artifact(digest)
        folder = self.artifacts.local_folder(digest).resolve()
        target = (folder / path).resolve()
        if not target.is_relative_to(folder) or not target.is_file() or target.name == "meta.json":
            raise NotFound(f"artifact {digest[:12]} has no file {path!r}")
        return target

    def _folder_version(self, digest: str) -> str | None:
        """The one-line description of a folder version (DVC hash or snapshot), or None when
        the artifact is something else (only Loopline's own FolderVersion is unpickled)."""
        from loopline.data.dvc import folder_versions_among

        folder = folder_versions_among([digest], self.settings, self.store).get(digest)
        return folder.describe() if folder is not None else None

    def _check_artifact(self, digest: str) -> None:
        if not _HEX.fullmatch(digest) or not self.artifacts.exists(digest):
            raise NotFound(
                f"no artifact {digest!r} in this project",
                hint="artifacts are linked from a run's page",
            )

    # -- lineage --------------------------------------------------------------------------
    def lineage(self, ref: str | None) -> dict[str, Any]:
        """A model version back to its run, code and data; forward to its alias moves and
        the predictions it made."""
        from loopline.core.predlog import read_predictions
        from loopline.data.dvc import folder_versions_among

        names = self.store.model_names()
        if not ref or not ref.strip():
            if not names:
                return {"ref": "", "names": names, "found": None}
            ref = f"{names[0]}@champion"
        ref = ref.strip()
        full = ref if ("@" in ref or "/" in ref) else f"{ref}@champion"
        try:
            info = self.registry.resolve(full)
        except ModelNotFound as exc:
            raise NotFound(exc.message, hint=exc.hint) from None
        found = self.store.lineage(info.name, info.version)
        folders = folder_versions_among(
            [s["output"] for s in found["steps"]], self.settings, self.store
        )
        for step in found["steps"]:
            folder = folders.get(step["output"])
            step["data_version"] = folder.describe() if folder is not None else None
        moves = [
            e
            for e in self.store.alias_history(info.name)
            if info.version in (e["version"], e["previous_version"])
        ]
        log = read_predictions(str(self.settings.prediction_log_url), info.name)
        mine = log[log["model_version"].astype(str) == info.version]
        return {
            "ref": ref,
            "names": names,
            "info": info,
            "found": found,
            "moves": moves,
            "predictions": {
                "total": len(mine),
                "routes": {str(k): int(v) for k, v in mine["route"].value_counts().items()},
                "first": mine["ts"].min() if len(mine) else None,
                "last": mine["ts"].max() if len(mine) else None,
                "recent": mine.tail(_RECENT_REQUESTS)[["request_id", "ts", "route"]]
                .iloc[::-1]
                .to_dict("records"),
            },
        }

    def request(self, request_id: str) -> dict[str, Any]:
        """A decision (or prediction) by its id, and the lineage of its model versions."""
        from loopline.stream.audit import trace_request

        if not request_id.strip():
            raise LooplineError("no request id given", hint="paste a request or transaction id")
        try:
            return {"found": trace_request(self.settings, self.store, request_id.strip())}
        except LooplineError as exc:
            if exc.message.startswith("no decision or prediction"):
                raise NotFound(exc.message, hint=exc.hint) from None
            raise

    # -- models ---------------------------------------------------------------------------
    def models(self, name: str | None, page: int, compare: list[str]) -> dict[str, Any]:
        """A model's versions, aliases, alias history, gate results and metrics."""
        from loopline.registry.models import flatten_metrics

        names = self.store.model_names()
        if not names:
            return {"names": names, "name": None}
        name = name or names[0]
        if name not in names:
            raise NotFound(
                f"no model named {name!r} was registered by Loopline",
                hint=f"registered models: {', '.join(names)}",
            )
        page = _page_number(page)
        aliases = self.registry.aliases(name)
        rows, total = self.store.page_model_versions(
            name, limit=VERSIONS_PER_PAGE, offset=(page - 1) * VERSIONS_PER_PAGE
        )
        every = [r["version"] for r in self.store.page_model_versions(name)[0]]
        by_version: dict[str, list[str]] = {}
        for alias, version in sorted(aliases.items()):
            by_version.setdefault(version, []).append(alias)
        wanted = [v for v in compare if v in every][:_COMPARED] or _default_compared(aliases, every)
        lineage = {r["version"]: r for r in rows}
        for version in wanted:
            if version not in lineage:
                row = self.store.model_version(name, version)
                if row is not None:
                    lineage[version] = row
        decisions = self.gate_decisions(name, [r["run_id"] for r in lineage.values()])
        for row in rows:
            row["aliases"] = by_version.get(row["version"], [])
            row["gate"] = decisions.get(row["run_id"])
        compared = {
            v: flatten_metrics((decisions.get(lineage[v]["run_id"]) or {}).get("candidate") or {})
            for v in wanted
            if v in lineage
        }
        metric_names = sorted({m for values in compared.values() for m in values})
        pages = max(1, math.ceil(total / VERSIONS_PER_PAGE))
        history = list(reversed(self.registry.alias_history(name)))
        return {
            "names": names,
            "name": name,
            "aliases": aliases,
            "versions": rows,
            "all_versions": every,
            "total": total,
            "page": page,
            "pages": pages,
            "previous": _query(name=name, page=page - 1) if page > 1 else None,
            "next": _query(name=name, page=page + 1) if page < pages else None,
            "compared": compared,
            "metric_names": metric_names,
            "history": history[:_HISTORY],
            "history_total": len(history),
        }

    def gate_decisions(self, name: str, run_ids: list[str | None]) -> dict[str, dict[str, Any]]:
        """The gate decision about model ``name`` in each of these runs, by run id."""
        found: dict[str, dict[str, Any]] = {}
        for output in self.store.outputs_of_steps([r for r in run_ids if r], "gate"):
            if output["materializer"] != "json":
                continue  # a decision is stored as JSON: load nothing bigger
            digest = output["hash"]
            decision = self._decisions.get(digest, partial(self.artifacts.load, digest))
            if isinstance(decision, dict) and decision.get("model_name") == name:
                found[output["run_id"]] = decision
        return found

    # -- monitoring -----------------------------------------------------------------------
    def monitoring(self, params: dict[str, str]) -> dict[str, Any]:
        """The models to choose from, the chosen one's alerts, and its report's URL."""
        names = self.store.model_names()
        model = params.get("model") or (names[0] if names else "")
        return {
            "names": names,
            "model": model,
            "params": params,
            "alerts": self.store.alerts(model, limit=50) if model else [],
            "report_url": "/monitoring/report" + _query(**{**params, "model": model}),
        }

    def monitoring_report(self, params: dict[str, str]) -> str:
        """The monitoring report as ``loopline monitor report --html`` writes it."""
        from loopline.monitor.report import build_report, render_html

        model = params.get("model") or ""
        if not model:
            raise LooplineError("no model given", hint="choose a model on the monitoring page")
        report = build_report(
            model,
            self.settings,
            window=params.get("window") or "1D",
            since=params.get("since") or None,
            until=params.get("until") or None,
            group_column=params.get("group") or None,
            positive_label=params.get("positive") or None,
        )
        return render_html(report.to_dict())

    # -- data -----------------------------------------------------------------------------
    def data(self) -> dict[str, Any]:
        """Every dataset version, grouped by dataset."""
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in self.store.list_datasets():
            grouped.setdefault(row["name"], []).append(row)
        return {"datasets": dict(sorted(grouped.items()))}

    def _dataset_row(self, name: str, version: int) -> dict[str, Any]:
        for row in self.store.list_datasets(name):
            if int(row["version"]) == version:
                return row
        raise NotFound(
            f"no dataset version {name}:v{version}", hint="see the data page for the versions"
        )

    def _is_table(self, row: dict[str, Any]) -> bool:
        return bool(
            self.artifacts.meta(row["artifact_hash"]).get("materializer") == "pandas.parquet"
        )

    def _profile(self, row: dict[str, Any]) -> Any:
        """The profile of a table version (None without rows), computed once per content."""
        from loopline.monitor.profile import build_profile

        def compute() -> Any:
            frame = self.artifacts.load(row["artifact_hash"])
            return build_profile(frame) if len(frame) else None

        return self._profiles.get(row["artifact_hash"], compute)

    def dataset(self, name: str, version: int) -> dict[str, Any]:
        """One dataset version: its record, its profile and its first rows."""
        from loopline.ui.preview import preview_artifact

        row = self._dataset_row(name, version)
        table = self._is_table(row)
        preview = (
            preview_artifact(self.artifacts.local_folder(row["artifact_hash"]), "pandas.parquet")
            if table
            else {}
        )
        return {
            "row": row,
            "versions": self.store.list_datasets(name),
            "profile": self._profile(row) if table else None,
            "table": preview.get("table"),
            "folder": None if table else self._folder_version(row["artifact_hash"]),
        }

    def dataset_diff(self, name: str, a: int, b: int) -> dict[str, Any]:
        """What changed from version ``a`` to ``b``: rows, columns, and each column's
        distribution (the drift tests of ``loopline monitor``, ``a`` as the reference).

        Computed once per pair of contents (versions never change)."""
        row_a, row_b = self._dataset_row(name, a), self._dataset_row(name, b)
        if not (self._is_table(row_a) and self._is_table(row_b)):
            raise LooplineError(
                f"{name} is not a table: only table versions can be compared here",
                hint="compare folder versions with `loopline data diff A B`",
            )
        key = f"{row_a['artifact_hash']}:{row_b['artifact_hash']}"
        found = self._diffs.get(key, partial(self._diff, row_a, row_b))
        return {"name": name, "a": row_a, "b": row_b, **found}

    def _diff(self, row_a: dict[str, Any], row_b: dict[str, Any]) -> dict[str, Any]:
        import pandas as pd

        from loopline.monitor.drift import drift_report

        frame_a = self.artifacts.load(row_a["artifact_hash"])
        frame_b = self.artifacts.load(row_b["artifact_hash"])
        common = [c for c in frame_a.columns if c in frame_b.columns]
        # Rows as multisets of their hashes (over the shared columns): a duplicated row
        # added once more counts as added.
        hashes_a = Counter(pd.util.hash_pandas_object(frame_a[common], index=False).tolist())
        hashes_b = Counter(pd.util.hash_pandas_object(frame_b[common], index=False).tolist())
        profile = self._profile(row_a)
        report = None
        if profile is not None and len(frame_b):  # distributions need rows on both sides
            report = drift_report(profile, frame_b[[c for c in profile.columns if c in frame_b]])
        return {
            "rows": {
                "a": len(frame_a),
                "b": len(frame_b),
                "added": (hashes_b - hashes_a).total(),
                "removed": (hashes_a - hashes_b).total(),
            },
            "columns": {
                "added": [str(c) for c in frame_b.columns if c not in frame_a.columns],
                "removed": [str(c) for c in frame_a.columns if c not in frame_b.columns],
            },
            "drift": report,
        }

    # -- review ---------------------------------------------------------------------------
    def review(self) -> dict[str, Any]:
        """The labeling queues with their progress."""
        from loopline.label.queue import list_queues

        return {"queues": list_queues(self.store)}


def _default_compared(aliases: dict[str, str], versions: list[str]) -> list[str]:
    """Champion, previous, challenger, then the newest versions."""
    chosen: list[str] = []
    for alias in ("champion", "previous", "challenger"):
        if alias in aliases and aliases[alias] not in chosen:
            chosen.append(aliases[alias])
    for version in versions:
        if len(chosen) >= 4:
            break
        if version not in chosen:
            chosen.append(version)
    return chosen
