"""Label model: Loopline's vs Snorkel's LabelModel vs majority vote, leave one video out.

Data: the five files of the UCI YouTube Spam Collection, one per video (1 Psy, 2 Katy Perry,
3 LMFAO, 4 Eminem, 5 Shakira; 1,956 comments, ``0 = ham``, ``1 = spam``). Five folds: each
video in turn is the test set and the other four are the training set.

In each fold:

1. The eleven LFs (``loopline.examples.spam.spam_lfs``) are applied to every comment. The
   LF analysis printed (coverage and accuracy per LF) uses the four training videos only.
2. Three label models see the training videos' label matrix only, never their labels:
   majority vote, Snorkel 0.10's ``LabelModel`` (fitted as the Snorkel spam tutorial does:
   500 epochs, seed 123, everything else default) and Loopline's ``LabelModel`` (defaults).
   Each labels the held-out video from its label matrix; accuracy is against the held-out
   video's true labels, on all its comments (uncovered ones too). Every model's
   probabilities go through the same argmax, ties broken at random with one fixed seed.
3. The same end classifier is trained on each label source's hard labels of the training
   videos' covered comments (at least one LF voted; the tutorial's filter) and scored on
   the held-out video: ``CountVectorizer(ngram_range=(1, 5))`` + ``LogisticRegression(C=1e3,
   solver="liblinear")``, the Snorkel tutorial's own end model, fixed before any fold was
   scored. The same classifier on the true labels of the same rows is shown as a ceiling.

How clean the test folds are, honestly: the LFs were written long ago on the Snorkel
tutorial's split, looking at its dev set (100 comments sampled from videos 1-4) and its
validation set (the 120 comments of video 5 outside its 250-row test set), and Loopline's
label-model defaults were settled on that same split. So every video had some comments in
view while the LFs were written, video 5 the most (a third of its comments, against ~25 per
video for 1-4): fold 5 is the least clean. The means are reported with and without it, and
over only the held-out comments that were in neither the tutorial's dev nor its validation
set ("unseen comments").

Snorkel needs torch, so it runs in its own virtualenv, ``.bench/snorkel-venv``, which this
script creates on first use (``pip install torch==2.13.0`` first: the CPU build; then
``snorkel numpy pandas scikit-learn``) and reuses afterwards. Its fits run there in one
subprocess that reads the label matrices from .npy files and writes its probabilities
back. Fit times: every model gets one untimed warm-up fit and ``REPS`` timed fits per fold
(the median is reported); the clock covers constructing the model and ``fit``, nothing else.

    .venv/bin/python benchmarks/label_model.py

The last output line is one JSON object: ``acc_majority``, ``acc_snorkel``, ``acc_ours``,
``end_acc_majority``, ``end_acc_snorkel``, ``end_acc_ours`` (means over the five folds),
``end_acc_gold``, ``folds`` (the per-fold lists of the same keys), ``without_video5`` and
``unseen_comments`` (the same means over folds 1-4 / pooled over the unseen comments),
``covered_comments`` and ``uncovered_comments`` (pooled over the held-out comments at least
one LF voted on / none did), ``train_label_acc`` (accuracy of each source's labels of the
covered training comments, the end model's training labels), ``fit_s_*`` (mean over folds
of the median fit) and ``machine`` (cores, load averages, versions).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import machine_info, start_load

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SPAM = DATA / "spam_youtube"
VENV = REPO / ".bench" / "snorkel-venv"
SNORKEL_PYTHON = VENV / "bin" / "python"
REPS = 3  # timed fits per model and fold, after one untimed warm-up fit
SNORKEL_SEED = 123  # the tutorial's
TIE_SEED = 0  # one seed for breaking every model's ties
SOURCES = ("majority", "snorkel", "ours")
NAMES = {
    "majority": "majority vote",
    "snorkel": "Snorkel LabelModel",
    "ours": "Loopline LabelModel",
}


# --------------------------------------------------------------------------- Snorkel side
def snorkel_worker(folder: Path) -> None:
    """Runs inside the Snorkel venv: per fold, fit as the tutorial does, save probabilities."""
    import numpy as np
    from snorkel.labeling.model import LabelModel

    folds = json.loads((folder / "folds.json").read_text())
    fit_times: dict[str, list[float]] = {}
    for fold in folds:
        L_train = np.load(folder / f"L_train_{fold}.npy").astype(int)
        model = None
        times = []
        for rep in range(REPS + 1):  # rep 0 is the warm-up
            start = time.perf_counter()
            model = LabelModel(cardinality=2, verbose=False)
            model.fit(L_train, n_epochs=500, log_freq=100, seed=SNORKEL_SEED, progress_bar=False)
            if rep:
                times.append(time.perf_counter() - start)
        assert model is not None
        for part in ("train", "test"):
            L = np.load(folder / f"L_{part}_{fold}.npy").astype(int)
            np.save(folder / f"P_{part}_{fold}.npy", model.predict_proba(L))
        fit_times[str(fold)] = times
    print(json.dumps({"fit_times": fit_times}))


def ensure_snorkel_venv() -> tuple[Path | None, str]:
    """The Snorkel venv's python, creating the venv if needed; (None, why) when that fails."""
    python = SNORKEL_PYTHON
    if python.exists() and _run([str(python), "-c", "import snorkel, torch"]).returncode == 0:
        return python, "cached"
    print(f"creating {VENV.relative_to(REPO)} (one-time: torch CPU + snorkel, ~1 GB, ~1 min)")
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(VENV)],
        # torch first and pinned: snorkel's own requirement would pull the multi-GB CUDA build
        [str(python), "-m", "pip", "install", "-q", "torch==2.13.0"],
        [str(python), "-m", "pip", "install", "-q", "snorkel", "numpy", "pandas", "scikit-learn"],
    ]
    for step in steps:
        done = _run(step)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            return None, f"`{' '.join(step[2:])}` failed: " + " | ".join(tail)
    return python, "created"


