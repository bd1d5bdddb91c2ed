"""``loopline runs reproduce RUN``: run a recorded run again and compare every output.

The run's pipeline is built again with its recorded parameters and executed without the
cache (the point is to compute again). Data comes back as it was read:

- a folder that DVC tracked (``version_images``: DVC's hash and the git commit are in its
  output), read from a committed workspace or at a branch or tag, is checked out at that
  commit through DVC's API, so a folder changed and committed since gives the recorded
  files again (a ``.dvc`` file that was not committed has no commit to go back to: the
  workspace is read, with a note);
- files and folders without DVC are read where they are: their recorded content (the
  dataset version, a snapshot's manifest, the step's cache key) tells whether they changed.

Each output of each step is then compared with the recorded one: ``identical`` (same
artifact hash), ``equivalent`` (the artifacts differ only in a creation stamp: a profile's
``created_at``, the ``model_uuid`` and ``utc_time_created`` MLflow wrote into models saved
by older versions; or two pickled models predict exactly the same on the step's input
tables), ``same data`` (a folder version read from the DVC checkout holds the same
files as the workspace did), ``differs``, ``new``/``missing`` (a step the recorded run did
not have, or one the pipeline no longer has) or ``not re-run``. Steps that act on the
project's state are not run again: ``gate`` and ``register`` decide against the current
champion and would promote, ``audit`` would queue rows for review again.

A difference is traced to its cause: an input that differs (named), the step's code, its
parameters, a file it reads that changed since the run (named, with the files a snapshot
shows changed), outside state it declares, or a step that is not deterministic. The code
version (git commit + hash of uncommitted changes) of the run and of the workspace are
compared too; the code is never checked out.

The orchestrate layer holds this: it runs pipelines (core), resolves them (project), checks
DVC data out (data) and knows the library steps of the label and registry stages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from loopline.errors import LooplineError

if TYPE_CHECKING:
    from loopline.config import Settings
    from loopline.core.artifacts import ArtifactStore
    from loopline.core.dag import Dag, Node
    from loopline.core.metadata import MetadataStore
    from loopline.core.runner import RunEvent
    from loopline.data.dvc import FolderVersion

__all__ = ["DataPin", "OutputCheck", "Reproduction", "reproduce_run"]

Result = Literal["identical", "equivalent", "same data", "differs", "new", "missing", "not re-run"]
#: Results that count as a match (the exit code of ``runs reproduce`` is 0 with only these).
MATCHING = frozenset({"identical", "equivalent", "same data", "not re-run"})

# Fields recording when, or under which random id, an artifact was written rather than what it
# holds, by (materializer, file in the artifact). Two artifacts differing only there are
# equivalent. Models are saved without them now (train.mlflow_io), but runs recorded before
# hold MLflow's random model_uuid and save time.
_STAMPS: dict[tuple[str, str], tuple[str, ...]] = {
    ("mlflow.model", "model/MLmodel"): ("model_uuid", "utc_time_created"),
    ("json", "data.json"): ("created_at",),
}
_META = "meta.json"
_SHOWN_FILES = 10


@dataclass(frozen=True)
class DataPin:
    """A DVC-tracked folder read at the git revision the run recorded, not the workspace."""

    step: str
    source: str
    md5: str
    git_rev: str
    workspace_md5: str | None  # what the workspace's .dvc file records now (None: untracked)


@dataclass(frozen=True)
class OutputCheck:
    """One output of one step: its recorded and reproduced hash, and how they compare."""

    step: str
    output: str
    recorded: str | None
    reproduced: str | None
    result: Result
    note: str = ""

    @property
    def matches(self) -> bool:
        return self.result in MATCHING


@dataclass(frozen=True)
class Cause:
    """Why a step's outputs differ: ``kind`` is input, code, params, file, state or
    nondeterministic; ``what`` names the input, parameter or path; ``detail`` says more."""

    step: str
    kind: str
    what: str
    detail: str


@dataclass
class Reproduction:
    """The outcome of :func:`reproduce_run`."""

    run_id: str
    pipeline: str
    params: dict[str, Any]
    reproduced_run_id: str
    code: dict[str, Any]
    pins: list[DataPin] = field(default_factory=list)
    checks: list[OutputCheck] = field(default_factory=list)
    causes: list[Cause] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def matches(self) -> bool:
        """True when every output matches (identical, equivalent, same data or not re-run)."""
        return all(check.matches for check in self.checks)

    @property
    def differing(self) -> list[OutputCheck]:
        """The outputs that do not match."""
        return [check for check in self.checks if not check.matches]

    def summary(self) -> str:
        """One line: all outputs match, or which differ and why."""
        compared = [c for c in self.checks if c.result != "not re-run"]
        if self.matches:
            return f"all {len(compared)} outputs re-computed match the run {self.run_id}"
        names = ", ".join(f"{c.step}.{c.output}" for c in self.differing)
        why = "; ".join(f"{c.step}: {c.detail}" for c in self.causes if c.kind != "input")
        return f"{len(self.differing)} of {len(compared)} outputs differ ({names})" + (
            f": {why}" if why else ""
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy, with ``matches`` and ``summary``."""
        return {
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "params": self.params,
            "reproduced_run_id": self.reproduced_run_id,
            "matches": self.matches,
            "summary": self.summary(),
            "code": self.code,
            "pins": [asdict(p) for p in self.pins],
            "checks": [asdict(c) | {"matches": c.matches} for c in self.checks],
            "causes": [asdict(c) for c in self.causes],
            "notes": self.notes,
        }


