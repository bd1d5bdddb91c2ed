"""The ``loopline`` command. Thin: each command calls the public Python API.

User errors (:class:`loopline.errors.LooplineError`) print one line with a hint and exit 2;
``--debug`` shows the traceback. Commands a script would call take ``--json``.

The command modules do not use ``from __future__ import annotations``: typer reads every
command's parameters on each invocation, and string annotations made it compile and eval
each one (about 40 ms of CPU on every command; annotations naming types imported only for
type checking are quoted instead).
"""

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from loopline.cli.data import check_detection_command, diff_command, snapshot_command
from loopline.cli.export import export_app
from loopline.cli.label import label_app
from loopline.cli.monitor import monitor_app
from loopline.cli.pii import pii_app
from loopline.cli.predict import predict_command
from loopline.cli.serve import serve_command
from loopline.cli.stream import stream_app
from loopline.cli.support import (
    JsonOpt,
    LooplineGroup,
    check_project_folder,
    lazy_console,
    load_project_settings,
    print_json,
)
from loopline.cli.ui import ui_command
from loopline.errors import LooplineError, StepFailed

if TYPE_CHECKING:
    from loopline.config import ExecutorName, Settings
    from loopline.core.lineage import ModelVersion
    from loopline.core.metadata import MetadataStore
    from loopline.core.runner import RunResult
    from loopline.registry.models import ModelRegistry

app = typer.Typer(
    name="loopline",
    help="Loopline: collect, validate, label, train, evaluate, register, serve, monitor, retrain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=LooplineGroup,  # readable --help for every command: see loopline.cli.support
)
runs_app = typer.Typer(help="Show pipeline runs: history, per-step status, cache hits, timings.")
models_app = typer.Typer(
    help="Registered models: list versions, promote, roll back, alias history."
)
data_app = typer.Typer(help="Check data files before they reach a pipeline.")
app.add_typer(runs_app, name="runs")
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(label_app, name="label")
app.add_typer(monitor_app, name="monitor")
app.add_typer(pii_app, name="pii")
app.add_typer(stream_app, name="stream")
app.add_typer(export_app, name="export")

# rich (console ~18 ms, table ~4 ms to import) loads when a command first prints: `--json`
# commands and those that print nothing never pay for it (see support.lazy_console).
out = lazy_console(highlight=False)
err = lazy_console(stderr=True, highlight=False, soft_wrap=True)  # errors stay one line
_state: dict[str, Any] = {"debug": False, "project": None}


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    project: Annotated[
        Path | None,
        typer.Option(
            "--project", "-C", metavar="DIR", help="Project folder (default: the current one)."
        ),
    ] = None,
) -> None:
    _state["debug"] = debug
    _state["project"] = project
    check_project_folder(project)  # every command: a missing folder is never created


def _settings() -> "Settings":
    """The settings of the project (commands that may create its state)."""
    return load_project_settings(_state["project"])


# -- init ----------------------------------------------------------------------------
@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")] = Path(),
    template: Annotated[
        str,
        typer.Option(
            "--template",
            "-t",
            metavar="sentiment|spam|tabular|vision",
            help="Starter pipeline: sentiment, spam, tabular or vision (digit detection).",
        ),
    ] = "sentiment",
    data: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH", help="Real data (file or folder) to use instead of generated data."
        ),
    ] = None,
) -> None:
    """Write a starter project: loopline.yaml, a short pipeline file and (generated) data."""
    from loopline.templates import write_template

    written = write_template(directory, template, data)
    for path in written:
        out().print(f"[green]created[/] {path}")
    out().print(f"next: cd {directory} && loopline run {template}")


# -- run -----------------------------------------------------------------------------
def _parse_params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise LooplineError(
                f"--param expects KEY=VALUE, found {pair!r}", hint="e.g. --param test_size=0.3"
            )
        params[key.strip()] = value
    return params


