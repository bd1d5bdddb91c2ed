"""Drift detection: Loopline's drift report vs Evidently's DataDriftPreset vs a plain SciPy loop.

Data: a reference and a current frame of 1,000,000 rows x 30 columns (20 numeric, 10
categorical), generated with different seeds, so even unchanged columns are resampled. The
columns come in three groups:

- **shifted** (10, a good monitor flags them): big and subtle mean shifts, scale changes, a
  multiplicative (log-normal) shift, a shape change with the same mean and std, category mix
  changes, a brand-new category and a rare category whose rate rises by half (2% -> 3%);
- **tiny** (7, a good monitor does *not* flag them): shifts that are statistically
  significant at 1,000,000 rows but too small to matter: a mean +0.01 sd, log-normal values
  x1.01, a sd x1.02, a 0/1 flag's rate 30% -> 30.5%, category shares +-0.5 points (50% ->
  49.5% with 20% -> 20.5%; 7% -> 7.5%), and a missing rate 3% -> 3.5% (the SciPy p-values
  show the first six are significant; the loop drops missing values, so it cannot see the
  last, which a two-proportion test puts at p ~ 1e-89). The category shares moved are 7% or
  more: half a point on a category of 2% or less is a rate change of 1.25x or more, which
  counts as real here (``chargeback_rare_rate``, 2% -> 3%, is a shifted column);
- **resampled** (13): drawn again from the same distributions, in several shapes: heavy
  tails, discrete counts, hours of day, 2-, 200- and 1,000-value categoricals.

Every tool gets the same treatment:

- **Same inputs.** The two frames are written once to Parquet. Each tool runs in a fresh
  worker process of its own, one after another, and reads both files with pandas' string
  dtype (the default of pandas 3; ``future.infer_string`` in Evidently's pandas 2.3), so
  every tool gets the same float64 and Arrow-backed string columns (``--strings object``:
  Python-object strings for every tool instead). Every tool is told which columns are
  numeric and which categorical.
- **What the clock covers.** From the two frames in memory to a drift verdict per column.
  The worker's imports and reading the Parquet files happen before the clock, for every
  tool (both are printed). Loopline, *profile + compare* (the headline figure):
  ``build_profile(reference)`` + ``drift_report(profile, current)``. Loopline, *compare
  with a stored profile* (reported apart; what monitoring does, the profile having been
  built at training time): ``drift_report`` on the profile's JSON text, parsing included.
  Evidently (``DataDriftPreset()`` with its defaults): ``DataDefinition`` +
  ``Dataset.from_pandas`` for both frames + ``Report.run`` + ``result.dict()`` read for the
  per-column ``ValueDrift`` verdicts. SciPy: ``ks_2samp`` per numeric column and
  ``chi2_contingency`` per categorical column (missing values dropped), flagged at p < 0.05.
- **Warm-up and repeats.** One untimed warm-up run on the same data, then ``--repeats``
  timed runs (default 3); the median is reported and every time printed. The garbage
  collector runs before each run, outside the clock.
- **Cores.** Every worker is pinned to the same one core, with OMP/OPENBLAS/MKL/NUMEXPR
  threads set to 1 (``--all-cores``: every tool gets every core and no thread limits).
- **Scores.** Every tool's verdicts are scored the same way: shifted columns it missed,
  and false flags (on the tiny and resampled columns; the tiny ones also counted apart).

Evidently lives in ``.bench/evidently-venv`` (created here on first use: it needs
``pandas<3``). Then the same for 100,000 rows x the 20 numeric columns (the case in the
dependency notes).

    .venv/bin/python benchmarks/drift.py [--rows 1000000] [--small-rows 100000] [--repeats 3]

The last line is one JSON object for the large case: ``rows``, ``columns``, ``warmup``,
``repeats``, ``cores``, ``strings``; ``ours_s`` (profile + compare), ``ours_compare_s``
(stored profile), ``evidently_s``, ``scipy_s`` (medians); ``speedup_vs_evidently`` (profile
+ compare), ``speedup_vs_evidently_stored_profile``, ``speedup_vs_scipy``;
``missed_shifted_<tool>``, ``false_flags_<tool>`` and ``false_flags_tiny_<tool>`` for
``ours``, ``evidently`` and ``scipy``; ``times`` (every timed run); ``small_case`` (the same
figures for the numeric-only case) and ``machine`` (cores, load averages, versions).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _machine import load_average, machine_info, start_load

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".bench" / "evidently-venv"
EVIDENTLY_PYTHON = VENV / "bin" / "python"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
TOOLS = ("ours", "evidently", "scipy")
WORKER_TIMEOUT_S = 3600


# --------------------------------------------------------------------------- data
@dataclass
class Column:
    """One generated column: its kind, its group (shifted | tiny | resampled), and how."""

    name: str
    kind: str  # numeric | categorical
    group: str  # shifted: should be flagged; tiny, resampled: should not
    what: str
    draw: Callable[[Any, int, bool], Any]  # (rng, n, current) -> values

    @property
    def shifted(self) -> bool:
        """Whether a good monitor flags this column."""
        return self.group == "shifted"


def _cats(prefix: str, k: int) -> Any:
    import numpy as np

    return np.array([f"{prefix}{i}" for i in range(k)], dtype=object)


def _choice(values: Any, p: list[float] | Any) -> Callable[[Any, int], Any]:
    import numpy as np

    probs = np.asarray(p, dtype=float)
    probs = probs / probs.sum()
    return lambda rng, n: values[rng.choice(len(values), size=n, p=probs)]


def _zipf_probs(k: int, a: float) -> Any:
    import numpy as np

    w = 1.0 / np.arange(1, k + 1) ** a
    return w / w.sum()


def _with_missing(values: Any, rng: Any, rate: float) -> Any:
    import numpy as np

    out = values.astype(float if values.dtype.kind == "f" else object)
    out[rng.random(values.size) < rate] = np.nan if values.dtype.kind == "f" else None
    return out


def _bimodal(rng: Any, n: int) -> Any:
    # 0.5 N(-0.85, 0.527) + 0.5 N(0.85, 0.527): mean 0 and variance 1 like N(0, 1), two modes
    sign = rng.integers(0, 2, n) * 2 - 1
    return sign * 0.85 + rng.normal(0, (1 - 0.85**2) ** 0.5, n)


def columns() -> list[Column]:
    """The 30 columns: 10 shifted, 7 with a tiny (significant, irrelevant) shift, 13 resampled."""
    import numpy as np

    pay = _cats("pay_", 5)
    mix_big_ref = _choice(pay, [0.40, 0.25, 0.15, 0.12, 0.08])
    mix_big_cur = _choice(pay, [0.20, 0.25, 0.15, 0.12, 0.28])
    dev = _cats("dev_", 8)
    mix_sub_ref = _choice(dev, [0.25, 0.20, 0.15, 0.12, 0.10, 0.08, 0.06, 0.04])
    mix_sub_cur = _choice(dev, [0.19, 0.20, 0.15, 0.12, 0.10, 0.08, 0.06, 0.10])
    region = _cats("region_", 10)
    region_p = _zipf_probs(10, 0.8)
    region_new = np.append(region, "region_new")
    flag = np.array(["no", "yes"], dtype=object)
    ch2 = _cats("ch_", 2)
    ch5 = _cats("tier_", 5)
    ch20 = _cats("state_", 20)
    ch200 = _cats("merchant_", 200)
    ch1000 = _cats("sku_", 1000)
    lang = _cats("lang_", 4)
    p20, p200, p1000 = _zipf_probs(20, 0.7), _zipf_probs(200, 1.0), _zipf_probs(1000, 1.1)

    def same(draw: Callable[[Any, int], Any]) -> Callable[[Any, int, bool], Any]:
        return lambda rng, n, cur: draw(rng, n)

    return [
        # ---- shifted: a good monitor flags these
        Column("amount_mean_big", "numeric", "shifted", "mean +0.5 sd",
               lambda rng, n, cur: rng.normal(0.5 if cur else 0.0, 1.0, n)),
        Column("latency_mean_subtle", "numeric", "shifted", "mean +0.15 sd",
               lambda rng, n, cur: rng.normal(10.3 if cur else 10.0, 2.0, n)),
        Column("score_scale_big", "numeric", "shifted", "sd x1.5",
               lambda rng, n, cur: rng.normal(0.0, 1.5 if cur else 1.0, n)),
        Column("balance_scale_subtle", "numeric", "shifted", "sd x1.25",
               lambda rng, n, cur: rng.normal(5.0, 1.25 if cur else 1.0, n)),
        Column("basket_lognormal_subtle", "numeric", "shifted", "values x1.1 (log-mean +0.1)",
               lambda rng, n, cur: rng.lognormal(3.1 if cur else 3.0, 0.5, n)),
        Column("signal_shape", "numeric", "shifted", "unimodal -> bimodal, same mean, sd",
               lambda rng, n, cur: _bimodal(rng, n) if cur else rng.normal(0.0, 1.0, n)),
        Column("payment_mix_big", "categorical", "shifted", "top category 40% -> 20%",
               lambda rng, n, cur: (mix_big_cur if cur else mix_big_ref)(rng, n)),
        Column("device_mix_subtle", "categorical", "shifted", "6 points move between 2 of 8",
               lambda rng, n, cur: (mix_sub_cur if cur else mix_sub_ref)(rng, n)),
        Column("region_new_category", "categorical", "shifted", "5% of rows a new category",
               lambda rng, n, cur: (
                   _choice(region_new, [*(region_p * 0.95), 0.05])(rng, n)
                   if cur else _choice(region, region_p)(rng, n))),
        Column("chargeback_rare_rate", "categorical", "shifted", "'yes' 2% -> 3%",
               lambda rng, n, cur: _choice(flag, [0.97, 0.03] if cur else [0.98, 0.02])(rng, n)),
        # ---- tiny: significant at 1,000,000 rows, too small to matter; not to be flagged
        Column("z_score", "numeric", "tiny", "normal, mean +0.01 sd",
               lambda rng, n, cur: rng.normal(0.01 if cur else 0.0, 1.0, n)),
        Column("income", "numeric", "tiny", "log-normal, values x1.01",
               lambda rng, n, cur: rng.lognormal(10.01 if cur else 10.0, 1.0, n)),
        Column("temperature", "numeric", "tiny", "normal, 5% missing, sd x1.02",
               lambda rng, n, cur: _with_missing(rng.normal(20, 5.1 if cur else 5.0, n), rng,
                                                 0.05)),
        Column("is_mobile", "numeric", "tiny", "0/1 flag, 30% -> 30.5%",
               lambda rng, n, cur: (rng.random(n) < (0.305 if cur else 0.30)).astype(float)),
        Column("tier", "categorical", "tiny", "5 values, 50/20% -> 49.5/20.5%",
               lambda rng, n, cur: _choice(ch5, [0.495, 0.205, 0.15, 0.1, 0.05] if cur
                                           else [0.5, 0.2, 0.15, 0.1, 0.05])(rng, n)),
        Column("lang", "categorical", "tiny", "4 values, 7% -> 7.5%",
               lambda rng, n, cur: _choice(lang, [0.695, 0.2, 0.075, 0.03] if cur
                                           else [0.7, 0.2, 0.07, 0.03])(rng, n)),
        Column("state", "categorical", "tiny", "20 values, missing 3% -> 3.5%",
               lambda rng, n, cur: _with_missing(_choice(ch20, p20)(rng, n), rng,
                                                 0.035 if cur else 0.03)),
        # ---- resampled: same distribution, new sample
        Column("age", "numeric", "resampled", "normal", same(lambda rng, n: rng.normal(40, 12, n))),
        Column("wait_s", "numeric", "resampled", "exponential",
               same(lambda rng, n: rng.exponential(3.0, n))),
        Column("ratio", "numeric", "resampled", "uniform", same(lambda rng, n: rng.random(n))),
        Column("visits", "numeric", "resampled", "Poisson counts",
               same(lambda rng, n: rng.poisson(2.0, n).astype(float))),
        Column("hour", "numeric", "resampled", "hour of day 0..23",
               same(lambda rng, n: rng.integers(0, 24, n).astype(float))),
        Column("returns", "numeric", "resampled", "Student t (3 dof)",
               same(lambda rng, n: rng.standard_t(3, n))),
        Column("quality", "numeric", "resampled", "beta(2, 5)",
               same(lambda rng, n: rng.beta(2, 5, n))),
        Column("discount", "numeric", "resampled", "mostly 0, gamma tail",
               same(lambda rng, n: np.where(rng.random(n) < 0.7, 0.0, rng.gamma(2, 5, n)))),
        Column("distance_km", "numeric", "resampled", "gamma",
               same(lambda rng, n: rng.gamma(1.5, 4.0, n))),
        Column("tenure_m", "numeric", "resampled", "integers 0..120",
               same(lambda rng, n: rng.integers(0, 121, n).astype(float))),
        Column("channel", "categorical", "resampled", "2 values",
               same(_choice(ch2, [0.6, 0.4]))),
        Column("merchant", "categorical", "resampled", "200 values (Zipf)",
               same(_choice(ch200, p200))),
        Column("sku", "categorical", "resampled", "1,000 values (Zipf)",
               same(_choice(ch1000, p1000))),
    ]  # fmt: skip


def make_frames(n: int, cols: list[Column]) -> tuple[Any, Any]:
    """Reference and current frames (different seeds: even unshifted columns are resampled)."""
    import numpy as np
    import pandas as pd

    frames = []
    for seed, current in ((1, False), (2, True)):
        rng = np.random.default_rng(seed)
        frames.append(pd.DataFrame({c.name: c.draw(rng, n, current) for c in cols}))
    return frames[0], frames[1]


# --------------------------------------------------------------------------- workers
# Each tool runs in a worker process of its own (ours and SciPy with this interpreter,
# Evidently with its venv's), started the same way: pinned to one core (unless
# --all-cores), imports and Parquet reading first, then one warm-up and the timed repeats.
# The worker prints one JSON line: its timings, the flagged columns and a per-column note.


def worker(tool: str, folder: Path, repeats: int, strings: str, all_cores: bool) -> None:
    """Run one tool on the Parquet frames in ``folder``; JSON result on stdout."""
    if not all_cores:  # before numpy is imported: its thread pools size themselves then
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    start = time.perf_counter()
    import pandas as pd

    if int(pd.__version__.split(".")[0]) < 3:
        pd.options.future.infer_string = True  # the string dtype pandas 3 reads by default
    if tool == "ours":
        from loopline.monitor import build_profile, drift_report
    elif tool == "evidently":
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    else:
        import numpy as np
        from scipy.stats import chi2_contingency, ks_2samp
    import_s = time.perf_counter() - start

    start = time.perf_counter()
    kinds: dict[str, str] = json.loads((folder / "kinds.json").read_text())
    ref = pd.read_parquet(folder / "ref.parquet")
    cur = pd.read_parquet(folder / "cur.parquet")
    categorical = [c for c, k in kinds.items() if k == "categorical"]
    numeric = [c for c, k in kinds.items() if k == "numeric"]
    if strings == "object":
        for frame in (ref, cur):
            for name in categorical:
                frame[name] = frame[name].astype(object)
    load_s = time.perf_counter() - start
    dtypes = sorted({str(ref[c].dtype) for c in categorical})
    out: dict[str, Any] = {"tool": tool, "import_s": import_s, "load_s": load_s}
    out["string_dtypes"] = dtypes

    if tool == "ours":

        def profile_and_compare() -> Any:
            profile = build_profile(ref, numeric=numeric, categorical=categorical)
            report = drift_report(profile, cur)
            return report, report.drifted_features

        report, flagged = _timed(profile_and_compare, repeats, out, "")
        profile_json = json.dumps(
            build_profile(ref, numeric=numeric, categorical=categorical).to_dict()
        )
        out["profile_kb"] = len(profile_json) / 1024

        def compare_stored() -> Any:
            report = drift_report(json.loads(profile_json), cur)
            return report, report.drifted_features

        _, stored_flagged = _timed(compare_stored, repeats, out, "compare_")
        assert stored_flagged == flagged, "the stored profile gave other verdicts"
        notes = {c: _ours_note(report[c]) for c in kinds}

    elif tool == "evidently":

        def evidently_once() -> Any:
            definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
            ref_ds = Dataset.from_pandas(ref, data_definition=definition)
            cur_ds = Dataset.from_pandas(cur, data_definition=definition)
            result = Report([DataDriftPreset()]).run(current_data=cur_ds, reference_data=ref_ds)
            verdicts = _evidently_verdicts(result.dict())
            return verdicts, [c for c, v in verdicts.items() if v["drifted"]]

        verdicts, flagged = _timed(evidently_once, repeats, out, "")
        notes = {c: _evidently_note(verdicts[c]) for c in verdicts}

    else:

        def scipy_once() -> Any:
            p_values = {}
            for name, kind in kinds.items():
                a, b = ref[name].dropna(), cur[name].dropna()
                if kind == "numeric":
                    p_values[name] = float(ks_2samp(a.to_numpy(), b.to_numpy()).pvalue)
                else:
                    table = pd.concat([a.value_counts(), b.value_counts()], axis=1).fillna(0)
                    p_values[name] = float(chi2_contingency(table.to_numpy(np.float64).T)[1])
            return p_values, [c for c, p in p_values.items() if p < 0.05]

        p_values, flagged = _timed(scipy_once, repeats, out, "")
        notes = {c: f"p={p:.2g}" for c, p in p_values.items()}

    out["flagged"] = list(flagged)
    out["notes"] = notes
    print(json.dumps(out))


def _timed(fn: Callable[[], Any], repeats: int, out: dict[str, Any], prefix: str) -> Any:
    """One untimed warm-up, then ``repeats`` timed runs; records the times in ``out``."""
    gc.collect()
    start = time.perf_counter()
    fn()
    out[f"{prefix}warmup_s"] = time.perf_counter() - start
    times, result = [], None
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    out[f"{prefix}times"] = times
    return result


def _ours_note(r: Any) -> str:
    if r.kind == "numeric":
        return f"W={r.wasserstein:.3f} PSI={r.psi:.3f}"
    ratio = r.details.get("max_rate_ratio") or 1.0
    note = f"JS={r.js_distance:.3f} x{ratio:.2f}"
    change = 0.0 if r.missing_rate is None else r.missing_rate - r.missing_rate_reference
    if abs(change) >= 0.002:
        note += f" NA{change * 100:+.1f}pt"
    return note


def _evidently_verdicts(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-column verdicts of a DataDriftPreset result (its ValueDrift metrics)."""
    verdicts = {}
    for metric in payload["metrics"]:
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        method, value = str(config["method"]), float(metric["value"])
        threshold = float(config["threshold"])
        # p-value tests flag drift below the threshold, distances at or above it
        drifted = value < threshold if "p_value" in method else value >= threshold
        verdicts[config["column"]] = {"method": method, "value": value, "drifted": drifted}
    return verdicts


