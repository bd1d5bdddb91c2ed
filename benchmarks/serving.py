"""Serving throughput: `loopline serve` against `mlflow models serve`, BentoML and two ceilings.

Trains the default sentiment model (``TextClassifierParams()``: word n-grams with negation
marking, char n-grams, lexicon scores, logistic regression) on ``--rows`` Sentiment140 rows,
registers it in a scratch MLflow registry as ``sentiment@champion``, then starts the servers
(one worker each, each on its own localhost port), checks that each answers real predictions,
and loads them one at a time with wrk at 1, 16 and 64 connections (all servers at c1, then all
at c16, then c64; each run after a warm-up at the same concurrency), in ``--rounds`` rounds
(default 3) per concurrency, the servers' order reversed every other round:

- ``loopline``: ``loopline -C <scratch project> serve sentiment@champion`` (its defaults: the
  prediction log on, Parquet segments in the scratch project)
- ``loopline_nolog``: the same with ``--no-log`` (no prediction log)
- ``mlflow``: ``mlflow models serve -m models:/sentiment@champion --env-manager local``
- ``bentoml``: BentoML with adaptive batching on the same model folder
  (``serving_support/bentoml_service.py``, run from its own virtualenv ``.bench/bentoml-venv``,
  created and cached on first use: BentoML is never installed in the project's environment)
- ``raw_asgi``: a raw ASGI app that reads the body and answers a constant, no framework
  (``serving_support/raw_asgi_app.py``): the HTTP ceiling of uvicorn on this machine
- ``trivial``: a FastAPI endpoint that does the same (``serving_support/trivial_app.py``): a
  second reference, with FastAPI's routing (Loopline's ``/predict`` bypasses FastAPI's).

The load: single-row JSON bodies, one distinct held-out tweet each: every tweet of the sample
that is not in the training rows (exact text; about 59,500 for 40,000 training rows; at least
30,000), in a fixed shuffled order. wrk rotates over them and each run continues where that
server's previous run stopped, so every server gets the same sequence, and each measured run
has a freshly started server: its caches (those of Loopline's lean path) start empty and
meet, in the 3 s warm-up and the run, tweets they have never seen, as a server just started
on real traffic does; none of it is a tweet repeated until every look-up hits. (A server
kept running would meet only repeats after one pass through the load set, and Loopline
sends more than that per concurrency.) Loopline's cache hit rates (from ``/metrics``) are
reported over its measured runs, per concurrency (``lean_cache_hit_rate_<cache>_<server>_c<N>``)
and with the warm-ups (``..._whole_run``), with ``load_passes_<server>``: how many times that
server went through the load set over all its runs.

Same treatment for every server: one worker process, no access log line per request, the
same bodies, warm-up, wrk settings and rounds. Rounds, because a shared machine's speed
drifts by tens of percent from one minute to the next (measured on the 2-core machine: the
same server gave 3,500 and 5,400 req/s in runs a minute apart, and single runs put Loopline
at 0.20 to 0.31 of the raw ASGI ceiling). Each server's figure at a concurrency is its median
run, the ratios are of those medians, and the JSON line keeps every round's req/s
(``rps_rounds_<server>_c<N>``) and the ratio within each round
(``ratio_rounds_vs_<server>_c<N>``), so a reader sees the spread.

Every uvicorn-based server runs httptools and uvloop:
Loopline's own uvicorn config resolves ``auto`` to them (both are installed), the constants
and ``mlflow models serve`` (the uvicorn command line) get ``--http httptools --loop uvloop``
(``UVICORN_HTTP``/``UVICORN_LOOP`` for mlflow); BentoML runs its own server in its own
virtualenv, whose httptools/uvloop versions are recorded. Each baseline gets its best plain
configuration, not a handicap (BentoML with adaptive batching).

After the load, Loopline's lean inference path is checked against scikit-learn on the whole
load set: every tweet is sent to the server (in lists of 500) and its probabilities are
compared with the pipeline's ``predict_proba``: label differences (must be 0) and the largest
probability difference are reported.

Reproduce (needs ``wrk``: ``apt-get install -y wrk``):

    .venv/bin/python benchmarks/serving.py
    .venv/bin/python benchmarks/serving.py --only loopline,raw_asgi --duration 5 \\
        --concurrency 16 --workdir /tmp/serving-bench     # a quick look while developing

It prints requests/s and p50/p99 latency per run, then per server and concurrency the median
run's, with the server's CPU time per request (from /proc), then the ratios. The last line is
one JSON object: ``rps_<server>_c<N>``, ``p50_ms_<server>_c<N>``,
``p99_ms_<server>_c<N>``, ``cpu_us_per_req_<server>_c<N>``, ``ratio_vs_<server>_c<N>``
(Loopline's requests/s, prediction log on, over that server's), ``ratio_nolog_vs_...`` (the
same with the log off), ``lean_*`` (the check against scikit-learn, cache hit rates) and
``machine`` (cores, CPU, load average at start and end, versions of every tool compared).
Targets: >= 8x mlflow and >= 3x BentoML at c16 and c64, >= 0.25x the raw ASGI ceiling at
c16, p99 < 25 ms at c16, 0 label differences.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _machine import machine_info, start_load, versions

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO.parent / "shared" / "data" / "sentiment" / "sentiment140_train_sample"
SUPPORT = Path(__file__).resolve().parent / "serving_support"
BENTO_VENV = REPO / ".bench" / "bentoml-venv"
BENTOML_VERSION = "1.4.40"
VENV_BIN = Path(sys.executable).parent

MODEL_NAME = "sentiment"
SERVERS = ("loopline", "loopline_nolog", "mlflow", "bentoml", "raw_asgi", "trivial")
LOOPLINES = ("loopline", "loopline_nolog")
CONSTANTS = ("raw_asgi", "trivial")
CONCURRENCIES = (1, 16, 64)
CHECK_TWEETS = 8  # tweets each server must label like the model does before it is loaded
MIN_LOAD_TWEETS = 30_000  # fewer distinct held-out tweets do not make a valid figure
LEAN_CHECK_BATCH = 500  # tweets per request of the lean check
WARMUP_S = 3  # before every measured run, at the same concurrency
ROUNDS = 3  # measured runs per server and concurrency; the median one is reported
WRK_THREADS = 1  # one load thread: the two cores are better left to the server under test
WRK_TIMEOUT_S = 10
READY_TIMEOUT_S = 180
# The uvicorn settings of every uvicorn-based server (Loopline's "auto" resolves to these).
UVICORN_FLAGS = ["--http", "httptools", "--loop", "uvloop", "--no-access-log"]
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "GIT_PYTHON_REFRESH": "quiet",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}
TARGETS = {"mlflow": 8.0, "bentoml": 3.0, "raw_asgi": 0.25}
# Ratios judged against a target: (server, concurrency); the others are for information.
JUDGED = {("mlflow", 16), ("mlflow", 64), ("bentoml", 16), ("bentoml", 64), ("raw_asgi", 16)}

# Each wrk thread reads the bodies (one JSON document a line) and POSTs them in turn, from
# the offset given (where this server's previous run stopped); done() prints the summary as
# one JSON line so nothing depends on wrk's human-readable layout.
WRK_SCRIPT = r"""
local bodies = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  i = tonumber(args[2] or "0") % #bodies
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function request()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