@app.command()
def run(
    pipeline_name: Annotated[
        str | None, typer.Argument(metavar="PIPELINE", help="Pipeline name from loopline.yaml.")
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", metavar="KEY=VALUE", help="A pipeline parameter, repeatable."
        ),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Run every step again.")] = False,
    executor: Annotated[
        str | None,
        typer.Option(
            metavar="threads|processes|ray",
            help="How steps run (default: the executor setting, else threads); ray runs each "
            "step as a Ray task, on the cluster at the ray_address setting if one is set.",
        ),
    ] = None,
    step_name: Annotated[
        str | None,
        typer.Option(
            "--step",
            metavar="NAME",
            help="Run only this step, reading its inputs from what its upstream steps "
            "recorded in the run given by --run-id (how orchestrator tasks run a pipeline).",
        ),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option(
            metavar="ID",
            help="With --step: the run the step belongs to; any string, e.g. the "
            "orchestrator's run id (default: a new run).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a pipeline: unchanged steps are skipped and their outputs reused.

    After the steps, one line per registered model version says whether the gate passed
    and which version is champion. With --step, one step runs as part of a run that
    may span several processes: the first step creates it, the last one closes it.
    """
    from loopline.project import resolve_pipeline

    settings = _settings()
    name, pipe = resolve_pipeline(settings, pipeline_name)
    os.chdir(settings.project_root)  # relative data paths in params mean the project's
    params = {**settings.params.get(name, {}), **_parse_params(param or [])}
    if executor not in (None, "threads", "processes", "ray"):
        raise LooplineError(f"unknown executor {executor!r}", hint="use threads, processes or ray")
    chosen = cast("ExecutorName | None", executor)
    if run_id is not None and step_name is None:
        raise LooplineError("--run-id needs --step", hint="e.g. --step train --run-id ID")
    if step_name is not None and executor is not None:
        raise LooplineError(
            "--executor does not apply to --step: the one step runs in this process",
            hint="drop --executor",
        )
    # With --json, stdout carries the summary alone: what steps print, and the lines Ray's
    # driver prints for its workers and scheduler, go to stderr.
    real_stdout = sys.stdout
    with (
        contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext(),
        _StepProgress(enabled=not as_json) as on_event,
    ):
        if step_name is not None:
            result = pipe.run_step(
                step_name,
                run_id=run_id,
                settings=settings,
                cache=not no_cache,
                on_event=on_event,
                **params,
            )
        else:
            result = pipe.run(
                settings,
                cache=not no_cache,
                executor=chosen,
                on_event=on_event,
                **params,
            )
        if as_json:
            with contextlib.redirect_stdout(real_stdout):
                print_json(_run_summary(result))
            return
    _print_steps(result)
    for outcome in _model_outcomes(result):
        out().print(outcome["summary"], markup=False, soft_wrap=True)


def _run_summary(result: "RunResult") -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "pipeline": result.pipeline,
        "status": result.status,
        "duration_s": round(result.duration_s, 3),
        "cache_hits": result.cache_hits,
        "steps": {
            name: {
                "status": s.status,
                "duration_s": round(s.duration_s, 3),
                "outputs": s.outputs,
                "dataset_version": s.dataset_version,
            }
            for name, s in result.steps.items()
        },
        "models": _model_outcomes(result),
    }


def _model_outcomes(result: "RunResult") -> list[dict[str, Any]]:
    """What became of each model version the run registered: gate, champion, one line."""
    decisions = _gate_decisions(result)
    outcomes = []
    for step_name, mv in result.model_versions():
        decision = decisions.get(mv.name)
        if decision is not None:
            passed: bool | None = bool(decision.get("passed"))
            reasons = [str(r) for r in decision.get("reasons") or []]
            # register's own word when another promotion came between the gate and it
            reasons += [r for r in mv.reasons if r.startswith("not promoted")]
        else:  # a register step without a gate step in the run (or one named otherwise)
            passed = True if mv.promoted else (None if not mv.reasons else False)
            reasons = list(mv.reasons)
        cached = result.steps[step_name].status == "cached"
        outcomes.append(
            {
                "model": mv.name,
                "version": mv.version,
                "new": mv.new,
                "gate_passed": passed,
                "reasons": reasons,
                "promoted": mv.promoted,
                "champion": mv.champion,
                "mlflow_run_id": mv.mlflow_run_id,
                "dataset_version": mv.dataset_version,
                "step": step_name,
                "cached": cached,
                "summary": _model_outcome_line(mv, passed, reasons, cached),
            }
        )
    return outcomes


def _gate_decisions(result: "RunResult") -> dict[str, dict[str, Any]]:
    """The decisions of the run's gate steps (steps named gate...), by model name."""
    decisions: dict[str, dict[str, Any]] = {}
    for name, step in result.steps.items():
        if not name.startswith("gate") or step.status not in ("completed", "cached"):
            continue
        for output, digest in step.outputs.items():
            in_memory = digest in result.objects
            if not in_memory and result.store.meta(digest).get("materializer") != "json":
                continue  # a decision is stored as JSON: load nothing bigger
            decision = result.load(name, output)
            if isinstance(decision, dict) and "passed" in decision:
                decisions[str(decision.get("model_name"))] = decision
    return decisions


_PASSING = (">= floor", "<= ceiling", " meets ", "(no floor set)", "no champion yet")


def _model_outcome_line(
    mv: "ModelVersion", passed: bool | None, reasons: list[str], cached: bool
) -> str:
    """``model sentiment version 3 registered · gate passed · now champion``."""
    registered = "registered" if mv.new else "already registered (same model)"
    parts = [f"model {mv.name} version {mv.version} {registered}"]
    if passed is None:
        parts.append("no gate")
    elif passed:
        moved = [r for r in reasons if r.startswith("not promoted")]
        parts.append("gate passed" + (f" ({moved[0]})" if moved else ""))
    else:
        # The reasons of the checks that failed (all of them if none reads as a pass).
        failed = [r for r in reasons if not any(p in r for p in _PASSING)] or reasons
        parts.append("gate failed" + (f" ({'; '.join(failed)})" if failed else ""))
    if mv.promoted:
        parts.append("now champion" if not cached else "champion")
    elif mv.champion == mv.version:
        parts.append("stays champion")
    elif mv.champion is not None:
        parts.append(f"champion stays version {mv.champion}")
    else:
        parts.append("no champion")
    if cached:
        parts.append("from cache")
    return " · ".join(parts)


def _print_steps(result: "RunResult") -> None:
    from rich.table import Table

    table = Table(title=f"run {result.run_id} · {result.pipeline} · {result.status}")
    table.add_column("step")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("outputs")
    colours = {"completed": "green", "cached": "cyan", "failed": "red", "skipped": "dim"}
    for name, s in result.steps.items():
        outputs = ", ".join(f"{k}={v[:10]}" for k, v in s.outputs.items())
        status = f"[{colours.get(s.status, 'white')}]{s.status}[/]"
        table.add_row(name, status, f"{s.duration_s:.2f}s", outputs)
    out().print(table)
    out().print(
        f"{result.cache_hits}/{len(result.steps)} steps from cache · {result.duration_s:.2f}s"
    )


class _StepProgress:
    """A live spinner per running step on stderr (no-op with --json)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err(),
            transient=True,
        )
        self._progress.start()
        return self._on_event

    def _on_event(self, event: Any) -> None:
        if event.status == "running":
            self._tasks[event.step] = self._progress.add_task(event.step, total=1)
        elif event.step in self._tasks:
            self._progress.update(
                self._tasks[event.step], completed=1, description=f"{event.step} ({event.status})"
            )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


# -- runs ----------------------------------------------------------------------------
def _read_state() -> "tuple[Settings, MetadataStore | None]":
    """The project's settings and its metadata store opened for reading (None: nothing
    recorded yet). Outside a project this stops with "no Loopline project in DIR".

    For the commands that only read (or move an alias of an existing version): they
    never create ``.loopline/``, the metadata database or the MLflow store.
    """
    from loopline.core.metadata import MetadataStore, StoreMissing

    settings = load_project_settings(_state["project"], existing=True)
    assert settings.metadata_url
    try:
        return settings, MetadataStore(settings.metadata_url, create=False)
    except StoreMissing:
        return settings, None


@runs_app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option(metavar="N", help="How many runs to show.")] = 20,
    pipeline_name: Annotated[
        str | None, typer.Option("--pipeline", metavar="NAME", help="Only this pipeline's runs.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recent runs, newest first."""
    _, store = _read_state()
    rows = store.list_runs(limit, pipeline_name) if store is not None else []
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title="runs")
    for col in ("run", "pipeline", "status", "started", "time", "steps", "code"):
        table.add_column(col)
    for r in rows:
        steps = " ".join(f"{k}:{v}" for k, v in sorted(r["steps"].items()))
        code = (r["code_commit"] or "untracked")[:10] + ("+dirty" if r["code_dirty_hash"] else "")
        duration = f"{r['duration_s']:.2f}s" if r["duration_s"] is not None else "-"
        started = str(r["started_at"])[:19]
        table.add_row(r["id"], r["pipeline"], r["status"], started, duration, steps, code)
    out().print(table)
    if not rows:
        out().print("no runs yet: `loopline run` runs a pipeline")


RunArg = Annotated[
    str,
    typer.Argument(
        metavar="RUN",
        help="Run id (a prefix is enough), or the MLflow run id of a registered version.",
    ),
]


def _recorded_run(run_id: str) -> "tuple[Settings, MetadataStore, dict[str, Any]]":
    """The project's settings, its metadata store and the run ``run_id`` names in it."""
    settings, store = _read_state()
    if store is None:
        raise LooplineError(
            f"no run with id {run_id!r}: nothing has run in this project yet",
            hint="run a pipeline with `loopline run`",
        )
    return settings, store, _get_run(store, run_id)


@runs_app.command("show")
def runs_show(
    run_id: RunArg,
    as_json: JsonOpt = False,
) -> None:
    """One run: per-step status, cache hits, timings, inputs and outputs."""
    _, _, run_row = _recorded_run(run_id)
    if as_json:
        print_json(run_row)
        return
    out().print(
        f"[bold]run {run_row['id']}[/] · {run_row['pipeline']} · {run_row['status']} · "
        f"code {run_row['code_commit'] or 'untracked'}"
        + (f" (dirty {run_row['code_dirty_hash'][:8]})" if run_row["code_dirty_hash"] else "")
    )
    out().print(f"params: {run_row['params']}")
    from rich.table import Table

    table = Table()
    # Steps that ran outside the run's process (the Ray executor) say where, and in how
    # many attempts.
    placed = any(s.get("worker") for s in run_row["steps"])
    columns = ("step", "status", "time", "cached from", "inputs", "outputs")
    for col in columns + (("ran on", "attempts") if placed else ()):
        table.add_column(col)
    for s in run_row["steps"]:
        cells = [
            s["step"],
            s["status"],
            f"{(s['duration_s'] or 0):.2f}s",
            s["cached_from"] or "",
            ", ".join(f"{k}={v[:10]}" for k, v in s["inputs"].items()),
            ", ".join(f"{k}={v[:10]}" for k, v in s["outputs"].items()),
        ]
        if placed:
            node = f" · node {s['node_id'][:8]}" if s.get("node_id") else ""
            cells += [f"{s['worker'] or ''}{node}", str(s.get("attempts") or "")]
        table.add_row(*cells)
    out().print(table)
    for s in run_row["steps"]:
        for why in s.get("retries") or []:
            out().print(f"retried {s['step']}: {why}", markup=False, highlight=False)
    if run_row["error"]:
        out().print(f"[red]error:[/] {run_row['error']}")


def _get_run(store: "MetadataStore", ref: str) -> dict[str, Any]:
    """A run by its Loopline id (or a prefix), or by the MLflow run id of a version it
    registered (``model_versions.mlflow_run_id``, as `models list --json` shows it)."""
    import sqlalchemy as sa

    from loopline.core import schema

    if not ref.strip():
        return store.get_run(ref)  # "no run id given"
    try:
        return store.get_run(ref)
    except LooplineError as not_ours:
        mv = schema.model_versions
        with store.engine.connect() as conn:
            runs = conn.execute(
                sa.select(mv.c.run_id)
                .where(
                    mv.c.mlflow_run_id.startswith(ref, autoescape=True),
                    mv.c.run_id.is_not(None),
                )
                .distinct()
                .limit(2)
            ).scalars()
            found = [str(r) for r in runs]
        if len(found) != 1:
            raise not_ours
        return store.get_run(found[0])


@runs_app.command("reproduce")
def runs_reproduce(
    run_id: RunArg,
    as_json: JsonOpt = False,
) -> None:
    """Run a recorded run again (no cache) and check that every output hash matches.

    The recorded parameters are used; DVC-tracked folders are checked out through DVC at
    the git revision the run recorded; other files are read where they are. gate, register
    and audit are not run again (they act on the champion and the review queue). Exits 1
    when an output differs, naming the changed input, code or parameter.
    """
    from loopline.orchestrate.reproduce import reproduce_run

    settings, store, recorded = _recorded_run(run_id)
    os.chdir(settings.project_root)  # relative data paths in params mean the project's
    with _StepProgress(enabled=not as_json) as on_event:
        found = reproduce_run(settings, store, recorded["id"], on_event=on_event)
    if as_json:
        print_json(found.to_dict())
    else:
        _print_reproduction(found)
    if not found.matches:
        raise typer.Exit(1)


def _print_reproduction(found: Any) -> None:
    from rich.table import Table

    out().print(
        f"[bold]run {found.run_id}[/] · {found.pipeline} · reproduced as run "
        f"{found.reproduced_run_id}",
        soft_wrap=True,
    )
    for pin in found.pins:
        out().print(
            f"data: {pin.step} read {pin.source} checked out by DVC at git {pin.git_rev[:12]} "
            f"(md5 {pin.md5}; the workspace's is {pin.workspace_md5 or 'untracked'})",
            markup=False,
            soft_wrap=True,
        )
    for note in found.notes:
        out().print(f"note: {note}", markup=False, soft_wrap=True)
    table = Table()
    for col in ("step", "output", "recorded", "reproduced", "result", "note"):
        table.add_column(col)
    colours = {"identical": "green", "equivalent": "green", "same data": "green"}
    for c in found.checks:
        colour = colours.get(c.result, "dim" if c.result == "not re-run" else "red")
        table.add_row(
            c.step,
            c.output,
            (c.recorded or "-")[:12],
            (c.reproduced or "-")[:12],
            f"[{colour}]{c.result}[/]",
            c.note,
        )
    out().print(table)
    for cause in found.causes:
        out().print(f"cause: {cause.step}: {cause.detail}", markup=False, soft_wrap=True)
    colour = "green" if found.matches else "red"
    out().print(f"[{colour}]{found.summary()}[/]", soft_wrap=True)


# -- models --------------------------------------------------------------------------
def _registry() -> "tuple[ModelRegistry, MetadataStore | None]":
    """The project's registry for reading and alias moves (never creates a store), and
    its metadata store (None: nothing recorded yet)."""
    from loopline.registry.project import open_registry

    settings, store = _read_state()
    return open_registry(settings, store, create=False), store


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """Every registered model version with its aliases, data version and run.

    ``run`` is Loopline's run id (what `loopline runs show` takes); the JSON also has
    MLflow's as ``mlflow_run_id``.
    """
    registry, store = _registry()
    rows = []
    for v in registry.list_models():
        lineage = store.model_version(v.name, v.version) if store is not None else None
        rows.append(
            {
                **v.to_dict(),
                "run_id": lineage["run_id"] if lineage else None,
                "mlflow_run_id": v.run_id,
            }
        )
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title="models")
    for col in ("model", "version", "aliases", "data", "run", "created"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["name"],
            row["version"],
            ", ".join(row["aliases"]),
            row["dataset_version"] or "-",
            row["run_id"] or "-",
            str(row["created_at"] or "-")[:19].replace("T", " "),
        )
    out().print(table)
    if not rows:
        out().print("no model is registered yet: `loopline run` trains and registers one")