_METHOD_SHORT = {"Wasserstein distance (normed)": "W", "Jensen-Shannon distance": "JS"}


def _evidently_note(verdict: dict[str, Any]) -> str:
    short = _METHOD_SHORT.get(verdict["method"], verdict["method"][:10])
    return f"{short}={verdict['value']:.3g}"


# --------------------------------------------------------------------------- the parent side
def ensure_evidently_venv() -> tuple[Path | None, str]:
    """The Evidently venv's python, creating the venv if needed; (None, why) when that fails."""
    python = EVIDENTLY_PYTHON
    if python.exists() and _run([str(python), "-c", "import evidently"]).returncode == 0:
        return python, "cached"
    print(f"creating {VENV.relative_to(REPO)} (one-time: evidently + pandas<3, ~270 MB)")
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        # evidently 0.7 does not import with pandas 3 (see docs/notes: dependencies)
        [str(python), "-m", "pip", "install", "-q", "evidently", "pandas<3", "numpy", "scipy",
         "pyarrow"],
    ]  # fmt: skip
    for step in steps:
        done = _run(step)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            return None, f"`{' '.join(step[2:])}` failed: " + " | ".join(tail)
    return python, "created"


def _run(
    cmd: list[str], timeout: float = 1800, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(cmd, 1, "", str(exc))


def run_worker(
    tool: str, python: Path, folder: Path, args: argparse.Namespace
) -> dict[str, Any] | None:
    """One tool's worker process; its JSON result, or None (and why, printed) on failure."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    if not args.all_cores:
        env.update(dict.fromkeys(THREAD_VARS, "1"))
    cmd = [str(python), __file__, "--worker", tool, str(folder), str(args.repeats), args.strings]
    cmd += ["all-cores" if args.all_cores else "one-core"]
    load = load_average()
    start = time.perf_counter()
    done = _run(cmd, timeout=WORKER_TIMEOUT_S, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        print(f"  {tool:9} FAILED after {wall:.0f} s: {' | '.join(tail)}")
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_start"] = load
    print(
        f"  {tool:9} done in {wall:5.1f} s wall (load average at its start {load[0]:.2f}; "
        f"strings {'/'.join(result['string_dtypes']) or '-'})"
    )
    return result


def compare(n: int, cols: list[Column], args: argparse.Namespace) -> dict[str, Any]:
    """Generate the frames, run every tool's worker, print the table, timings and scores."""
    print(f"\n=== {n:,} rows x {len(cols)} columns ===")
    kinds = {c.name: c.kind for c in cols}
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        ref, cur = make_frames(n, cols)
        ref.to_parquet(folder / "ref.parquet")
        cur.to_parquet(folder / "cur.parquet")
        del ref, cur
        (folder / "kinds.json").write_text(json.dumps(kinds))
        print(f"generated and written to Parquet in {time.perf_counter() - start:.1f} s")
        results: dict[str, dict[str, Any] | None] = {}
        for tool in TOOLS:
            if tool not in args.tools:
                results[tool] = None
                continue
            if tool == "evidently":
                python, how = ensure_evidently_venv()
                if python is None:
                    print(f"  evidently unavailable: {how}")
                    results[tool] = None
                    continue
            else:
                python = Path(sys.executable)
            results[tool] = run_worker(tool, python, folder, args)
    _print_table(cols, results)
    scores = _print_scores(cols, results)
    figures = _print_timings(results, args.repeats)
    return {"rows": n, "columns": len(cols), **figures, **scores}


def _print_table(cols: list[Column], results: dict[str, dict[str, Any] | None]) -> None:
    header = (
        f"{'column':24} {'kind':4} {'group':9} {'change':35} "
        + " ".join(f"{t:30}" for t in TOOLS).rstrip()
    )
    print()
    print(header)
    print("-" * len(header))
    for c in cols:
        cells = []
        for tool in TOOLS:
            result = results[tool]
            if result is None:
                cells.append(f"{'n/a':30}")
                continue
            flagged = c.name in result["flagged"]
            verdict = "DRIFT" if flagged else "ok"
            if flagged != c.shifted:
                verdict += "!"  # a wrong verdict: missed shift or false flag
            cells.append(f"{verdict:6} {result['notes'].get(c.name, '-'):23}")
        print(f"{c.name:24} {c.kind[:3]:4} {c.group:9} {c.what:35} " + " ".join(cells).rstrip())
    print("(! = wrong verdict: a shifted column not flagged, or a tiny/resampled one flagged)")


def _print_scores(
    cols: list[Column], results: dict[str, dict[str, Any] | None]
) -> dict[str, int | None]:
    shifted = {c.name for c in cols if c.shifted}
    tiny = {c.name for c in cols if c.group == "tiny"}
    scores: dict[str, int | None] = {}
    print()
    for tool in TOOLS:
        result = results[tool]
        if result is None:
            scores.update(dict.fromkeys(_score_keys(tool)))
            print(f"{tool:10} not run")
            continue
        flagged = set(result["flagged"])
        missed, false = sorted(shifted - flagged), sorted(flagged - shifted)
        false_tiny = [c for c in false if c in tiny]
        scores[f"missed_shifted_{tool}"] = len(missed)
        scores[f"false_flags_{tool}"] = len(false)
        scores[f"false_flags_tiny_{tool}"] = len(false_tiny)
        print(
            f"{tool:10} flagged {len(flagged):2}; missed {len(missed)} of {len(shifted)} shifted "
            f"{missed}; false flags {len(false)} ({len(false_tiny)} of {len(tiny)} tiny): {false}"
        )
    return scores


def _score_keys(tool: str) -> list[str]:
    return [f"missed_shifted_{tool}", f"false_flags_{tool}", f"false_flags_tiny_{tool}"]


def _print_timings(results: dict[str, dict[str, Any] | None], repeats: int) -> dict[str, Any]:
    def median(result: dict[str, Any] | None, prefix: str = "") -> float | None:
        return statistics.median(result[f"{prefix}times"]) if result else None

    ours, evidently, scipy_result = results["ours"], results["evidently"], results["scipy"]
    rows = [
        ("ours", "profile + compare", ours, ""),
        ("ours", "compare, stored profile", ours, "compare_"),
        ("evidently", "DataDriftPreset", evidently, ""),
        ("scipy", "ks_2samp / chi2 loop", scipy_result, ""),
    ]
    print(f"\ntimes: one warm-up, then the median of {repeats} (from two frames in memory)")
    for tool, what, result, prefix in rows:
        if result is None:
            print(f"{tool:10} {what:24} not run")
            continue
        times = ", ".join(f"{t:.3f}" for t in result[f"{prefix}times"])
        print(
            f"{tool:10} {what:24} {median(result, prefix):8.3f} s  "
            f"(runs {times}; warm-up {result[f'{prefix}warmup_s']:.3f})"
        )
    outside = "; ".join(
        f"{tool} import {r['import_s']:.1f} s + read {r['load_s']:.1f} s"
        for tool, r in results.items()
        if r is not None
    )
    print(f"outside the clock, for every tool: {outside}")
    if ours:
        print(f"ours: the stored profile is {ours['profile_kb']:.0f} KB of JSON")

    ours_s, compare_s = median(ours), median(ours, "compare_")
    ev_s, scipy_s = median(evidently), median(scipy_result)

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 1) if a is not None and b else None

    figures = {
        "ours_s": _round(ours_s),
        "ours_compare_s": _round(compare_s),
        "evidently_s": _round(ev_s),
        "scipy_s": _round(scipy_s),
        "speedup_vs_evidently": ratio(ev_s, ours_s),
        "speedup_vs_evidently_stored_profile": ratio(ev_s, compare_s),
        "speedup_vs_scipy": ratio(scipy_s, ours_s),
        "times": {
            name: [round(t, 4) for t in result[f"{prefix}times"]] if result else None
            for name, result, prefix in (
                ("ours", ours, ""),
                ("ours_compare", ours, "compare_"),
                ("evidently", evidently, ""),
                ("scipy", scipy_result, ""),
            )
        },
    }
    if figures["speedup_vs_evidently"] is not None:
        print(
            f"speed-up vs Evidently: {figures['speedup_vs_evidently']}x profile + compare, "
            f"{figures['speedup_vs_evidently_stored_profile']}x with a stored profile"
        )
    if figures["speedup_vs_scipy"] is not None:
        print(f"speed-up vs SciPy: {figures['speedup_vs_scipy']}x profile + compare")
    return figures


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main() -> None:
    load_start = start_load()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--small-rows", type=int, default=100_000, help="the numeric-only case; 0 skips it"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per tool, after one warm-up"
    )
    parser.add_argument(
        "--tools",
        type=lambda text: [t for t in text.split(",") if t],
        default=list(TOOLS),
        help="comma-separated subset of ours,evidently,scipy (default: all three)",
    )
    parser.add_argument(
        "--strings",
        choices=("str", "object"),
        default="str",
        help="string columns as pandas' Arrow-backed str dtype (default) or Python objects",
    )
    parser.add_argument(
        "--all-cores",
        action="store_true",
        help="let every tool use every core (default: every tool pinned to one core)",
    )
    args = parser.parse_args()
    if unknown := set(args.tools) - set(TOOLS):
        parser.error(f"unknown tools {sorted(unknown)}; choose among {', '.join(TOOLS)}")
    cols = columns()
    print(
        f"every tool: fresh worker process, {'all cores' if args.all_cores else 'one core'}, "
        f"{args.strings} strings, 1 warm-up + median of {args.repeats}"
    )
    large = compare(args.rows, cols, args)
    small = None
    if args.small_rows > 0:
        small = compare(args.small_rows, [c for c in cols if c.kind == "numeric"], args)
        small.pop("times")
    info = machine_info(
        load_start,
        ["loopline", "numpy", "pandas", "scipy", "pyarrow"],
        venvs={EVIDENTLY_PYTHON: ["evidently"]} if EVIDENTLY_PYTHON.exists() else None,
    )
    if EVIDENTLY_PYTHON.exists():
        # The same libraries in Evidently's venv (pandas<3 there), under their own names.
        # (Asked through machine_info's venvs: versions() takes a venv's python, a symlink
        # to the same interpreter, for this one and would answer for this environment.)
        libs = ["numpy", "pandas", "scipy", "pyarrow"]
        there = machine_info(load_start, venvs={EVIDENTLY_PYTHON: libs})["versions"]
        info["versions"].update({f"{k} ({VENV.name})": there.get(k) for k in libs})
    print(f"\nload average at start {info['load_start']}, at end {info['load_end']}")
    summary = {
        **large,
        "warmup": 1,
        "repeats": args.repeats,
        "cores": "all" if args.all_cores else "one",
        "strings": args.strings,
        "small_case": small,
        "machine": info,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--worker":
        _, _, tool_name, folder_arg, repeats_arg, strings_arg, cores_arg = sys.argv
        worker(tool_name, Path(folder_arg), int(repeats_arg), strings_arg, cores_arg == "all-cores")
    else:
        main()