class BenchmarkError(RuntimeError):
    """A server that would not start, answered wrongly, or returned non-2xx under load."""


# --- the model and the load set -----------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """The registered champion: where it lives, and the held-out tweets of the load."""

    project: Path
    tracking_uri: str
    model_dir: Path
    version: str
    train_rows: int
    tweets: list[str]  # distinct, none of them in the training rows
    expected: list[str]  # the model's labels of the first CHECK_TWEETS tweets


def prepare_model(workdir: Path, rows: int, load_tweets: int) -> Model:
    """Train on ``rows`` Sentiment140 rows, register, promote (or reuse a champion trained on
    the same rows); the load set is every other distinct tweet of the sample."""
    import pandas as pd

    from loopline.data.ingest import load_source
    from loopline.errors import ModelNotFound

    project = workdir / "project"
    tracking_uri = f"sqlite:///{project / 'mlflow.db'}"
    registry = _registry(project, tracking_uri)
    data = load_source(TRAIN).sample(frac=1.0, random_state=0).reset_index(drop=True)
    train = data.iloc[:rows]
    tweets = held_out_tweets(train["text"], data["text"].iloc[rows:], load_tweets)
    try:
        info = registry.resolve(f"{MODEL_NAME}@champion")
    except ModelNotFound:
        info = _train_and_register(registry, train)
    else:
        trained_on = int(info.metrics.get("train_rows", -1))
        if trained_on != rows:
            raise BenchmarkError(
                f"the champion in {project} was trained on {trained_on} rows, not {rows}: "
                "use another --workdir (its training rows would overlap the load set)"
            )
        print(f"reusing {MODEL_NAME} version {info.version} in {project}", flush=True)
    model_dir = _model_folder(registry, info.version)
    loaded = _load_sklearn(model_dir)
    check = pd.DataFrame({"text": tweets[:CHECK_TWEETS]})
    expected = loaded.predict(check).astype(str).tolist()
    return Model(project, tracking_uri, model_dir, info.version, rows, tweets, expected)


def held_out_tweets(train: Any, rest: Any, limit: int) -> list[str]:
    """Distinct texts of ``rest`` (in order) that are not in ``train``: at most ``limit``
    (0: all of them)."""
    seen = set(train.astype(str))
    tweets = []
    for text in rest.astype(str):
        if text not in seen:
            seen.add(text)
            tweets.append(text)
    return tweets[:limit] if limit else tweets


def _registry(project: Path, tracking_uri: str) -> Any:
    """A scratch project whose settings point at a scratch registry, and that registry."""
    from loopline.core.metadata import MetadataStore
    from loopline.registry.models import ModelRegistry

    project.mkdir(parents=True, exist_ok=True)
    metadata_url = f"sqlite:///{project / 'metadata.db'}"
    artifacts = (project / "mlruns").as_uri()
    settings = {"mlflow_tracking_uri": tracking_uri, "metadata_url": metadata_url}
    # JSON is YAML: the project's loopline.yaml, read by `loopline -C project serve`.
    (project / "loopline.yaml").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    return ModelRegistry(
        tracking_uri, artifact_location=artifacts, history=MetadataStore(metadata_url)
    )