def reproduce_run(
    settings: Settings,
    store: MetadataStore,
    run_ref: str,
    *,
    on_event: Callable[[RunEvent], None] | None = None,
) -> Reproduction:
    """Run the recorded run ``run_ref`` (an id or a unique prefix) again and compare outputs.

    Relative paths in the recorded parameters are read from the current folder, as
    ``loopline run`` reads them from the project root. The reproduction is itself a run
    (recorded, with its own id). Raises :class:`~loopline.errors.LooplineError` when the run
    is unknown or did not complete, and what the run raises when a step fails.
    """
    from loopline.core.dag import Dag
    from loopline.core.runner import Runner
    from loopline.data.dvc import folder_versions_among
    from loopline.project import resolve_pipeline

    run = store.get_run(run_ref)
    if run["status"] != "completed":
        raise LooplineError(
            f"run {run['id']} is {run['status']}: only a completed run has every output to "
            "compare with",
            hint="pick a completed run from `loopline runs list`",
        )
    name, pipe = resolve_pipeline(settings, run["pipeline"])
    params = dict(orjson.loads(run["params"]))
    dag = pipe.build(**params)
    recorded = {s["step"]: s for s in run["steps"]}
    digests = [d for s in run["steps"] for d in s["outputs"].values()]
    folders = folder_versions_among(digests, settings, store)
    notes: list[str] = []
    pins = _pin_dvc_reads(dag, recorded, folders, notes)
    kept, skipped = _without_stateful_steps(dag)
    runner = Runner(settings, metadata=store, on_event=on_event)
    try:
        result = runner.run(Dag(dag.pipeline, dag.params, kept), use_cache=False)
    finally:
        runner.close()
    reproduced = store.get_run(result.run_id)
    again = {s["step"]: s for s in reproduced["steps"]}
    changed = [
        name
        for name, step in again.items()
        if name in recorded and recorded[name]["code_hash"] != step["code_hash"]
    ]
    code = {
        "recorded": _code_text(run),
        "current": _code_text(reproduced),
        "same": _code_text(run) == _code_text(reproduced),
        "steps_changed": changed,
    }
    if not code["same"]:
        steps = f"the code of {', '.join(changed)} changed" if changed else "no step's code did"
        notes.append(
            f"the code version differs from the run's (recorded {code['recorded']}, now "
            f"{code['current']}; the workspace's code ran, it is not checked out): {steps}"
        )
    comparer = _Comparer(settings, result.store, folders)
    checks = _compare(dag, recorded, again, skipped, comparer)
    causes = _causes(dag, recorded, again, checks, comparer)
    return Reproduction(
        run_id=run["id"],
        pipeline=name,
        params=params,
        reproduced_run_id=result.run_id,
        code=code,
        pins=pins,
        checks=checks,
        causes=causes,
        notes=notes,
    )


def _code_text(run: dict[str, Any]) -> str:
    commit = run["code_commit"]
    if commit is None:
        return "untracked"
    dirty = run["code_dirty_hash"]
    return commit[:12] + (f"+dirty.{dirty[:8]}" if dirty else "")