def _run(cmd: list[str], timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(cmd, 1, "", str(exc))


def run_snorkel(matrices: dict[int, tuple[Any, Any]]) -> dict[str, Any] | None:
    """Snorkel's probabilities and fit times per fold ({fold: (L_train, L_test)}); None on
    failure (and why is printed)."""
    import numpy as np

    python, how = ensure_snorkel_venv()
    if python is None:
        print(f"Snorkel unavailable: {how}")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "folds.json").write_text(json.dumps(list(matrices)))
        for fold, (L_train, L_test) in matrices.items():
            np.save(folder / f"L_train_{fold}.npy", L_train)
            np.save(folder / f"L_test_{fold}.npy", L_test)
        done = _run([str(python), __file__, "--snorkel-worker", str(folder)], timeout=1200)
        if done.returncode != 0:
            print(f"Snorkel run failed: {done.stderr.strip().splitlines()[-3:]}")
            return None
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        proba = {
            fold: (
                np.load(folder / f"P_train_{fold}.npy"),
                np.load(folder / f"P_test_{fold}.npy"),
            )
            for fold in matrices
        }
    fit_s = {int(f): statistics.median(t) for f, t in answer["fit_times"].items()}
    return {"proba": proba, "fit_s": fit_s, "venv": how}


# --------------------------------------------------------------------------- shared scoring
def hard_labels(proba: Any) -> Any:
    """Argmax per row, ties (equal top probabilities) broken at random with TIE_SEED."""
    import numpy as np

    rng = np.random.default_rng(TIE_SEED)
    top = proba.max(axis=1, keepdims=True)
    tied = proba >= top - 1e-9
    noise = rng.random(proba.shape)
    return np.where(tied, noise, -1.0).argmax(axis=1)