@models_app.command("promote")
def models_promote(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")],
    version: Annotated[str, typer.Argument(metavar="VERSION", help="Version to promote.")],
    alias: Annotated[str, typer.Option(metavar="ALIAS", help="Alias to move.")] = "champion",
    reason: Annotated[
        str, typer.Option(metavar="TEXT", help="Recorded in the alias history.")
    ] = "manual",
) -> None:
    """Point an alias (default champion) at a version; the old champion becomes previous."""
    registry, _ = _registry()
    if alias == "champion":
        registry.promote(name, version, reason=reason, actor="cli")
    else:
        registry.set_alias(name, alias, version, reason=reason, actor="cli")
    out().print(f"{name}@{alias} -> version {version}")


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")],
    reason: Annotated[
        str, typer.Option(metavar="TEXT", help="Recorded in the alias history.")
    ] = "manual rollback",
) -> None:
    """Move champion back to the previous version."""
    info = _registry()[0].rollback(name, reason=reason, actor="cli")
    out().print(f"{name}@champion -> version {info.version}")


@models_app.command("history")
def models_history(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")],
    as_json: JsonOpt = False,
) -> None:
    """Every alias move of a model: when, which version, why, by whom."""
    registry, _ = _registry()
    events = registry.alias_history(name)
    if not events:
        registry.aliases(name)  # an unknown name: ModelNotFound naming the registered ones
    if as_json:
        print_json(events)
        return
    from rich.table import Table

    table = Table(title=f"alias history of {name}")
    for col in ("time", "alias", "version", "was", "actor", "reason"):
        table.add_column(col)
    for e in events:
        table.add_row(
            str(e["created_at"])[:19],
            e["alias"],
            str(e["version"]),
            str(e["previous_version"] or "-"),
            e["actor"],
            e["reason"],
        )
    out().print(table)


