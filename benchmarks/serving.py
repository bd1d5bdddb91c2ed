"""Serving throughput: `loopline serve` against `mlflow models serve`, BentoML and a constant.

Trains the TF-IDF + logistic-regression sentiment model on Sentiment140 rows, registers it in
a scratch MLflow registry as ``sentiment@champion``, then starts the servers (one worker
each, each on its own localhost port), checks that each answers real predictions, and loads them
one at a time with wrk at 1, 16 and 64 connections (all servers at c1, then all at c16, then
c64; each run after a warm-up at the same concurrency), single-row JSON bodies rotating over
a few hundred held-out tweets:

- ``loopline``: ``loopline -C <scratch project> serve sentiment@champion``
- ``mlflow``: ``mlflow models serve -m models:/sentiment@champion --env-manager local``
- ``bentoml``: BentoML with adaptive batching on the same model folder
  (``serving_support/bentoml_service.py``, run from its own virtualenv ``.bench/bentoml-venv``,
  created and cached on first use: BentoML is never installed in the project's environment)
- ``trivial``: a FastAPI endpoint returning a constant (``serving_support/trivial_app.py``),
  the HTTP ceiling of this machine.

Loopline runs with its command-line defaults (plus ``--workers 1`` where that option exists).
MLflow and BentoML run without a per-request access log line, as Loopline and the trivial
endpoint do: each baseline gets its best plain configuration, not a handicap.

Reproduce (needs ``wrk``: ``apt-get install -y wrk``):

    .venv/bin/python benchmarks/serving.py
    .venv/bin/python benchmarks/serving.py --only loopline,trivial --duration 5

It prints requests/s and p50/p99 latency per server and concurrency, then the ratios. The last
line is one JSON object: ``rps_<server>_c<N>``, ``p50_ms_<server>_c<N>``, ``p99_ms_<server>_c<N>``
and ``ratio_vs_<server>_c<N>`` (Loopline's requests/s over that server's), among others.
Targets: >= 8x mlflow and >= 3x BentoML at c16 and c64, >= half of trivial at c16, p99 < 25 ms
at c16.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
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

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO.parent / "shared" / "data" / "sentiment" / "sentiment140_train_sample"
SUPPORT = Path(__file__).resolve().parent / "serving_support"
BENTO_VENV = REPO / ".bench" / "bentoml-venv"
BENTOML_VERSION = "1.4.40"
VENV_BIN = Path(sys.executable).parent

MODEL_NAME = "sentiment"
SERVERS = ("loopline", "mlflow", "bentoml", "trivial")
CONCURRENCIES = (1, 16, 64)
CHECK_TWEETS = 8  # tweets each server must label like the model does before it is loaded
LOAD_TWEETS = 300  # bodies the load rotates over
WARMUP_S = 3  # before every measured run, at the same concurrency
WRK_THREADS = 1  # one load thread: the two cores are better left to the server under test
WRK_TIMEOUT_S = 10
READY_TIMEOUT_S = 180
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "GIT_PYTHON_REFRESH": "quiet",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}

# Each wrk thread reads the bodies (one JSON document a line) and POSTs them in turn; done()
# prints the summary as one JSON line so nothing depends on wrk's human-readable layout.
WRK_SCRIPT = r"""
local bodies = {}
local i = 0
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
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


# --- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """The registered champion: where it lives, and tweets with the labels it gives them."""

    project: Path
    tracking_uri: str
    model_dir: Path
    version: str
    tweets: list[str]
    expected: list[str]