# -- data -----------------------------------------------------------------------------------
def _pin_dvc_reads(
    dag: Dag,
    recorded: dict[str, dict[str, Any]],
    folders: dict[str, FolderVersion],
    notes: list[str],
) -> list[DataPin]:
    """Point each step that read a DVC-tracked folder (from a committed workspace, or at a
    branch or tag) at the git commit the run recorded (its ``rev`` parameter), so DVC
    checks that data out again."""
    from loopline.data.dvc import dvc_version, is_dvc_tracked

    pins = []
    for node in dag.nodes:
        step = recorded.get(node.name)
        if step is None or "rev" not in node.params:
            continue
        for digest in step["outputs"].values():
            read = folders.get(digest)
            if read is None or read.dvc is None or node.params["rev"] == read.dvc.git_rev:
                continue  # not DVC's, or read at that very commit again
            # A workspace read, or a revision that may have moved since (a branch, a tag).
            if read.dvc.dirty or read.dvc.git_rev is None:
                notes.append(
                    f"{node.name} read {read.source} with an uncommitted {read.dvc.tracked_by} "
                    f"(DVC md5 {read.dvc.md5}): no git revision holds it, so the workspace "
                    "is read"
                )
                continue
            now = dvc_version(read.source).md5 if is_dvc_tracked(read.source) else None
            node.params["rev"] = read.dvc.git_rev
            pins.append(DataPin(node.name, read.source, read.dvc.md5, read.dvc.git_rev, now))
    return pins


def _without_stateful_steps(dag: Dag) -> tuple[list[Node], set[str]]:
    """The nodes to run again, and the names of those that act on the project's state
    (gate, register, audit) together with every node downstream of them."""
    from loopline.label.steps import audit
    from loopline.registry.steps import gate, register

    stateful = {id(s) for s in (gate, register, audit)}
    skipped: set[str] = set()
    kept = []
    for node in dag.nodes:  # in creation order: upstream nodes come first
        if id(node.step) in stateful or any(u.name in skipped for u in node.upstream):
            skipped.add(node.name)
        else:
            kept.append(node)
    return kept, skipped


