"""Drift detection: Loopline's drift report vs Evidently's DataDriftPreset vs a plain SciPy loop.

One run builds a reference and a current frame of 1,000,000 rows x 30 columns (20 numeric,
10 categorical). 10 columns carry a known shift: big and subtle mean shifts, scale changes, a
multiplicative (log-normal) shift, a shape change with the same mean and std, category mix
changes, a brand-new category and a rare category whose rate rises by half. The other 20 are
drawn again from the same distributions (different seed), in several shapes: heavy tails,
discrete counts, 0/1 flags, hours of day, 200- and 1,000-value categoricals, missing values.

The three contenders see the same data:

- **Loopline**: ``drift_report(profile, current)`` with the profile built beforehand (at
  training time in real use; its build time is printed but not counted), pinned to one core
  with ``os.sched_setaffinity`` and OMP/OPENBLAS/MKL threads set to 1; median of 3 runs;
- **Evidently** ``DataDriftPreset`` (defaults), installed only in ``.bench/evidently-venv``
  (created here on first use; it needs ``pandas<3``), run in a subprocess that reads the
  frames from Parquet and times ``Dataset.from_pandas`` + ``Report.run`` (its import is timed
  separately); it may use every core;
- **SciPy**: ``ks_2samp`` per numeric column and ``chi2_contingency`` per categorical column,
  flagged at p < 0.05, pinned to one core like ours.

Then the same for 100,000 rows x the 20 numeric columns (the case in the dependency notes).

    .venv/bin/python benchmarks/drift.py [--rows 1000000]

The last line is one JSON object for the 1,000,000-row case:
{"ours_s", "evidently_s", "scipy_s", "speedup_vs_evidently", "missed_shifted", "false_flags"}
"""

from __future__ import annotations

import argparse
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

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VENV = REPO / ".bench" / "evidently-venv"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
OURS_REPS = 3