def _train_and_register(registry: Any, train: Any) -> Any:
    import pandas as pd

    from loopline.train.text import TextClassifierParams, train_text_classifier

    started = time.perf_counter()
    model = train_text_classifier(train[["text", "label"]], TextClassifierParams())
    print(f"trained on {len(train):,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    info = registry.register(
        model,
        name=MODEL_NAME,
        params=TextClassifierParams().to_dict(),
        metrics={"train_rows": len(train)},
        dataset_version="serving-benchmark",
        input_example=pd.DataFrame({"text": ["what a great day", "this is awful"]}),
    )
    registry.promote(MODEL_NAME, info.version, reason="serving benchmark", actor="benchmark")
    return info


def _model_folder(registry: Any, model_version: str) -> Path:
    """The local MLflow model folder of a version (file stores hand back their own path)."""
    import mlflow.artifacts

    uri = registry.client.get_model_version_download_uri(MODEL_NAME, model_version)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))


def _load_sklearn(model_dir: Path) -> Any:
    import mlflow.sklearn

    return mlflow.sklearn.load_model(str(model_dir))


# --- the BentoML environment -------------------------------------------------------------------


def ensure_bentoml_venv(log_dir: Path) -> Path:
    """Create ``.bench/bentoml-venv`` (BentoML + this repo, same ML versions) unless cached."""
    pins = [
        f"{p}=={version(p)}"
        for p in ("scikit-learn", "pandas", "numpy", "scipy", "cloudpickle", "httptools", "uvloop")
    ]
    # Loopline itself (editable) because the pickled pipeline calls its normalize_tweet.
    requirements = [f"bentoml=={BENTOML_VERSION}", *pins, "-e", str(REPO)]
    pyproject = (REPO / "pyproject.toml").read_bytes()
    stamp = hashlib.sha256(json.dumps(requirements).encode() + pyproject).hexdigest()
    stamp_file = BENTO_VENV / ".benchmark-stamp"
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return BENTO_VENV / "bin"
    print(f"creating {BENTO_VENV} (BentoML {BENTOML_VERSION}; about a minute)", flush=True)
    shutil.rmtree(BENTO_VENV, ignore_errors=True)
    _logged_run([sys.executable, "-m", "venv", str(BENTO_VENV)], log_dir / "bentoml-venv.log")
    pip = [str(BENTO_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", *requirements]
    _logged_run(pip, log_dir / "bentoml-venv.log")
    stamp_file.write_text(stamp)
    return BENTO_VENV / "bin"


def _logged_run(command: list[str], log: Path) -> None:
    with log.open("a") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise BenchmarkError(f"{command[:4]} failed; last lines of {log}:\n{_tail(log)}")


# --- the servers -------------------------------------------------------------------------------


@dataclass
class Server:
    """How to start one server, where to probe it, and how to talk to it."""

    name: str
    command: list[str]
    env: dict[str, str]
    ready_path: str
    predict_path: str
    body: Callable[[str], Any]
    label: Callable[[Any], str]
    http: str  # its HTTP settings, for the report
    cwd: Path = REPO
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    sent: int = 0  # bodies sent so far: the next run starts at this offset
    starts: int = 0  # processes started so far (one per measured run, and for checks)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def server_specs(model: Model, names: list[str], bento_bin: Path | None) -> list[Server]:
    """The servers to measure, each on a fresh free port."""
    env = {**os.environ, **QUIET_ENV, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    build = {
        "loopline": lambda port: _loopline(model, env, port, log=True),
        "loopline_nolog": lambda port: _loopline(model, env, port, log=False),
        "mlflow": lambda port: _mlflow(model, env, port),
        "bentoml": lambda port: _bentoml(model, env, port, bento_bin),
        "raw_asgi": lambda port: _constant("raw_asgi", "raw_asgi_app:app", env, port),
        "trivial": lambda port: _constant("trivial", "trivial_app:app", env, port),
    }
    return [build[name](free_port()) for name in names]


def _loopline(model: Model, env: dict[str, str], port: int, *, log: bool) -> Server:
    command = [str(VENV_BIN / "loopline"), "-C", str(model.project), "serve"]
    command += [f"{MODEL_NAME}@champion", "--port", str(port), "--workers", "1"]
    if not log:
        command.append("--no-log")
    return Server(
        "loopline" if log else "loopline_nolog",
        command,
        env,
        "/ready",
        "/predict",
        body=lambda text: {"text": text},
        label=lambda answer: answer["prediction"]["label"],
        http="uvicorn (httptools, uvloop: 'auto'), no access log, 1 worker",
        port=port,
    )


def _mlflow(model: Model, env: dict[str, str], port: int) -> Server:
    command = [str(VENV_BIN / "mlflow"), "models", "serve"]
    command += ["-m", f"models:/{MODEL_NAME}@champion", "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    # mlflow runs the uvicorn command line, which reads UVICORN_* variables.
    mlflow_env = {
        **env,
        "MLFLOW_TRACKING_URI": model.tracking_uri,
        "UVICORN_ACCESS_LOG": "false",
        "UVICORN_HTTP": "httptools",
        "UVICORN_LOOP": "uvloop",
    }
    return Server(
        "mlflow",
        command,
        mlflow_env,
        "/ping",
        "/invocations",
        body=lambda text: {"dataframe_split": {"columns": ["text"], "data": [[text]]}},
        label=lambda answer: answer["predictions"][0],
        http="uvicorn (httptools, uvloop), no access log, 1 worker",
        port=port,
    )


def _bentoml(model: Model, env: dict[str, str], port: int, bento_bin: Path | None) -> Server:
    assert bento_bin is not None
    command = [str(bento_bin / "bentoml"), "serve", "bentoml_service:Sentiment"]
    command += ["--working-dir", str(SUPPORT), "--host", "127.0.0.1", "--port", str(port)]
    bento_env = {
        **env,
        "PATH": f"{bento_bin}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(bento_bin.parent),
        "LOOPLINE_BENCH_MODEL_DIR": str(model.model_dir),
        "BENTOML_HOME": str(model.project.parent / "bentoml-home"),
    }
    return Server(
        "bentoml",
        command,
        bento_env,
        "/readyz",
        "/predict",
        body=lambda text: {"texts": [text]},
        label=lambda answer: answer[0]["label"],
        http="BentoML's own server (uvicorn inside), no access log, 1 worker, adaptive batching",
        port=port,
    )


def _constant(name: str, app: str, env: dict[str, str], port: int) -> Server:
    command = [str(VENV_BIN / "python"), "-m", "uvicorn", app, "--app-dir", str(SUPPORT)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", *UVICORN_FLAGS]
    command += ["--log-level", "warning"]
    return Server(
        name,
        command,
        env,
        "/health",
        "/predict",
        body=lambda text: {"text": text},
        label=lambda answer: answer["prediction"]["label"],
        http="uvicorn (httptools, uvloop), no access log, 1 worker",
        port=port,
    )


def free_port() -> int:
    """A localhost port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running(server: Server, log_dir: Path) -> Iterator[Server]:
    """Start ``server`` in its own process group, wait until ready, always kill it after.

    Its output goes to ``<name>.log`` in ``log_dir`` (every start of the run, one after the
    other); the command and the start-up time are printed on its first start."""
    log = log_dir / f"{server.name}.log"
    first = server.starts == 0
    if first:
        print(f"\n[{server.name}] {' '.join(server.command)}", flush=True)
        log.unlink(missing_ok=True)
    server.starts += 1
    started = time.perf_counter()
    with log.open("ab") as out:
        server.process = subprocess.Popen(
            server.command,
            cwd=server.cwd,
            env=server.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: stopping it also stops its workers
        )
    try:
        _wait_ready(server, log)
        if first:
            print(f"[{server.name}] ready after {time.perf_counter() - started:.1f} s", flush=True)
        yield server
    finally:
        stop(server)


def _wait_ready(server: Server, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    assert server.process is not None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchmarkError(
                f"{server.name} exited with {server.process.returncode}:\n{_tail(log)}"
            )
        if _answers_200(server.base_url + server.ready_path):
            return
        time.sleep(0.3)
    raise BenchmarkError(f"{server.name} not ready after {READY_TIMEOUT_S} s:\n{_tail(log)}")


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:  # refused, reset, or an HTTP error status while still starting
        return False


def stop(server: Server) -> None:
    """SIGTERM the server's process group, SIGKILL it if still there after 10 s."""
    process = server.process
    if process is None or process.poll() is not None:
        return
    # Its workers, those in other groups too, by start time (a pid may be reused later).
    workers = {pid: _start_time(pid) for pid in tree_pids(process.pid) - {process.pid}}
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait_s)
            break
    # Workers that outlived their parent go too (same group, or one of their own).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid, started in workers.items():
        if started is not None and _start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime


def _tail(log: Path, lines: int = 30) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _processes() -> dict[int, tuple[int, int, int]]:
    """Every process's ``{pid: (parent pid, process group, CPU clock ticks)}`` (from /proc)."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        fields = stat.rsplit(")", 1)[1].split()  # from field 3 (state) on
        # ppid, pgrp; utime + stime
        found[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[11]) + int(fields[12]))
    return found


def tree_pids(root: int, processes: dict[int, tuple[int, int, int]] | None = None) -> set[int]:
    """``root``, its descendants, and the rest of its process group.

    A process group alone misses workers that start their own session (BentoML's service
    worker does), the parent links alone miss workers whose parent already exited.
    """
    processes = _processes() if processes is None else processes
    pids = {pid for pid, (_, pgrp, _) in processes.items() if pgrp == root} | {root}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in pids:
                pids.add(child)
                todo.append(child)
    return pids


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of a server: its process, its workers (see :func:`tree_pids`)."""
    processes = _processes()
    ticks = sum(processes[pid][2] for pid in tree_pids(root, processes) if pid in processes)
    return ticks / os.sysconf("SC_CLK_TCK")


# --- correctness and load ----------------------------------------------------------------------


def check_answers(server: Server, model: Model) -> None:
    """Each server must label the check tweets as the model does (constants: their label)."""
    for text, expected in zip(model.tweets[:CHECK_TWEETS], model.expected, strict=True):
        status, answer = post_json(server.base_url + server.predict_path, server.body(text))
        if status != 200:
            raise BenchmarkError(f"{server.name} answered {status}: {answer!r:.300}")
        try:
            label = server.label(answer)
        except (KeyError, IndexError, TypeError) as exc:
            raise BenchmarkError(f"{server.name}: unexpected answer {answer!r:.300}") from exc
        wanted = "positive" if server.name in CONSTANTS else expected
        if label != wanted:
            raise BenchmarkError(f"{server.name} labelled {text!r} {label!r}, expected {wanted!r}")
    print(f"[{server.name}] {CHECK_TWEETS} check predictions correct", flush=True)


def post_json(url: str, payload: Any, timeout: float = 30) -> tuple[int, Any]:
    """POST ``payload`` as JSON; return the status and the decoded answer."""
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return str(answer.read().decode())


@dataclass(frozen=True)
class LoadResult:
    """One wrk run."""

    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    cpu_us_per_req: float | None = None  # the server's CPU time per request


def run_wrk(
    server: Server, bodies: Path, script: Path, connections: int, duration: int
) -> LoadResult:
    """Load ``server`` with wrk from where its last run stopped; raise on any non-2xx."""
    command = ["wrk", f"-t{min(WRK_THREADS, connections)}", f"-c{connections}", f"-d{duration}s"]
    command += [f"--timeout={WRK_TIMEOUT_S}s", "--latency", "-s", str(script)]
    command += [server.base_url + server.predict_path, "--", str(bodies), str(server.sent)]
    assert server.process is not None
    cpu_before = tree_cpu_seconds(server.process.pid)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    cpu = tree_cpu_seconds(server.process.pid) - cpu_before
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK_JSON ")]
    if done.returncode != 0 or not lines:
        raise BenchmarkError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    stats = json.loads(lines[-1].removeprefix("WRK_JSON "))
    # Requests still in flight when wrk stopped were sent too (at most one per connection).
    server.sent += stats["requests"] + connections
    result = LoadResult(
        requests=stats["requests"],
        rps=stats["requests"] / (stats["duration_us"] / 1e6),
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        max_ms=stats["max_us"] / 1000,
        non_2xx=stats["status"],
        socket_errors=sum(stats[k] for k in ("connect", "read", "write", "timeout")),
        cpu_us_per_req=cpu * 1e6 / stats["requests"] if stats["requests"] else None,
    )
    if result.non_2xx:
        raise BenchmarkError(
            f"{server.name} at c{connections}: {result.non_2xx} Non-2xx responses "
            f"of {result.requests}; see {server.name}.log in the scratch folder"
        )
    return result


@dataclass
class Measured:
    """What the load phase found."""

    results: dict[str, dict[int, LoadResult]]  # the median run (by req/s)
    rounds: dict[str, dict[int, list[LoadResult]]]  # every run, in round order
    # Loopline servers: cache counters {cache: [lookups, misses]} over the measured runs,
    # and over each server's whole life (warm-ups too), summed over its runs.
    cache_measured: dict[str, dict[str, list[int]]]
    cache_total: dict[str, dict[str, list[int]]]
    lean: dict[str, Any]
    passes: dict[str, float] = field(default_factory=dict)  # times through the load set
    # the same over the measured runs at one concurrency, by "<server>_c<N>"
    cache_runs: dict[str, dict[str, list[int]]] = field(default_factory=dict)


def measure_all(
    servers: list[Server],
    model: Model,
    work: Path,
    duration: int,
    concurrencies: list[int],
    lean_check: bool,
    rounds: int = ROUNDS,
) -> Measured:
    """Check every server, load them in turn at each concurrency, ``rounds`` times, then
    check the lean path on the whole load set.

    The servers are loaded one at a time, concurrency by concurrency and round by round
    (the order reversed every other round, so no server is always measured first): a burst
    of load from elsewhere on the machine, or a slower minute, then falls on all of them
    rather than on whichever one happened to be measured at that moment, and the median of
    the rounds leaves it out. Every measured run gets a freshly started server, the same
    for every server: only the server under test is running, and its caches hold what
    that run's warm-up and load brought, never a body from an earlier run (a fast server
    sends more bodies per concurrency than the load set holds; kept running, its later
    runs would meet only tweets it had already seen). Each measurement follows a warm-up
    at the same concurrency.
    """
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    bodies: dict[str, Path] = {}
    measured = Measured({s.name: {} for s in servers}, {s.name: {} for s in servers}, {}, {}, {})
    for server in servers:  # each must label like the model before it is measured
        with running(server, work):
            check_answers(server, model)
        bodies[server.name] = write_bodies(server, model, work)
    print(
        f"\nload: {len(model.tweets):,} distinct held-out tweets; each run: a fresh server, "
        f"{WARMUP_S} s warm-up, then {duration} s measured; {rounds} rounds",
        flush=True,
    )
    for connections, round_ in itertools.product(concurrencies, range(rounds)):
        for server in servers if round_ % 2 == 0 else servers[::-1]:
            with running(server, work):
                run_wrk(server, bodies[server.name], script, connections, WARMUP_S)
                before = cache_counters(server)
                result = run_wrk(server, bodies[server.name], script, connections, duration)
                after = cache_counters(server)
            if after is not None and before is not None:
                for cache, (lookups, misses) in after.items():
                    seen = before.get(cache, (0, 0))
                    for totals, key in (
                        (measured.cache_measured, server.name),
                        (measured.cache_runs, f"{server.name}_c{connections}"),
                    ):
                        sums = totals.setdefault(key, {}).setdefault(cache, [0, 0])
                        sums[0] += lookups - seen[0]
                        sums[1] += misses - seen[1]
                    whole = measured.cache_total.setdefault(server.name, {})
                    sums = whole.setdefault(cache, [0, 0])  # since start-up: warm-up too
                    sums[0] += lookups
                    sums[1] += misses
            measured.rounds[server.name].setdefault(connections, []).append(result)
            print_result(server.name, connections, result, round_)
    for name, by_c in measured.rounds.items():
        for connections, runs in by_c.items():
            middle = statistics.median_low(run.rps for run in runs)
            measured.results[name][connections] = next(r for r in runs if r.rps == middle)
    for server in servers:
        measured.passes[server.name] = round(server.sent / len(model.tweets), 2)
    checked = next((s for s in servers if s.name in LOOPLINES), None)
    if lean_check and checked is not None:
        with running(checked, work):
            measured.lean = check_lean_path(checked, model)
    return measured


def write_bodies(server: Server, model: Model, work: Path) -> Path:
    """The held-out tweets in this server's request shape, one JSON body a line."""
    bodies = work / f"bodies-{server.name}.jsonl"
    bodies.write_text("".join(json.dumps(server.body(t)) + "\n" for t in model.tweets))
    return bodies


_CACHE_SAMPLE = re.compile(
    r"^loopline_lean_cache_(lookups|misses)_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$"
)


def cache_counters(server: Server) -> dict[str, tuple[int, int]] | None:
    """A Loopline server's lean-path cache counters ``{cache: (lookups, misses)}`` (champion)."""
    if server.name not in LOOPLINES:
        return None
    found: dict[str, list[int]] = {}
    for line in get_text(server.base_url + "/metrics").splitlines():
        match = _CACHE_SAMPLE.match(line)
        if match is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("route") != "champion":
            continue
        counts = found.setdefault(labels["cache"], [0, 0])
        counts[0 if match[1] == "lookups" else 1] += int(float(match["value"]))
    return {cache: (lookups, misses) for cache, (lookups, misses) in found.items()}


def check_lean_path(server: Server, model: Model) -> dict[str, Any]:
    """Every load tweet through the server (lists of LEAN_CHECK_BATCH) against the sklearn
    pipeline's ``predict_proba``: label differences and the largest probability difference."""
    import numpy as np
    import pandas as pd

    kind = json.loads(get_text(server.base_url + "/model"))["routes"]["champion"]["inference"]
    pipeline = _load_sklearn(model.model_dir)
    classes = [str(c) for c in pipeline.classes_]
    print(f"\nlean check: {len(model.tweets):,} tweets through {server.name} ({kind})", flush=True)
    started = time.perf_counter()
    expected = pipeline.predict_proba(pd.DataFrame({"text": model.tweets}))
    served = []
    for start in range(0, len(model.tweets), LEAN_CHECK_BATCH):
        texts = model.tweets[start : start + LEAN_CHECK_BATCH]
        status, answer = post_json(
            server.base_url + "/predict", {"inputs": [{"text": t} for t in texts]}, timeout=120
        )
        if status != 200:
            raise BenchmarkError(f"lean check: {server.name} answered {status}: {answer!r:.300}")
        served += [[p["probabilities"][c] for c in classes] for p in answer["predictions"]]
    got = np.asarray(served, dtype=np.float64)
    label_differences = int((got.argmax(axis=1) != expected.argmax(axis=1)).sum())
    max_difference = float(np.abs(got - expected).max())
    print(
        f"lean check: {label_differences} label differences, largest probability difference "
        f"{max_difference:.3g} ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    return {
        "lean_inference": kind,
        "lean_checked_tweets": len(model.tweets),
        "lean_label_differences": label_differences,
        "lean_max_proba_diff": max_difference,
    }


def print_result(name: str, connections: int, result: LoadResult, round_: int) -> None:
    errors = f", {result.socket_errors} socket errors" if result.socket_errors else ""
    cpu = f"  cpu {result.cpu_us_per_req:6.1f} us/req" if result.cpu_us_per_req else ""
    print(
        f"[{name}] c{connections:<3} round {round_ + 1}  {result.rps:8.1f} req/s"
        f"  p50 {result.p50_ms:7.1f} ms  p99 {result.p99_ms:7.1f} ms{cpu}{errors}",
        flush=True,
    )


# --- report ------------------------------------------------------------------------------------


def summary(measured: Measured) -> dict[str, Any]:
    """Flat numbers for the JSON line: per server and concurrency, ratios, lean path."""
    results = measured.results
    out: dict[str, Any] = {}
    for name, by_c in results.items():
        for c, r in by_c.items():
            out[f"rps_{name}_c{c}"] = round(r.rps, 1)
            out[f"p50_ms_{name}_c{c}"] = round(r.p50_ms, 2)
            out[f"p99_ms_{name}_c{c}"] = round(r.p99_ms, 2)
            if r.cpu_us_per_req is not None:
                out[f"cpu_us_per_req_{name}_c{c}"] = round(r.cpu_us_per_req, 1)
            if r.socket_errors:
                out[f"socket_errors_{name}_c{c}"] = r.socket_errors
    for name, by_c in measured.rounds.items():
        for c, runs in by_c.items():
            out[f"rps_rounds_{name}_c{c}"] = [round(run.rps, 1) for run in runs]
    for ours, prefix in (("loopline", "ratio_vs"), ("loopline_nolog", "ratio_nolog_vs")):
        for other in ("mlflow", "bentoml", "raw_asgi", "trivial"):
            if ours not in results or other not in results:
                continue
            for c in results[ours]:
                theirs = results[other].get(c)
                if theirs is not None:
                    ratio = results[ours][c].rps / theirs.rps if theirs.rps else None
                    out[f"{prefix}_{other}_c{c}"] = None if ratio is None else round(ratio, 3)
                    pairs = zip(measured.rounds[ours][c], measured.rounds[other][c], strict=True)
                    out[f"{prefix.replace('_vs', '_rounds_vs')}_{other}_c{c}"] = [
                        round(a.rps / b.rps, 3) if b.rps else None for a, b in pairs
                    ]
    for name, caches in measured.cache_measured.items():
        for cache, (lookups, misses) in caches.items():
            out[f"lean_cache_hit_rate_{cache}_{name}"] = _hit_rate(lookups, misses)
    for name, caches in measured.cache_total.items():
        for cache, (lookups, misses) in caches.items():
            out[f"lean_cache_hit_rate_{cache}_{name}_whole_run"] = _hit_rate(lookups, misses)
            out[f"lean_cache_lookups_{cache}_{name}_whole_run"] = lookups
    for run, caches in measured.cache_runs.items():
        name, c = run.rsplit("_c", 1)
        for cache, (lookups, misses) in caches.items():
            out[f"lean_cache_hit_rate_{cache}_{name}_c{c}"] = _hit_rate(lookups, misses)
    for name, passes in measured.passes.items():
        out[f"load_passes_{name}"] = passes
    out.update(measured.lean)
    return out


def _hit_rate(lookups: int, misses: int) -> float | None:
    return round(1 - misses / lookups, 4) if lookups else None


def print_table(results: dict[str, dict[int, LoadResult]], concurrencies: list[int]) -> None:
    header = f"{'server':<15}" + "".join(
        f" | {'c' + str(c) + ' req/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'cpu us':>7}"
        for c in concurrencies
    )
    print("\n" + header + "\n" + "-" * len(header))
    for name, by_c in results.items():
        cells = "".join(
            f" | {by_c[c].rps:>11.1f} {by_c[c].p50_ms:>7.1f} {by_c[c].p99_ms:>7.1f}"
            f" {by_c[c].cpu_us_per_req or 0:>7.1f}"
            for c in concurrencies
        )
        print(f"{name:<15}{cells}")


def print_ratios(numbers: dict[str, Any]) -> None:
    """Loopline over each other server, with the issue's targets."""
    ratios = [k for k in numbers if k.startswith(("ratio_vs_", "ratio_nolog_vs_"))]
    # Ratios of the median runs; each round's ratio follows in brackets.
    if ratios:
        print("\nloopline req/s over the other server's (target):")
    for key in ratios:
        ours = "loopline (log off)" if key.startswith("ratio_nolog") else "loopline"
        other, c = key.split("_vs_", 1)[1].rsplit("_c", 1)
        value = numbers[key]
        judged = (other, int(c)) in JUDGED and ours == "loopline"
        verdict = "info"
        if judged and value is not None:
            verdict = f">= {TARGETS[other]}x: " + ("met" if value >= TARGETS[other] else "MISSED")
        shown = "  n/a  " if value is None else f"{value:7.2f}x"
        per_round = numbers.get(key.replace("_vs_", "_rounds_vs_"), [])
        spread = " ".join("n/a" if r is None else f"{r:.2f}" for r in per_round)
        print(f"  {ours:<18} vs {other:<9} c{c:<3} {shown}  ({verdict})  [rounds: {spread}]")
    if "p99_ms_loopline_c16" in numbers:
        p99 = numbers["p99_ms_loopline_c16"]
        print(f"  loopline p99 at c16 {p99:.1f} ms  (< 25 ms: {'met' if p99 < 25 else 'MISSED'})")
    hits = {k: v for k, v in numbers.items() if k.startswith("lean_cache_hit_rate_")}
    for key, value in hits.items():
        print(f"  {key}: {value}")
    for key in (k for k in numbers if k.startswith("load_passes_")):
        print(f"  {key}: {numbers[key]} (times through the load set)")
    if "lean_label_differences" in numbers:
        differences = numbers["lean_label_differences"]
        print(
            f"  lean path vs scikit-learn on {numbers['lean_checked_tweets']:,} tweets: "
            f"{differences} label differences ({'met' if differences == 0 else 'MISSED'}), "
            f"largest probability difference {numbers['lean_max_proba_diff']:.3g}"
        )


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(SERVERS), help="comma-separated subset of: " + ",".join(SERVERS)
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per measured run")
    parser.add_argument(
        "--concurrency",
        default=",".join(map(str, CONCURRENCIES)),
        help="comma-separated wrk connection counts (default: 1,16,64)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help=f"measured runs per server and concurrency, the median one reported (default: "
        f"{ROUNDS})",
    )
    parser.add_argument("--rows", type=int, default=40_000, help="training rows")
    parser.add_argument(
        "--load-tweets",
        type=int,
        default=0,
        help="distinct held-out tweets the load rotates over (default: all of them; a figure "
        f"needs at least {MIN_LOAD_TWEETS:,})",
    )
    parser.add_argument(
        "--no-lean-check",
        action="store_true",
        help="skip checking the lean path against scikit-learn on the whole load set",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="scratch folder kept after the run; a champion already registered there is reused",
    )
    args = parser.parse_args(argv)
    requested = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = sorted(requested - set(SERVERS))
    args.servers = [s for s in SERVERS if s in requested]  # always in the table's order
    if unknown or not args.servers:
        parser.error(f"--only: unknown server(s) {unknown}; choose from {', '.join(SERVERS)}")
    try:
        args.concurrencies = sorted({int(c) for c in args.concurrency.split(",") if c.strip()})
    except ValueError:
        parser.error("--concurrency: comma-separated integers, e.g. 1,16,64")
    if not args.concurrencies or min(args.concurrencies) < 1:
        parser.error("--concurrency: at least one count, each >= 1")
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    return args


def machine_line() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    now = datetime.now().astimezone()
    return f"{now:%Y-%m-%d %H:%M:%S %Z}, {os.cpu_count()} cores, load average {load}"


def tool_versions(bento_bin: Path | None, load_start: list[float]) -> dict[str, Any]:
    """The machine (cores, load averages) and the versions of everything compared."""
    tools = ["loopline", "mlflow-skinny", "mlflow", "uvicorn", "httptools", "uvloop"]
    tools += ["fastapi", "starlette", "orjson", "scikit-learn", "numpy", "scipy", "pyarrow"]
    info = machine_info(load_start, tools)
    if bento_bin is not None:  # BentoML's own virtualenv, its HTTP stack named as such
        there = versions(
            ["bentoml", "uvicorn", "httptools", "uvloop", "starlette"], bento_bin / "python"
        )
        info["versions"]["bentoml"] = there.pop("bentoml")
        info["versions"].update({f"{name} (bentoml-venv)": v for name, v in there.items()})
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    words = (done.stdout + done.stderr).split()
    info["versions"]["wrk"] = words[1] if len(words) > 1 and words[0] == "wrk" else None
    # Whether Loopline's lean path ran its C kernels or its numpy path (no C compiler).
    from loopline.serve.inference import KERNELS

    info["lean_kernels"] = "compiled" if KERNELS is not None else "numpy"
    return info


def main(argv: list[str] | None = None) -> int:
    load_start = start_load()
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    # A SIGTERM to the benchmark unwinds like Ctrl-C, so every server is still stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.update(QUIET_ENV)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="loopline-serving-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = machine_line()
    print(f"start: {started}\nscratch folder: {work}", flush=True)
    model = prepare_model(work, args.rows, args.load_tweets)
    if len(model.tweets) < MIN_LOAD_TWEETS:
        print(
            f"WARNING: the load rotates over {len(model.tweets):,} tweets, fewer than "
            f"{MIN_LOAD_TWEETS:,}: not a valid figure",
            flush=True,
        )
    bento_bin = ensure_bentoml_venv(work) if "bentoml" in args.servers else None
    servers = server_specs(model, args.servers, bento_bin)
    measured = measure_all(
        servers,
        model,
        work,
        args.duration,
        args.concurrencies,
        not args.no_lean_check,
        args.rounds,
    )
    # Only a successful run cleans up: after a failure the servers' logs stay for reading.
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    numbers = summary(measured)
    print_table(measured.results, args.concurrencies)
    print_ratios(numbers)
    ended = machine_line()
    print(
        f"\nend: {ended}; {args.duration} s per run, {args.rounds} rounds, wrk -t{WRK_THREADS}, "
        "one worker per server"
    )
    meta = {
        "duration_s": args.duration,
        "rounds": args.rounds,
        "warmup_s": WARMUP_S,
        "wrk_threads": WRK_THREADS,
        "train_rows": model.train_rows,
        "load_tweets": len(model.tweets),
        "model_version": model.version,
        "http": {server.name: server.http for server in servers},
        "start": started,
        "end": ended,
        "machine": tool_versions(bento_bin, load_start),
    }
    print(json.dumps({**numbers, **meta}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