# -- comparing -----------------------------------------------------------------------------
class _Comparer:
    """Compares two artifacts that have different hashes: equivalent, same data, or not."""

    def __init__(
        self, settings: Settings, artifacts: ArtifactStore, folders: dict[str, FolderVersion]
    ) -> None:
        self.settings = settings
        self.artifacts = artifacts
        self.folders = folders
        self.snapshot_changes: dict[str, str] = {}  # step -> files a snapshot shows changed

    def compare(
        self, step: str, recorded: str, reproduced: str, inputs: dict[str, str]
    ) -> tuple[Result, str]:
        """How ``reproduced`` compares with ``recorded`` (different hashes), with a note;
        ``inputs`` are the reproduced step's input artifacts."""
        from loopline.data.dvc import FolderVersion

        if not self.artifacts.exists(recorded):
            return "differs", "the recorded artifact is no longer in the store"
        if recorded in self.folders:
            again = self.artifacts.load(reproduced)
            if isinstance(again, FolderVersion):
                return self._folders(step, self.folders[recorded], again)
        stamps = self._stamps_only(recorded, reproduced)
        if stamps is not None:
            return "equivalent", f"differs only in {', '.join(stamps)}"
        try:
            same = self._same_predictions(recorded, reproduced, inputs)
        except (LooplineError, ValueError, TypeError) as exc:
            # A model that cannot predict on its own inputs here is a finding, not a crash.
            return "differs", f"could not compare predictions: {exc}"
        if same is not None:
            return "equivalent", same
        return "differs", ""

    def _same_predictions(self, a: str, b: str, inputs: dict[str, str]) -> str | None:
        """For two trained models: a note when both predict exactly the same on every table
        the step was given (its training data). A model's saved files never repeat byte for
        byte: MLflow stamps each save, and a pickle holds sets in the order of that process's
        string hashes and scikit-learn's ``id()`` of its stop words."""
        import numpy as np

        from loopline.train.model import Model

        if self.artifacts.meta(a).get("materializer") != "mlflow.model":
            return None
        before, after = self.artifacts.load(a), self.artifacts.load(b)
        if not isinstance(before, Model) or not isinstance(after, Model):
            return None
        if before.describe() != after.describe():
            return None
        tables = {
            name: self.artifacts.load(digest)
            for name, digest in sorted(inputs.items())
            if self.artifacts.meta(digest).get("materializer") == "pandas.parquet"
        }
        usable = {n: t for n, t in tables.items() if set(before.features) <= set(t.columns)}
        if not usable:
            return None
        for table in usable.values():
            if before.task == "classification":
                same = np.array_equal(before.predict_proba(table), after.predict_proba(table))
            else:
                same = list(before.predict(table)) == list(after.predict(table))
            if not same:
                return None
        rows = sum(len(t) for t in usable.values())
        names = ", ".join(usable)
        return f"the same predictions on the {rows} rows of input {names} (saved files differ)"

    def _folders(
        self, step: str, before: FolderVersion, after: FolderVersion
    ) -> tuple[Result, str]:
        from loopline.data.snapshot import diff, load_snapshot, take_snapshot

        if before.source != after.source:
            return "differs", f"read {after.source}, the run read {before.source}"
        if before.snapshot is not None:
            # A snapshot's id is the hash of its files' paths, sizes and contents: compare the
            # files read now (a DVC checkout has no snapshot yet) with the run's.
            now = take_snapshot(after.path, self.settings)
            if now.id == before.snapshot:
                return "same data", _folder_note(after, now.id)
            changes = diff(load_snapshot(before.snapshot, self.settings), now)
            self.snapshot_changes[step] = _files_text(changes)
            return "differs", self.snapshot_changes[step]
        if before.dvc is not None and after.dvc is not None and before.dvc.md5 == after.dvc.md5:
            return "same data", _folder_note(after, None)
        return "differs", "the folder's content differs from the run's"

    def _stamps_only(self, a: str, b: str) -> list[str] | None:
        """The stamp fields that alone make artifacts ``a`` and ``b`` differ; None when
        anything else differs (or when nothing does: the hashes differ for a reason)."""
        first, second = self.artifacts.local_folder(a), self.artifacts.local_folder(b)
        materializer = self.artifacts.meta(a).get("materializer", "")
        if self.artifacts.meta(b).get("materializer") != materializer:
            return None
        names = {_relative(p, first) for p in first.rglob("*") if p.is_file()}
        if names != {_relative(p, second) for p in second.rglob("*") if p.is_file()}:
            return None
        stamps: list[str] = []
        for name in sorted(names - {_META}):
            left, right = (first / name).read_bytes(), (second / name).read_bytes()
            if left == right:
                continue
            fields = _STAMPS.get((materializer, name))
            if fields is None or _without(left, fields) != _without(right, fields):
                return None
            changed = [f for f in fields if _field(left, f) != _field(right, f)]
            stamps.append(f"{name} ({', '.join(changed)})")
        return stamps or None


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _parsed(data: bytes) -> Any:
    import yaml

    return yaml.safe_load(data)  # JSON is YAML too: one parser for MLmodel and data.json


def _without(data: bytes, fields: tuple[str, ...]) -> Any:
    parsed = _parsed(data)
    if not isinstance(parsed, dict):
        return parsed
    return {k: v for k, v in parsed.items() if k not in fields}


def _field(data: bytes, name: str) -> Any:
    parsed = _parsed(data)
    return parsed.get(name) if isinstance(parsed, dict) else None


def _folder_note(folder: FolderVersion, snapshot: str | None) -> str:
    parts = []
    if folder.dvc is not None:
        where = f" at git {folder.dvc.git_rev[:12]}" if folder.dvc.git_rev else ""
        parts.append(f"DVC md5 {folder.dvc.md5}{where}")
    if snapshot is not None:
        parts.append(f"same files as the run read (snapshot {snapshot[:12]})")
    return "; ".join(parts)


def _files_text(changes: Any) -> str:
    parts = []
    for kind in ("added", "removed", "changed"):
        paths = getattr(changes, kind)
        if paths:
            shown = ", ".join(paths[:_SHOWN_FILES])
            more = f" and {len(paths) - _SHOWN_FILES} more" if len(paths) > _SHOWN_FILES else ""
            parts.append(f"{len(paths)} {kind} ({shown}{more})")
    return "files " + "; ".join(parts) if parts else "the folder's files differ"