def end_model_predictions(train_text: Any, labels: Any, test_text: Any) -> Any:
    """The Snorkel tutorial's end model, trained on ``labels``; its predictions on the test
    video."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        CountVectorizer(ngram_range=(1, 5)),
        LogisticRegression(C=1e3, solver="liblinear", random_state=0),
    )
    model.fit(train_text, labels)
    return model.predict(test_text)


def _timed_fit(make: Any, L: Any) -> tuple[Any, float]:
    """One untimed warm-up fit, then REPS timed ones; the last model and the median time."""
    times, model = [], None
    for rep in range(REPS + 1):
        start = time.perf_counter()
        model = make().fit(L)
        if rep:
            times.append(time.perf_counter() - start)
    return model, statistics.median(times)


# --------------------------------------------------------------------------- data
def load_videos() -> Any:
    """All comments of the five videos with ``text, label, video, seen``; ``seen`` marks the
    comments in the Snorkel tutorial's dev and validation sets, the ones in view while the
    LFs were written."""
    import pandas as pd

    from loopline.examples.spam import load_spam_split

    frames = []
    for video, path in enumerate(sorted(SPAM.glob("Youtube0*.csv")), start=1):
        df = pd.read_csv(path)
        df.columns = [str(c).lower() for c in df.columns]
        frames.append(
            df.rename(columns={"content": "text", "class": "label"})[
                ["author", "date", "text", "label"]
            ].assign(video=video, label=lambda d: d["label"].astype(int))
        )
    if len(frames) != 5:
        sys.exit(f"expected the 5 YouTube spam files in {SPAM}, found {len(frames)}")
    data = pd.concat(frames, ignore_index=True)
    tutorial = load_spam_split(SPAM)
    key = ["video", "author", "date", "text"]
    looked_at = pd.concat([tutorial.dev[key], tutorial.valid[key]]).drop_duplicates()
    data["seen"] = pd.MultiIndex.from_frame(data[key]).isin(pd.MultiIndex.from_frame(looked_at))
    return data


def main() -> None:
    load_start = start_load()
    from rich.console import Console
    from rich.table import Table

    from loopline.examples.spam import LABEL_SET, spam_lfs
    from loopline.label.analysis import lf_summary
    from loopline.label.lf import apply_lfs
    from loopline.label.model import LabelModel, MajorityVoter

    console = Console(width=130)
    data = load_videos()
    lfs = spam_lfs()
    start = time.perf_counter()
    applied = apply_lfs(data, lfs, LABEL_SET)
    apply_s = time.perf_counter() - start
    L_all, names = applied.L, applied.lf_names
    Y_all = data["label"].to_numpy()
    videos = sorted(int(v) for v in data["video"].unique())
    counts = data.groupby("video").agg(rows=("label", "size"), spam=("label", "mean"))
    print(
        f"{len(data)} comments in {len(videos)} videos ("
        + ", ".join(f"{v}: {int(r.rows)} rows, {r.spam:.0%} spam" for v, r in counts.iterrows())
        + f"); {len(lfs)} LFs applied in {apply_s:.2f} s; "
        f"{int(data['seen'].sum())} comments were in the tutorial's dev/validation sets"
    )

    # LF analysis per fold, on the fold's four training videos only.
    lf_table = Table(title="LF accuracy (coverage) on each fold's four training videos")
    lf_table.add_column("lf")
    lf_table.add_column("polarity")
    for v in videos:
        lf_table.add_column(f"fold {v}", justify="right")
    summaries = {}
    for v in videos:
        train = (data["video"] != v).to_numpy()
        summaries[v] = lf_summary(L_all[train], names, Y_all[train], LABEL_SET)
    for j, name in enumerate(names):
        cells = []
        for v in videos:
            row = summaries[v][j]
            acc = "-" if row.get("emp_acc") is None else f"{row['emp_acc']:.0%}"
            cells.append(f"{acc} ({row['coverage']:.0%})")
        polarity = ", ".join(map(str, summaries[videos[0]][j]["polarity"]))
        lf_table.add_row(name, polarity, *cells)
    console.print(lf_table)

    # Fit every label model on each fold's training matrix (no labels).
    folds = {}
    for v in videos:
        train = (data["video"] != v).to_numpy()
        folds[v] = {"train": train, "test": ~train}
    ours_proba: dict[int, tuple[Any, Any]] = {}
    majority_proba: dict[int, tuple[Any, Any]] = {}
    fit_s: dict[str, dict[int, float]] = {"ours": {}, "majority": {}}
    for v, fold in folds.items():
        L_train, L_test = L_all[fold["train"]], L_all[fold["test"]]
        ours, fit_s["ours"][v] = _timed_fit(lambda: LabelModel(2), L_train)
        majority, fit_s["majority"][v] = _timed_fit(lambda: MajorityVoter(2), L_train)
        ours_proba[v] = (ours.predict_proba(L_train), ours.predict_proba(L_test))
        majority_proba[v] = (majority.predict_proba(L_train), majority.predict_proba(L_test))
    snorkel = run_snorkel({v: (L_all[f["train"]], L_all[f["test"]]) for v, f in folds.items()})
    probas = {"majority": majority_proba, "ours": ours_proba}
    if snorkel is not None:
        probas["snorkel"] = snorkel["proba"]
        fit_s["snorkel"] = snorkel["fit_s"]

    # Score the labels and the end models, the same way for every source.
    per_fold: dict[str, dict[int, float]] = {}
    # Hits pooled over the folds, by subset: unseen / covered / uncovered held-out comments,
    # and "train": the labels the end model learns from (covered rows of the training videos).
    pooled: dict[str, dict[str, list[bool]]] = {}
    for v, fold in folds.items():
        L_train, L_test = L_all[fold["train"]], L_all[fold["test"]]
        covered = (L_train != -1).any(axis=1)
        train_text = data.loc[fold["train"], "text"].to_numpy()[covered]
        train_y = Y_all[fold["train"]][covered]
        test_text = data.loc[fold["test"], "text"].to_numpy()
        test_y = Y_all[fold["test"]]
        subsets = {
            "unseen": ~data.loc[fold["test"], "seen"].to_numpy(),
            "covered": (L_test != -1).any(axis=1),
        }
        subsets["uncovered"] = ~subsets["covered"]
        for source in SOURCES:
            if source not in probas:
                continue
            P_train, P_test = probas[source][v]
            train_labels = hard_labels(P_train)[covered]
            pooled.setdefault(f"acc_{source}", {}).setdefault("train", []).extend(
                train_labels == train_y
            )
            predicted = {
                f"acc_{source}": hard_labels(P_test),
                f"end_acc_{source}": end_model_predictions(train_text, train_labels, test_text),
            }
            if source == "ours":  # once per fold: the ceiling, trained on the true labels
                predicted["end_acc_gold"] = end_model_predictions(train_text, train_y, test_text)
            for key, pred in predicted.items():
                per_fold.setdefault(key, {})[v] = float((pred == test_y).mean())
                for subset, rows in subsets.items():
                    pooled.setdefault(key, {}).setdefault(subset, []).extend(
                        pred[rows] == test_y[rows]
                    )

    def mean(key: str, keep: list[int] | None = None) -> float | None:
        values = per_fold.get(key)
        if not values:
            return None
        return round(statistics.fmean(values[v] for v in (keep or videos)), 4)

    def pooled_mean(key: str, subset: str) -> float | None:
        hits = pooled.get(key, {}).get(subset)
        return round(statistics.fmean(hits), 4) if hits else None

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    keys = [f"{p}{s}" for p in ("acc_", "end_acc_") for s in SOURCES] + ["end_acc_gold"]
    without_5 = [v for v in videos if v != 5]
    table = Table(title="Accuracy on the held-out video: the labels, then one end model on them")
    table.add_column("")
    for v in videos:
        table.add_column(f"video {v}" + (" *" if v == 5 else ""), justify="right")
    for column in ("mean", "mean 1-4", "unseen"):
        table.add_column(column, justify="right")
    for key in keys:
        if key == "end_acc_majority":
            table.add_section()
        source = key.rsplit("_", 1)[1]
        name = "true labels (ceiling)" if source == "gold" else NAMES[source]
        table.add_row(
            ("labels: " if key.startswith("acc_") else "end model on ") + name,
            *(pct(per_fold.get(key, {}).get(v)) for v in videos),
            pct(mean(key)),
            pct(mean(key, without_5)),
            pct(pooled_mean(key, "unseen")),
        )
    console.print(table)
    print(
        "* video 5 was in view while the LFs were written (the tutorial's validation set). "
        "mean: over the 5 folds; mean 1-4: without fold 5; unseen: pooled over the held-out "
        "comments in neither the tutorial's dev nor its validation set "
        f"({int((~data['seen']).sum())} of {len(data)})"
    )
    where = Table(title="Where the label accuracy comes from (pooled over the five folds)")
    where.add_column("")
    for column in ("held-out, covered", "held-out, no LF vote", "end model's training labels"):
        where.add_column(column, justify="right")
    for source in SOURCES:
        key = f"acc_{source}"
        if key in pooled:
            where.add_row(
                NAMES[source],
                *(pct(pooled_mean(key, s)) for s in ("covered", "uncovered", "train")),
            )
    console.print(where)
    print(
        "covered: at least one LF voted; the end model trains on the covered comments of the "
        "training videos only (the tutorial's filter), so the 'no LF vote' column never "
        "reaches it"
    )

    fits = Table(title=f"Fit time on the four training videos (median of {REPS}, after a warm-up)")
    fits.add_column("")
    for v in videos:
        fits.add_column(f"fold {v}", justify="right")
    for source in SOURCES:
        if source in fit_s:
            fits.add_row(NAMES[source], *(_duration(fit_s[source][v]) for v in videos))
    console.print(fits)
    if snorkel is not None:
        speedup = statistics.fmean(fit_s["snorkel"].values()) / statistics.fmean(
            fit_s["ours"].values()
        )
        print(
            f"Snorkel venv: {snorkel['venv']}; Snorkel: 500 epochs, seed {SNORKEL_SEED}, "
            f"torch on {torch_threads_note()}; fit speed-up ours vs Snorkel: {speedup:.0f}x"
        )
    print(
        "for orientation only (another split, the tutorial's own LFs): the Snorkel tutorial "
        "reports majority 84.0%, Snorkel 86.0%, end model 94.4% on its video-5 test set"
    )

    summary: dict[str, Any] = {k: mean(k) for k in keys}
    summary["folds"] = {
        "video": [int(v) for v in videos],
        **{k: [round(per_fold[k][v], 4) for v in videos] if k in per_fold else None for k in keys},
    }
    summary["without_video5"] = {k: mean(k, without_5) for k in keys}
    summary["unseen_comments"] = {k: pooled_mean(k, "unseen") for k in keys}
    for subset in ("covered", "uncovered"):
        summary[f"{subset}_comments"] = {k: pooled_mean(k, subset) for k in keys}
    summary["train_label_acc"] = {s: pooled_mean(f"acc_{s}", "train") for s in SOURCES}
    for source in SOURCES:
        summary[f"fit_s_{source}"] = (
            round(statistics.fmean(fit_s[source].values()), 5) if source in fit_s else None
        )
    summary["machine"] = machine_info(
        load_start,
        ["loopline", "numpy", "scikit-learn"],
        venvs={SNORKEL_PYTHON: ["snorkel", "torch"]} if SNORKEL_PYTHON.exists() else None,
    )
    print(json.dumps(summary))


def _duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def torch_threads_note() -> str:
    """How many threads torch uses in the Snorkel venv (its default: one per core)."""
    done = _run([str(SNORKEL_PYTHON), "-c", "import torch; print(torch.get_num_threads())"], 120)
    return f"{done.stdout.strip()} threads" if done.returncode == 0 else "its default threads"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--snorkel-worker":
        snorkel_worker(Path(sys.argv[2]))
    else:
        main()