# --------------------------------------------------------------------------- data
@dataclass
class Column:
    """One generated column: its kind, whether the current frame is shifted, and how."""

    name: str
    kind: str  # numeric | categorical
    shifted: bool
    what: str
    draw: Callable[[Any, int, bool], Any]  # (rng, n, current) -> values


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
    """The 30 columns: 10 shifted (first), 20 merely resampled."""
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
    p20, p200, p1000 = _zipf_probs(20, 0.7), _zipf_probs(200, 1.0), _zipf_probs(1000, 1.1)

    def same(draw: Callable[[Any, int], Any]) -> Callable[[Any, int, bool], Any]:
        return lambda rng, n, cur: draw(rng, n)

    return [
        # ---- shifted
        Column("amount_mean_big", "numeric", True, "mean +0.5 sd",
               lambda rng, n, cur: rng.normal(0.5 if cur else 0.0, 1.0, n)),
        Column("latency_mean_subtle", "numeric", True, "mean +0.15 sd",
               lambda rng, n, cur: rng.normal(10.3 if cur else 10.0, 2.0, n)),
        Column("score_scale_big", "numeric", True, "sd x1.5",
               lambda rng, n, cur: rng.normal(0.0, 1.5 if cur else 1.0, n)),
        Column("balance_scale_subtle", "numeric", True, "sd x1.25",
               lambda rng, n, cur: rng.normal(5.0, 1.25 if cur else 1.0, n)),
        Column("basket_lognormal_subtle", "numeric", True, "values x1.1 (log-mean +0.1)",
               lambda rng, n, cur: rng.lognormal(3.1 if cur else 3.0, 0.5, n)),
        Column("signal_shape", "numeric", True, "unimodal -> bimodal, same mean and sd",
               lambda rng, n, cur: _bimodal(rng, n) if cur else rng.normal(0.0, 1.0, n)),
        Column("payment_mix_big", "categorical", True, "top category 40% -> 20%",
               lambda rng, n, cur: (mix_big_cur if cur else mix_big_ref)(rng, n)),
        Column("device_mix_subtle", "categorical", True, "6 points move between 2 of 8",
               lambda rng, n, cur: (mix_sub_cur if cur else mix_sub_ref)(rng, n)),
        Column("region_new_category", "categorical", True, "5% of rows a new category",
               lambda rng, n, cur: (
                   _choice(region_new, [*(region_p * 0.95), 0.05])(rng, n)
                   if cur else _choice(region, region_p)(rng, n))),
        Column("chargeback_rare_rate", "categorical", True, "'yes' 2% -> 3%",
               lambda rng, n, cur: _choice(flag, [0.97, 0.03] if cur else [0.98, 0.02])(rng, n)),
        # ---- unshifted (resampled)
        Column("age", "numeric", False, "normal", same(lambda rng, n: rng.normal(40, 12, n))),
        Column("income", "numeric", False, "log-normal, heavy tail",
               same(lambda rng, n: rng.lognormal(10, 1.0, n))),
        Column("wait_s", "numeric", False, "exponential",
               same(lambda rng, n: rng.exponential(3.0, n))),
        Column("ratio", "numeric", False, "uniform", same(lambda rng, n: rng.random(n))),
        Column("visits", "numeric", False, "Poisson counts",
               same(lambda rng, n: rng.poisson(2.0, n).astype(float))),
        Column("is_mobile", "numeric", False, "0/1 flag",
               same(lambda rng, n: (rng.random(n) < 0.3).astype(float))),
        Column("hour", "numeric", False, "hour of day 0..23",
               same(lambda rng, n: rng.integers(0, 24, n).astype(float))),
        Column("returns", "numeric", False, "Student t (3 dof)",
               same(lambda rng, n: rng.standard_t(3, n))),
        Column("quality", "numeric", False, "beta(2, 5)", same(lambda rng, n: rng.beta(2, 5, n))),
        Column("temperature", "numeric", False, "normal, 5% missing",
               same(lambda rng, n: _with_missing(rng.normal(20, 5, n), rng, 0.05))),
        Column("discount", "numeric", False, "mostly 0, gamma tail",
               same(lambda rng, n: np.where(rng.random(n) < 0.7, 0.0, rng.gamma(2, 5, n)))),
        Column("distance_km", "numeric", False, "gamma",
               same(lambda rng, n: rng.gamma(1.5, 4.0, n))),
        Column("tenure_m", "numeric", False, "integers 0..120",
               same(lambda rng, n: rng.integers(0, 121, n).astype(float))),
        Column("z_score", "numeric", False, "normal",
               same(lambda rng, n: rng.normal(0, 1, n))),
        Column("channel", "categorical", False, "2 values", same(_choice(ch2, [0.6, 0.4]))),
        Column("tier", "categorical", False, "5 values",
               same(_choice(ch5, [0.5, 0.2, 0.15, 0.1, 0.05]))),
        Column("state", "categorical", False, "20 values, 3% missing",
               same(lambda rng, n: _with_missing(_choice(ch20, p20)(rng, n), rng, 0.03))),
        Column("merchant", "categorical", False, "200 values (Zipf)", same(_choice(ch200, p200))),
        Column("sku", "categorical", False, "1,000 values (Zipf)", same(_choice(ch1000, p1000))),
        Column("lang", "categorical", False, "4 values",
               same(_choice(_cats("lang_", 4), [0.7, 0.2, 0.07, 0.03]))),
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


# --------------------------------------------------------------------------- Evidently side
def evidently_worker(folder: Path) -> None:
    """Runs inside the Evidently venv: DataDriftPreset on the Parquet frames, JSON on stdout."""
    start = time.perf_counter()
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    import_s = time.perf_counter() - start
    import pandas as pd

    kinds = json.loads((folder / "kinds.json").read_text())
    ref = pd.read_parquet(folder / "ref.parquet")
    cur = pd.read_parquet(folder / "cur.parquet")
    start = time.perf_counter()
    definition = DataDefinition(
        numerical_columns=[c for c, k in kinds.items() if k == "numeric"],
        categorical_columns=[c for c, k in kinds.items() if k == "categorical"],
    )
    ref_ds = Dataset.from_pandas(ref, data_definition=definition)
    cur_ds = Dataset.from_pandas(cur, data_definition=definition)
    result = Report([DataDriftPreset()]).run(current_data=cur_ds, reference_data=ref_ds)
    payload = result.dict()
    run_s = time.perf_counter() - start
    flagged, scores = [], {}
    for metric in payload["metrics"]:
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith("ValueDrift"):
            continue
        column, method = config["column"], str(config["method"])
        value, threshold = float(metric["value"]), float(config["threshold"])
        # p-value tests drift below the threshold, distances at or above it
        drifted = value < threshold if "p_value" in method else value >= threshold
        scores[column] = {"method": method, "value": value, "drifted": drifted}
        if drifted:
            flagged.append(column)
    print(json.dumps({"import_s": import_s, "run_s": run_s, "flagged": flagged, "scores": scores}))


def ensure_evidently_venv() -> tuple[Path | None, str]:
    """The Evidently venv's python, creating the venv if needed; (None, why) when that fails."""
    python = VENV / "bin" / "python"
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


def run_evidently(ref: Any, cur: Any, kinds: dict[str, str]) -> dict[str, Any] | None:
    """DataDriftPreset in its venv on the same frames; None (and why, printed) on failure."""
    python, how = ensure_evidently_venv()
    if python is None:
        print(f"Evidently unavailable: {how}")
        return None
    # Evidently gets the machine as it is: all cores, no thread limits.
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ref.to_parquet(folder / "ref.parquet")
        cur.to_parquet(folder / "cur.parquet")
        (folder / "kinds.json").write_text(json.dumps(kinds))
        done = _run([str(python), __file__, "--evidently-worker", str(folder)], env=env)
    if done.returncode != 0:
        print(f"Evidently run failed: {(done.stderr or done.stdout).strip().splitlines()[-3:]}")
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["venv"] = how
    return result


# --------------------------------------------------------------------------- our side / SciPy
def pin_one_core() -> set[int]:
    """Pin this process to one core; returns the previous affinity to restore later."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    return before


def run_ours(ref: Any, cur: Any, kinds: dict[str, str]) -> dict[str, Any]:
    """Build the profile (not timed as monitoring), then time the drift report on one core."""
    from loopline.monitor import build_profile, drift_report

    start = time.perf_counter()
    profile = build_profile(
        ref,
        numeric=[c for c, k in kinds.items() if k == "numeric"],
        categorical=[c for c, k in kinds.items() if k == "categorical"],
    )
    build_s = time.perf_counter() - start
    profile_kb = len(json.dumps(profile.to_dict())) / 1024
    before = pin_one_core()
    try:
        drift_report(profile, cur.iloc[:1000])  # warm the lazy imports (scipy.special)
        times, report = [], None
        for _ in range(OURS_REPS):
            start = time.perf_counter()
            report = drift_report(profile, cur)
            times.append(time.perf_counter() - start)
    finally:
        os.sched_setaffinity(0, before)
    assert report is not None
    return {
        "seconds": statistics.median(times),
        "times": times,
        "build_s": build_s,
        "profile_kb": profile_kb,
        "flagged": report.drifted_features,
        "report": report,
    }


def run_scipy(ref: Any, cur: Any, kinds: dict[str, str]) -> dict[str, Any]:
    """ks_2samp / chi2_contingency per column at p < 0.05, on one core."""
    import numpy as np
    import pandas as pd

    start = time.perf_counter()
    from scipy.stats import chi2_contingency, ks_2samp

    import_s = time.perf_counter() - start
    before = pin_one_core()
    try:
        start = time.perf_counter()
        p_values = {}
        for name, kind in kinds.items():
            a, b = ref[name].dropna(), cur[name].dropna()
            if kind == "numeric":
                p_values[name] = float(ks_2samp(a.to_numpy(), b.to_numpy()).pvalue)
            else:
                table = pd.concat([a.value_counts(), b.value_counts()], axis=1).fillna(0)
                p_values[name] = float(chi2_contingency(table.to_numpy(dtype=np.float64).T)[1])
        seconds = time.perf_counter() - start
    finally:
        os.sched_setaffinity(0, before)
    flagged = [c for c, p in p_values.items() if p < 0.05]
    return {"seconds": seconds, "import_s": import_s, "flagged": flagged, "p_values": p_values}


# --------------------------------------------------------------------------- reporting
def compare(n: int, cols: list[Column]) -> dict[str, Any]:
    """Generate the frames, run all three, print the per-column table and the timings."""
    print(f"\n=== {n:,} rows x {len(cols)} columns ===")
    start = time.perf_counter()
    ref, cur = make_frames(n, cols)
    print(f"generated in {time.perf_counter() - start:.1f} s")
    kinds = {c.name: c.kind for c in cols}
    ours = run_ours(ref, cur, kinds)
    scipy_result = run_scipy(ref, cur, kinds)
    evidently = run_evidently(ref, cur, kinds)

    shifted = {c.name for c in cols if c.shifted}
    report = ours["report"]
    header = f"{'column':26} {'kind':11} {'shift':38} {'ours':24} {'evidently':18} {'scipy p':>9}"
    print(header)
    print("-" * len(header))
    for c in cols:
        r = report[c.name]
        effect = _main_effect(r)
        ev = "n/a"
        if evidently is not None:
            score = evidently["scores"].get(c.name, {})
            verdict = "DRIFT" if score.get("drifted") else "ok"
            ev = f"{verdict} {score.get('value', float('nan')):.3f}"
        p = scipy_result["p_values"][c.name]
        print(
            f"{c.name:26} {c.kind:11} {(c.what if c.shifted else '-- ' + c.what):38} "
            f"{('DRIFT ' if r.drifted else 'ok    ') + effect:24} {ev:18} "
            f"{p:9.2g}{' *' if p < 0.05 else ''}"
        )
    print()
    for name, flagged in (
        ("ours", set(ours["flagged"])),
        ("evidently", set(evidently["flagged"]) if evidently else None),
        ("scipy", set(scipy_result["flagged"])),
    ):
        if flagged is None:
            print(f"{name:10} not run")
            continue
        print(
            f"{name:10} flagged {len(flagged):2}; missed shifted: {sorted(shifted - flagged)}; "
            f"false flags: {sorted(flagged - shifted)}"
        )
    ev_s = evidently["run_s"] if evidently else None
    print(
        f"\nours      {ours['seconds']:.3f} s (median of {OURS_REPS}, one core: "
        f"{', '.join(f'{t:.3f}' for t in ours['times'])}); profile built once in "
        f"{ours['build_s']:.2f} s, {ours['profile_kb']:.0f} KB of JSON"
    )
    if evidently:
        print(
            f"evidently {ev_s:.2f} s (Dataset.from_pandas + Report.run; import "
            f"{evidently['import_s']:.1f} s more; venv {evidently['venv']})"
        )
    print(
        f"scipy     {scipy_result['seconds']:.2f} s (one core; "
        f"import {scipy_result['import_s']:.1f} s)"
    )
    if ev_s:
        print(f"speed-up vs Evidently: {ev_s / ours['seconds']:.1f}x; "
              f"vs SciPy: {scipy_result['seconds'] / ours['seconds']:.1f}x")  # fmt: skip
    ours_flagged = set(ours["flagged"])
    return {
        "ours_s": round(ours["seconds"], 3),
        "evidently_s": round(ev_s, 3) if ev_s else None,
        "scipy_s": round(scipy_result["seconds"], 3),
        "speedup_vs_evidently": round(ev_s / ours["seconds"], 1) if ev_s else None,
        "missed_shifted": len(shifted - ours_flagged),
        "false_flags": len(ours_flagged - shifted),
    }


def _main_effect(r: Any) -> str:
    if r.kind == "numeric":
        return f"W={r.wasserstein:.3f} PSI={r.psi:.3f}"
    ratio = r.details.get("max_rate_ratio") or 1.0
    return f"JS={r.js_distance:.3f} x{ratio:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=100_000)
    args = parser.parse_args()
    cols = columns()
    large = compare(args.rows, cols)
    compare(args.small_rows, [c for c in cols if c.kind == "numeric"])
    print(json.dumps(large))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--evidently-worker":
        evidently_worker(Path(sys.argv[2]))
    else:
        # Thread pools size themselves at import: limit them before numpy is imported.
        for var in THREAD_VARS:
            os.environ[var] = "1"
        main()