def _compare(
    dag: Dag,
    recorded: dict[str, dict[str, Any]],
    again: dict[str, dict[str, Any]],
    skipped: set[str],
    comparer: _Comparer,
) -> list[OutputCheck]:
    checks = []
    names = [n.name for n in dag.nodes]
    order = names + [s for s in recorded if s not in names]
    for name in order:
        before = recorded.get(name, {}).get("outputs", {})
        if name in skipped:
            reason = "acts on the registry or the review queue"
            checks += [
                OutputCheck(name, out, d, None, "not re-run", reason) for out, d in before.items()
            ]
            continue
        if name not in again:
            checks += [
                OutputCheck(name, out, d, None, "missing", "the pipeline has no such step now")
                for out, d in before.items()
            ]
            continue
        after = again[name]["outputs"]
        if name not in recorded:
            checks += [
                OutputCheck(name, out, None, d, "new", "the recorded run had no such step")
                for out, d in after.items()
            ]
            continue
        for out in [*before, *(o for o in after if o not in before)]:
            digest, got = before.get(out), after.get(out)
            if digest is None or got is None:
                result: Result = "missing" if got is None else "new"
                checks.append(OutputCheck(name, out, digest, got, result, "output names differ"))
            elif digest == got:
                checks.append(OutputCheck(name, out, digest, got, "identical"))
            else:
                outcome, note = comparer.compare(name, digest, got, again[name]["inputs"])
                checks.append(OutputCheck(name, out, digest, got, outcome, note))
    return checks


def _causes(
    dag: Dag,
    recorded: dict[str, dict[str, Any]],
    again: dict[str, dict[str, Any]],
    checks: list[OutputCheck],
    comparer: _Comparer,
) -> list[Cause]:
    """Why each step with a differing output differs, upstream causes first."""
    produced_by: dict[str, tuple[str, OutputCheck]] = {}
    for check in checks:
        if check.reproduced is not None:
            produced_by[check.reproduced] = (check.step, check)
    failing = {c.step for c in checks if not c.matches}
    causes: list[Cause] = []
    for node in dag.nodes:
        if node.name not in failing or node.name not in recorded or node.name not in again:
            continue
        before, after = recorded[node.name], again[node.name]
        found = _input_causes(node.name, before, after, produced_by)
        if not found and before["code_hash"] != after["code_hash"]:
            found.append(Cause(node.name, "code", node.name, "the step's code changed"))
        if not found and before["params"] != after["params"]:
            changed = _changed_keys(before["params"], after["params"])
            found.append(Cause(node.name, "params", changed, f"parameters {changed} differ"))
        if not found and before["cache_key"] != after["cache_key"]:
            found.append(_outside_cause(node, comparer))
        if not found:
            found.append(
                Cause(
                    node.name,
                    "nondeterministic",
                    node.name,
                    "same code, parameters and inputs gave another output: the step is not "
                    "deterministic",
                )
            )
        causes.extend(found)
    return causes


def _input_causes(
    step: str,
    before: dict[str, Any],
    after: dict[str, Any],
    produced_by: dict[str, tuple[str, OutputCheck]],
) -> list[Cause]:
    found = []
    for name, digest in after["inputs"].items():
        if before["inputs"].get(name) == digest:
            continue
        upstream, check = produced_by.get(digest, ("?", None))
        if check is not None and check.matches:
            continue  # an equivalent input (a creation stamp apart): not the cause
        source = f"{upstream}.{check.output}" if check is not None else "an unrecorded step"
        found.append(Cause(step, "input", name, f"input {name} differs (from {source})"))
    return found


def _outside_cause(node: Node, comparer: _Comparer) -> Cause:
    """Same code, parameters and inputs, another cache key: what the step reads changed."""
    files = comparer.snapshot_changes.get(node.name)
    paths = {
        name: str(node.params[name])
        for name in sorted(node.step.path_params())
        if isinstance(node.params.get(name), str | Path) and "://" not in str(node.params[name])
    }
    if "path" in node.params and files is not None:
        paths.setdefault("path", str(node.params["path"]))
    if paths:
        what = ", ".join(f"{k}={v}" for k, v in paths.items())
        detail = f"the input {what} changed since the run"
        return Cause(node.name, "file", what, detail + (f": {files}" if files else ""))
    return Cause(
        node.name,
        "state",
        node.name,
        "the outside state the step reads (its cache_extra) changed since the run",
    )


def _changed_keys(before: str, after: str) -> str:
    old, new = orjson.loads(before), orjson.loads(after)
    return ", ".join(sorted(k for k in {*old, *new} if old.get(k) != new.get(k)))