@app.command()
def lineage(
    model: Annotated[
        str | None,
        typer.Argument(
            metavar="MODEL[@ALIAS|/VERSION]", help="e.g. sentiment, sentiment@previous, sentiment/3"
        ),
    ] = None,
    request_id: Annotated[
        str | None,
        typer.Option(
            "--request-id",
            metavar="ID",
            help="A decision's transaction id (or a prediction's request id): its features, "
            "model versions, their training data and code versions.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Where a model version, or one decision or prediction, came from: run, code version,
    steps, parameters and data."""
    from rich.text import Text
    from rich.tree import Tree

    from loopline.data.dvc import folder_versions_among
    from loopline.orchestrate.watch import trigger_of

    if (model is None) == (request_id is None):
        raise LooplineError(
            "give a MODEL or --request-id ID (one of the two)",
            hint="e.g. `loopline lineage fraud-fast@champion` or "
            "`loopline lineage --request-id 1234567`",
        )
    if request_id is not None:
        _lineage_of_request(request_id, as_json)
        return
    assert model is not None
    registry, store = _registry()
    ref = model if ("@" in model or "/" in model) else f"{model}@champion"
    info = registry.resolve(ref)
    if store is None:  # registered in MLflow, but nothing recorded by Loopline
        raise LooplineError(
            f"no lineage for {info.name} version {info.version}: it was not registered by a "
            "Loopline run",
            hint="see `loopline models list`",
        )
    found = store.lineage(info.name, info.version)
    # Folder inputs versioned by DVC or a snapshot: their hash and git revision.
    settings = load_project_settings(_state["project"], existing=True)
    folders = folder_versions_among([s["output"] for s in found["steps"]], settings, store)
    for step in found["steps"]:
        folder = folders.get(step["output"])
        step["data_version"] = folder.to_dict() if folder is not None else None
    run = found["run"] or {}
    # Why the run started, when `loopline watch` started it (new data, a DVC file, a schedule).
    found["trigger"] = trigger_of(store, info.name, run["id"]) if run else None
    if as_json:
        print_json(found)
        return
    code = run.get("code_commit") or "untracked"
    tree = Tree(
        f"[bold]{info.name} version {info.version}[/] · data {found['model']['dataset_version']}"
        f" · run {run.get('id', '-')} · code {code[:12]}"
        + (" (dirty)" if run.get("code_dirty_hash") else "")
    )
    if found["trigger"] is not None:
        tree.add(Text(f"started by loopline watch: {found['trigger']['message']}"))
    for step in found["steps"]:
        branch = tree.add(f"{step['step']} → {step['output'][:12]}")
        for name, digest in step["inputs"].items():
            dataset = step["datasets"].get(name)
            branch.add(f"{name}: {digest[:12]}" + (f" ({dataset})" if dataset else ""))
        if step["params"]:
            branch.add(f"params: {step['params']}")
        if step["output"] in folders:
            branch.add(f"data: {folders[step['output']].describe()}")
    out().print(tree)


def _lineage_of_request(request_id: str, as_json: bool) -> None:
    """``lineage --request-id``: a decision (or prediction) and its models' lineage."""
    from loopline.stream.audit import trace_request

    settings, store = _read_state()
    if store is None:
        raise LooplineError(
            f"no decision or prediction {request_id!r}: nothing is recorded in this project yet",
            hint="decide transactions first (`loopline stream consume`)",
        )
    found = trace_request(settings, store, request_id)
    if as_json:
        print_json(found)
        return
    lines: list[str] = []
    if found["kind"] == "decision":
        when = f"decided {found['decided_at']}"
        if found.get("tx_time"):
            when += f" (transaction time {found['tx_time']})"
        lines.append(f"decision {found['request_id']}: {found['action']} · {when}")
        lines.append(f"reason: {found['reason'] or '-'}")
        lines.append(f"fallback: {', '.join(found['fallback']) or 'none'}")
        thresholds = found["thresholds"] or {}
        lines.append("thresholds: " + ", ".join(f"{k} {v}" for k, v in thresholds.items()))
        scores = [("score", found["score"]), ("fast", found["fast_score"])]
        scores += [("heavy", found["heavy_score"]), ("heavy re-score", found["batch_score"])]
        lines.append("scores: " + ", ".join(f"{k} {_fmt(v)}" for k, v in scores))
    else:
        lines.append(
            f"prediction {found['request_id']}: {found['prediction']} · {found['ts']} · "
            f"route {found['route']}"
        )
        probs = found["probabilities"]
        lines.append("probabilities: " + ", ".join(f"{k} {_fmt(v)}" for k, v in probs.items()))
    features = found["features"] or {}
    lines.append(
        "features (masked): " + (", ".join(f"{k}={_fmt(v)}" for k, v in features.items()) or "-")
    )
    lines.append("models:")
    for m in found["models"]:
        head = f"  {m.get('role', 'model')}: {m['name']} version {m.get('version') or '-'}"
        if m.get("error"):
            lines.append(f"{head}: {m['error']}")
        elif "run_id" not in m:
            lines.append(head)
        else:
            data = ", ".join(m["datasets"]) or m.get("dataset_version") or "-"
            lines.append(
                f"{head}: run {m['run_id'] or '-'} (pipeline {m['pipeline'] or '-'}, "
                f"{m['trained_at'] or '-'}), code {m['code_version']}, data {data}"
            )
    if found.get("service_code_version"):
        lines.append(f"decision service code: {found['service_code_version']}")
    for line in lines:
        out().print(line, markup=False, soft_wrap=True)  # one line each, even when long


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# -- serve / predict ------------------------------------------------------------------
app.command("serve")(serve_command)
app.command("ui")(ui_command)
app.command("predict")(predict_command)


@app.command("predict-remote")
def predict_remote_cmd(
    url: Annotated[str, typer.Argument(help="Server base URL, e.g. http://127.0.0.1:8000")],
    texts: Annotated[list[str], typer.Argument(metavar="TEXT...", help="Texts to classify.")],
    as_json: JsonOpt = False,
) -> None:
    """Send texts to a running server, one request each, and print the answers.

    Each answer's request id is what `POST /feedback` takes to record the true label.
    """
    from loopline.serve.client import predict_remote

    answers = predict_remote(url, texts)
    if as_json:
        print_json(answers)
        return
    _print_predictions(answers)


def _print_predictions(answers: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="predictions")
    for col in ("text", "label", "p", "version", "request", "latency"):
        table.add_column(col)
    table.columns[4].overflow = "fold"  # a request id is what POST /feedback takes: never cut
    for answer in answers:
        table.add_row(
            answer["text"][:60],
            answer["label"],
            f"{max(answer['probabilities'].values()):.2f}",
            str(answer["model_version"]),
            str(answer.get("request_id") or "-"),
            f"{answer['latency_ms']:.1f} ms",
        )
    out().print(table)


# -- data ----------------------------------------------------------------------------
data_app.command("snapshot")(snapshot_command)
data_app.command("diff")(diff_command)
data_app.command("check-detection")(check_detection_command)


@data_app.command("validate")
def data_validate(
    source: Annotated[str, typer.Argument(help="File, folder or URL of tweets.")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="auto (detect), sentiment140, lines, vader, table or text_folder.",
        ),
    ] = "auto",
    encoding: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Text encoding of the file, e.g. latin-1."),
    ] = None,
    text_column: Annotated[
        str,
        typer.Option("--text-column", metavar="COLUMN", help="The text column of a table."),
    ] = "text",
    label_column: Annotated[
        str,
        typer.Option(
            "--label-column",
            metavar="COLUMN",
            help="The label column of a table (none: unlabelled data).",
        ),
    ] = "label",
    labels: Annotated[
        str | None,
        typer.Option(
            metavar="A,B,...",
            help="The allowed labels, comma-separated (default: negative,positive).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Read a data file and run the schema and quality checks (exit 2 on violations)."""
    from loopline.data.ingest import load_source
    from loopline.data.validate import format_report, validate_text_dataset
    from loopline.errors import ValidationFailed

    allowed = _split_labels(labels)
    label_col = None if label_column.strip().lower() in ("", "none") else label_column
    frame = load_source(
        source,
        format=fmt,  # type: ignore[arg-type]
        encoding=encoding,
        text_column=text_column,
        label_column=label_col,
    )
    try:
        if allowed is None:
            _, report = validate_text_dataset(frame)
        else:
            _, report = validate_text_dataset(frame, labels=allowed)
    except ValidationFailed as exc:
        if as_json:
            print_json(exc.report)
        raise
    if as_json:
        print_json(report)
    else:
        out().print(format_report(report))


def _split_labels(raw: str | None) -> list[str] | None:
    """``--labels a,b`` -> ``["a", "b"]`` (None when the flag is not given)."""
    if raw is None:
        return None
    found = [part.strip() for part in raw.split(",") if part.strip()]
    if not found:
        raise LooplineError(
            f"--labels expects comma-separated labels, found {raw!r}",
            hint="e.g. --labels negative,positive",
        )
    return found


# -- watch ---------------------------------------------------------------------------
@app.command()
def watch(
    on_new_data: Annotated[
        Path | None,
        typer.Option(
            help="Retrain when files under this path change. A DVC-tracked folder (or its "
            ".dvc file) retrains when DVC records a new version (`dvc add`, a pulled .dvc "
            "file with its data).",
        ),
    ] = None,
    settle: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            min=0.0,
            help="Wait until no file under --on-new-data has changed for this long (a copy "
            "in progress triggers once, when it is done).",
        ),
    ] = 10.0,
    on_drift: Annotated[
        bool, typer.Option("--on-drift", help="Check the monitoring rules and auto-rollback.")
    ] = False,
    schedule: Annotated[
        str | None, typer.Option(metavar="CRON", help='Cron ("0 3 * * *") or "@every 6h".')
    ] = None,
    interval: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS", help="Seconds between checks (default: monitoring config)."
        ),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Check once and exit.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Watch for new data, alerts and schedules; retrain (the gate decides promotion)."""
    import logging
    import signal
    import threading

    from loopline.core.metadata import MetadataStore
    from loopline.orchestrate.rules import load_monitoring
    from loopline.orchestrate.watch import Schedule, Watcher

    settings = _settings()
    config = load_monitoring(settings)
    if not (on_new_data or on_drift or schedule):
        raise LooplineError(
            "nothing to watch", hint="pass --on-new-data PATH, --on-drift or --schedule CRON"
        )
    if config.retrain is None and (on_new_data or schedule):
        raise LooplineError(
            "no pipeline to run: monitoring.retrain is not configured",
            hint="add `monitoring: {retrain: {pipeline: NAME, params: {...}}}` to loopline.yaml",
        )
    assert settings.metadata_url
    os.chdir(settings.project_root)
    watcher = Watcher(
        settings,
        MetadataStore(settings.metadata_url),
        on_new_data=on_new_data,
        on_drift=on_drift,
        schedule=Schedule(schedule) if schedule else None,
        state_path=settings.home_dir / "watch-state.json",
        settle_s=settle,
    )
    if once:
        events = watcher.run_once()
        print_json(events) if as_json else out().print(events)
        return
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    err().print(f"watching (every {interval or config.poll_interval_s:g} s); Ctrl-C stops")
    watcher.run_forever(interval or config.poll_interval_s, stop)
    err().print("stopped")


# -- demo ----------------------------------------------------------------------------
@app.command()
def demo(
    system: Annotated[
        str, typer.Argument(help="Which reference system: sentiment, fraud or vision.")
    ] = "sentiment",
    data: Annotated[
        Path | None,
        typer.Option(
            help="sentiment: real data (file or folder) instead of generated tweets. fraud: "
            "the folder of the Fraud Detection Handbook's transactions_2018-0{4,5,6}.csv.gz "
            "(default: ../shared/data/fraud/fraud_handbook_simulated beside the checkout). "
            "vision: the folder of MNIST's t10k-*-ubyte.gz files (default: "
            "../shared/data/images/mnist beside the checkout)."
        ),
    ] = None,
    gold: Annotated[Path | None, typer.Option(help="sentiment: a human-labelled gold set.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a whole reference system offline. sentiment: data to a served model and test
    predictions. fraud: both fraud models trained on April-May, June streamed through the
    decision service with an analyst and delayed labels, a retrain, a rollback, the
    monitoring report (about a minute). vision: the project becomes a git + DVC repository
    of MNIST digit canvases; a detector is trained, evaluated (mAP), registered and served;
    500 new canvases arrive and the watcher trains and promotes the next version (a few
    minutes; needs the vision extra and git)."""
    if system in ("fraud", "vision"):
        import importlib

        module = importlib.import_module(f"loopline.examples.{system}.demo")
        if gold is not None:
            raise LooplineError("--gold is for the sentiment demo", hint="drop --gold")
        with _StepProgress(enabled=not as_json) as on_event:
            summary = module.run_demo(
                _settings(),
                data=data,
                on_event=on_event,
                progress=None if as_json else err().print,
            )
        print_json(summary) if as_json else module.print_summary(summary, out())
        return
    if system != "sentiment":
        raise LooplineError(f"no demo named {system!r}", hint="available: sentiment, fraud, vision")
    from loopline.examples.sentiment.demo import print_summary, run_demo

    with _StepProgress(enabled=not as_json) as on_event:
        summary = run_demo(_settings(), data=data, gold=gold, on_event=on_event)
    if as_json:
        print_json(summary)
    else:
        print_summary(summary, out())


# -- entry point ---------------------------------------------------------------------
def main() -> None:
    """Console entry point: user errors become one line and exit code 2."""
    try:
        app()
    except LooplineError as exc:
        if _state["debug"]:
            raise
        report = getattr(getattr(exc, "cause", None), "report", None) or getattr(
            exc, "report", None
        )
        if report:
            from loopline.data.validate import format_report

            err().print(format_report(report), markup=False)
        from rich.text import Text

        err().print(Text("error: ", style="bold red") + Text(exc.message))
        if exc.hint:
            err().print(Text(f"hint: {exc.hint}", style="dim"))
        code = exc.exit_code
        if isinstance(exc, StepFailed):
            code = 2 if isinstance(exc.cause, LooplineError) else 1
        sys.exit(code)
    except KeyboardInterrupt:
        err().print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