def prepare_model(workdir: Path, rows: int) -> Model:
    """Train on ``rows`` Sentiment140 rows, register, promote; reuse a champion already there."""
    import pandas as pd

    from loopline.data.ingest import load_source
    from loopline.errors import ModelNotFound

    project = workdir / "project"
    tracking_uri = f"sqlite:///{project / 'mlflow.db'}"
    registry = _registry(project, tracking_uri)
    data = load_source(TRAIN).sample(frac=1.0, random_state=0).reset_index(drop=True)
    held_out = data["text"].iloc[rows : rows + LOAD_TWEETS].astype(str).tolist()
    try:
        info = registry.resolve(f"{MODEL_NAME}@champion")
        print(f"reusing {MODEL_NAME} version {info.version} in {project}", flush=True)
    except ModelNotFound:
        info = _train_and_register(registry, data.iloc[:rows])
    model_dir = _model_folder(registry, info.version)
    loaded = _load_sklearn(model_dir)
    expected = loaded.predict(pd.DataFrame({"text": held_out})).astype(str).tolist()
    return Model(project, tracking_uri, model_dir, info.version, held_out, expected)


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
        f"{p}=={version(p)}" for p in ("scikit-learn", "pandas", "numpy", "scipy", "cloudpickle")
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
    cwd: Path = REPO
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def server_specs(model: Model, names: list[str], bento_bin: Path | None) -> list[Server]:
    """The servers to measure, each on a fresh free port."""
    env = {**os.environ, **QUIET_ENV, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    build = {
        "loopline": lambda port: _loopline(model, env, port),
        "mlflow": lambda port: _mlflow(model, env, port),
        "bentoml": lambda port: _bentoml(model, env, port, bento_bin),
        "trivial": lambda port: _trivial(env, port),
    }
    return [build[name](free_port()) for name in names]


def _loopline(model: Model, env: dict[str, str], port: int) -> Server:
    command = [str(VENV_BIN / "loopline"), "-C", str(model.project), "serve"]
    command += [f"{MODEL_NAME}@champion", "--port", str(port)]
    if "--workers" in _help_text([str(VENV_BIN / "loopline"), "serve", "--help"]):
        command += ["--workers", "1"]
    return Server(
        "loopline",
        command,
        env,
        "/ready",
        "/predict",
        body=lambda text: {"text": text},
        label=lambda answer: answer["prediction"]["label"],
        port=port,
    )


def _mlflow(model: Model, env: dict[str, str], port: int) -> Server:
    command = [str(VENV_BIN / "mlflow"), "models", "serve"]
    command += ["-m", f"models:/{MODEL_NAME}@champion", "--env-manager", "local"]
    command += ["-h", "127.0.0.1", "-p", str(port), "-w", "1"]
    # mlflow runs the uvicorn CLI, which reads UVICORN_* variables: no access log line per
    # request, as for Loopline and the trivial endpoint.
    mlflow_env = {**env, "MLFLOW_TRACKING_URI": model.tracking_uri, "UVICORN_ACCESS_LOG": "false"}
    return Server(
        "mlflow",
        command,
        mlflow_env,
        "/ping",
        "/invocations",
        body=lambda text: {"dataframe_split": {"columns": ["text"], "data": [[text]]}},
        label=lambda answer: answer["predictions"][0],
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
        port=port,
    )


def _trivial(env: dict[str, str], port: int) -> Server:
    command = [str(VENV_BIN / "python"), "-m", "uvicorn", "trivial_app:app"]
    command += ["--app-dir", str(SUPPORT), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1", "--no-access-log", "--log-level", "warning"]
    return Server(
        "trivial",
        command,
        env,
        "/health",
        "/predict",
        body=lambda text: {"text": text},
        label=lambda answer: answer["prediction"]["label"],
        port=port,
    )


def free_port() -> int:
    """A localhost port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _help_text(command: list[str]) -> str:
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
    )
    return done.stdout + done.stderr


@contextlib.contextmanager
def running(server: Server, log_dir: Path) -> Iterator[Server]:
    """Start ``server`` in its own process group, wait until ready, always kill it after."""
    log = log_dir / f"{server.name}.log"
    print(f"\n[{server.name}] {' '.join(server.command)}", flush=True)
    started = time.perf_counter()
    with log.open("wb") as out:
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
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(wait_s)
            break
    # Workers that outlived their parent (same group) go too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _tail(log: Path, lines: int = 30) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


# --- correctness and load ----------------------------------------------------------------------


def check_answers(server: Server, model: Model) -> None:
    """Each server must label the check tweets as the model does (trivial: its constant)."""
    for text, expected in zip(model.tweets[:CHECK_TWEETS], model.expected, strict=False):
        status, answer = post_json(server.base_url + server.predict_path, server.body(text))
        if status != 200:
            raise BenchmarkError(f"{server.name} answered {status}: {answer!r:.300}")
        try:
            label = server.label(answer)
        except (KeyError, IndexError, TypeError) as exc:
            raise BenchmarkError(f"{server.name}: unexpected answer {answer!r:.300}") from exc
        wanted = "positive" if server.name == "trivial" else expected
        if label != wanted:
            raise BenchmarkError(f"{server.name} labelled {text!r} {label!r}, expected {wanted!r}")
    print(f"[{server.name}] {CHECK_TWEETS} check predictions correct", flush=True)


def post_json(url: str, payload: Any) -> tuple[int, Any]:
    """POST ``payload`` as JSON; return the status and the decoded answer."""
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


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


def run_wrk(
    server: Server, bodies: Path, script: Path, connections: int, duration: int
) -> LoadResult:
    """Load ``server`` with wrk; raise if any answer was not 2xx."""
    command = ["wrk", f"-t{min(WRK_THREADS, connections)}", f"-c{connections}", f"-d{duration}s"]
    command += [f"--timeout={WRK_TIMEOUT_S}s", "--latency", "-s", str(script)]
    command += [server.base_url + server.predict_path, "--", str(bodies)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK_JSON ")]
    if done.returncode != 0 or not lines:
        raise BenchmarkError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    stats = json.loads(lines[-1].removeprefix("WRK_JSON "))
    result = LoadResult(
        requests=stats["requests"],
        rps=stats["requests"] / (stats["duration_us"] / 1e6),
        p50_ms=stats["p50_us"] / 1000,
        p99_ms=stats["p99_us"] / 1000,
        max_ms=stats["max_us"] / 1000,
        non_2xx=stats["status"],
        socket_errors=sum(stats[k] for k in ("connect", "read", "write", "timeout")),
    )
    if result.non_2xx:
        raise BenchmarkError(
            f"{server.name} at c{connections}: {result.non_2xx} Non-2xx responses "
            f"of {result.requests}; see {server.name}.log in the scratch folder"
        )
    return result


def measure_all(
    servers: list[Server], model: Model, work: Path, duration: int
) -> dict[str, dict[int, LoadResult]]:
    """Start and check every server, then load them in turn at each concurrency.

    All servers stay up for the whole run and are loaded one at a time, concurrency by
    concurrency: a burst of load from elsewhere on the machine then falls on all of them
    rather than on whichever one happened to be measured at that moment. Each measurement
    follows a warm-up at the same concurrency, and concurrencies only go up: BentoML's
    batching optimiser learns its wait from recent traffic, and a c16 history makes it keep
    waiting ~50 ms per request at c1.
    """
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    bodies: dict[str, Path] = {}
    with contextlib.ExitStack() as stack:
        for server in servers:
            stack.enter_context(running(server, work))
            check_answers(server, model)
            bodies[server.name] = write_bodies(server, model, work)
        print(f"\neach run: {WARMUP_S} s warm-up, then {duration} s measured", flush=True)
        results: dict[str, dict[int, LoadResult]] = {server.name: {} for server in servers}
        for connections in CONCURRENCIES:
            for server in servers:
                run_wrk(server, bodies[server.name], script, connections, WARMUP_S)
                result = run_wrk(server, bodies[server.name], script, connections, duration)
                results[server.name][connections] = result
                print_result(server.name, connections, result)
    return results


def write_bodies(server: Server, model: Model, work: Path) -> Path:
    """The held-out tweets in this server's request shape, one JSON body a line."""
    bodies = work / f"bodies-{server.name}.jsonl"
    bodies.write_text("".join(json.dumps(server.body(t)) + "\n" for t in model.tweets))
    return bodies


def print_result(name: str, connections: int, result: LoadResult) -> None:
    errors = f", {result.socket_errors} socket errors" if result.socket_errors else ""
    print(
        f"[{name}] c{connections:<3} {result.rps:8.1f} req/s"
        f"  p50 {result.p50_ms:7.1f} ms  p99 {result.p99_ms:7.1f} ms{errors}",
        flush=True,
    )


# --- report ------------------------------------------------------------------------------------


def summary(results: dict[str, dict[int, LoadResult]]) -> dict[str, Any]:
    """Flat numbers for the JSON line: rps/p50/p99 per server and concurrency, and ratios."""
    out: dict[str, Any] = {}
    for name, by_c in results.items():
        for c, r in by_c.items():
            out[f"rps_{name}_c{c}"] = round(r.rps, 1)
            out[f"p50_ms_{name}_c{c}"] = round(r.p50_ms, 2)
            out[f"p99_ms_{name}_c{c}"] = round(r.p99_ms, 2)
            if r.socket_errors:
                out[f"socket_errors_{name}_c{c}"] = r.socket_errors
    for other in ("mlflow", "bentoml", "trivial"):
        if "loopline" not in results or other not in results:
            continue
        for c in CONCURRENCIES:
            ours, theirs = results["loopline"][c].rps, results[other][c].rps
            out[f"ratio_vs_{other}_c{c}"] = round(ours / theirs, 3) if theirs else None
    return out


def print_table(results: dict[str, dict[int, LoadResult]]) -> None:
    header = f"{'server':<10}" + "".join(
        f" | {'c' + str(c) + ' req/s':>11} {'p50 ms':>8} {'p99 ms':>8}" for c in CONCURRENCIES
    )
    print("\n" + header + "\n" + "-" * len(header))
    for name, by_c in results.items():
        cells = "".join(
            f" | {by_c[c].rps:>11.1f} {by_c[c].p50_ms:>8.1f} {by_c[c].p99_ms:>8.1f}"
            for c in CONCURRENCIES
        )
        print(f"{name:<10}{cells}")


def print_ratios(numbers: dict[str, Any]) -> None:
    """Loopline over each other server, with the issue's targets."""
    targets = {"mlflow": 8.0, "bentoml": 3.0, "trivial": 0.5}
    ratios = [k for k in numbers if k.startswith("ratio_vs_")]
    if ratios:
        print("\nloopline req/s over the other server's (target):")
    for key in ratios:
        other, c = key.removeprefix("ratio_vs_").rsplit("_c", 1)
        value, target = numbers[key], targets[other]
        judged = c != "1" and (other != "trivial" or c == "16")
        verdict = ("met" if value >= target else "MISSED") if judged else "info"
        print(f"  vs {other:<8} c{c:<3} {value:7.2f}x  (>= {target}x: {verdict})")
    if "p99_ms_loopline_c16" in numbers:
        p99 = numbers["p99_ms_loopline_c16"]
        print(f"  loopline p99 at c16 {p99:.1f} ms  (< 25 ms: {'met' if p99 < 25 else 'MISSED'})")


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default=",".join(SERVERS), help="comma-separated subset of: " + ",".join(SERVERS)
    )
    parser.add_argument(
        "--duration", type=int, default=12, help="seconds of load per server and concurrency"
    )
    parser.add_argument("--rows", type=int, default=40_000, help="training rows")
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
    return args


def machine_line() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    now = datetime.now().astimezone()
    return f"{now:%Y-%m-%d %H:%M:%S %Z}, {os.cpu_count()} cores, load average {load}"


def main(argv: list[str] | None = None) -> int:
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
    model = prepare_model(work, args.rows)
    bento_bin = ensure_bentoml_venv(work) if "bentoml" in args.servers else None
    servers = server_specs(model, args.servers, bento_bin)
    results = measure_all(servers, model, work, args.duration)
    # Only a successful run cleans up: after a failure the servers' logs stay for reading.
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    numbers = summary(results)
    print_table(results)
    print_ratios(numbers)
    ended = machine_line()
    print(f"\nend: {ended}; {args.duration} s per run, wrk -t{WRK_THREADS}, one worker per server")
    meta = {
        "duration_s": args.duration,
        "model_version": model.version,
        "start": started,
        "end": ended,
    }
    print(json.dumps({**numbers, **meta}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
