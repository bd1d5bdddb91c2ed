"""Label model: Loopline's vs Snorkel's LabelModel vs majority vote, on YouTube spam.

The setting of the Snorkel spam tutorial: files 01-04 of the YouTube Spam Collection are the
training set (labels hidden but for a 100-row dev sample), file 05 gives a validation set and
a 250-row test set. Eleven spam LFs (``loopline.examples.spam.spam_lfs``, written by looking at
the dev and validation sets only) make one label matrix; majority vote, Snorkel 0.10's
LabelModel and Loopline's LabelModel all fit on that same matrix. Then a logistic regression
is trained on the texts of the covered training rows with our labels (max-probability class)
and scored on the test set.

Snorkel needs torch, so it runs in its own virtualenv, ``.bench/snorkel-venv``, which this
script creates on first use (``pip install torch==2.13.0`` first: the CPU build; then
``snorkel numpy pandas scikit-learn``) and reuses afterwards. The fit runs there in a
subprocess that reads the label matrices from .npy files and answers in JSON.

    .venv/bin/python benchmarks/label_model.py

Published reference (Snorkel tutorial, its own LFs): majority vote 84.0%, Snorkel 86.0%,
end model 94.4%. The last output line is one JSON object:
{"acc_majority", "acc_snorkel", "acc_ours", "fit_s_snorkel", "fit_s_ours", "acc_end_model"}
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

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SPAM = DATA / "spam_youtube"
VENV = REPO / ".bench" / "snorkel-venv"
SNORKEL_REPS = 3  # a Snorkel fit takes ~1 s
OURS_REPS = 15
SNORKEL_SEED = 123  # the tutorial's


# --------------------------------------------------------------------------- Snorkel side
def snorkel_worker(folder: Path) -> None:
    """Runs inside the Snorkel venv: fit as the tutorial does, print accuracy and time as JSON."""
    import numpy as np
    from snorkel.labeling.model import LabelModel

    L = {
        name: np.load(folder / f"L_{name}.npy").astype(int)
        for name in ("train", "dev", "valid", "test")
    }
    Y = {name: np.load(folder / f"Y_{name}.npy").astype(int) for name in ("dev", "valid", "test")}
    times = []
    model = None
    for _ in range(SNORKEL_REPS):
        start = time.perf_counter()
        model = LabelModel(cardinality=2, verbose=False)
        model.fit(L["train"], n_epochs=500, log_freq=100, seed=SNORKEL_SEED, progress_bar=False)
        times.append(time.perf_counter() - start)
    assert model is not None
    acc = {
        name: float(model.score(L[name], Y[name], tie_break_policy="random")["accuracy"])
        for name in Y
    }
    print(json.dumps({"acc": acc, "fit_s": statistics.median(times), "fit_times": times}))


def ensure_snorkel_venv() -> tuple[Path | None, str]:
    """The Snorkel venv's python, creating the venv if needed; (None, why) when that fails."""
    python = VENV / "bin" / "python"
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


def run_snorkel(matrices: dict[str, Any]) -> dict[str, Any] | None:
    """Fit Snorkel's LabelModel in its venv on the given matrices; None (and why) on failure."""
    import numpy as np

    python, how = ensure_snorkel_venv()
    if python is None:
        print(f"Snorkel unavailable: {how}")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, array in matrices.items():
            np.save(folder / f"{name}.npy", array)
        done = _run([str(python), __file__, "--snorkel-worker", str(folder)], timeout=600)
    if done.returncode != 0:
        print(f"Snorkel run failed: {done.stderr.strip().splitlines()[-3:]}")
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["venv"] = how
    return result


# --------------------------------------------------------------------------- our side
def _median_fit(make: Any, L: Any, reps: int) -> tuple[Any, float]:
    times, model = [], None
    for _ in range(reps):
        start = time.perf_counter()
        model = make().fit(L)
        times.append(time.perf_counter() - start)
    return model, statistics.median(times)


def end_model_accuracy(split: Any, L_train: Any, proba: Any) -> dict[str, float]:
    """Logistic regression on the covered training rows, labelled with our max-prob class.

    Features: TF-IDF word 1-2 grams + character 2-5 grams, Loopline's default text model.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    covered = (L_train != -1).any(axis=1)
    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
    )
    model = make_pipeline(features, LogisticRegression(max_iter=2000))
    model.fit(split.train["text"][covered], proba[covered].argmax(axis=1))
    return {
        name: float(model.score(frame["text"], frame["label"]))
        for name, frame in (("valid", split.valid), ("test", split.test))
    }


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from loopline.examples.spam import LABEL_SET, load_spam_split, spam_lfs
    from loopline.label.analysis import lf_summary, summary_table
    from loopline.label.lf import apply_lfs
    from loopline.label.model import LabelModel, MajorityVoter

    console = Console(width=110)
    split = load_spam_split(SPAM)
    lfs = spam_lfs()
    start = time.perf_counter()
    results = {
        name: apply_lfs(getattr(split, name), lfs, LABEL_SET)
        for name in ("train", "dev", "valid", "test")
    }
    apply_s = time.perf_counter() - start
    L = {name: r.L for name, r in results.items()}
    Y = {name: getattr(split, name)["label"].to_numpy() for name in ("dev", "valid", "test")}
    print(
        f"data: train {len(split.train)} (labels hidden), dev {len(split.dev)}, "
        f"valid {len(split.valid)}, test {len(split.test)}; "
        f"{len(lfs)} LFs applied in {apply_s:.2f} s; "
        f"train coverage {(L['train'] != -1).any(axis=1).mean():.1%}"
    )
    console.print(
        summary_table(
            lf_summary(L["dev"], results["dev"].lf_names, Y["dev"], LABEL_SET),
            title="LFs on the dev set",
        )
    )

    majority = MajorityVoter(2).fit(L["train"])
    ours, fit_ours = _median_fit(lambda: LabelModel(2), L["train"], OURS_REPS)
    snorkel = run_snorkel({f"L_{n}": L[n] for n in L} | {f"Y_{n}": Y[n] for n in Y})
    end = end_model_accuracy(split, L["train"], ours.predict_proba(L["train"]))

    def acc(model: Any) -> dict[str, float]:
        return {n: model.score(L[n], Y[n], tie_policy="random") for n in Y}

    rows = {
        "majority vote": (acc(majority), None),
        "Snorkel LabelModel": (None, None),
        "Loopline LabelModel": (acc(ours), fit_ours),
    }
    if snorkel is not None:
        rows["Snorkel LabelModel"] = (snorkel["acc"], snorkel["fit_s"])
    table = Table(title="Label models on the same label matrix (ties broken at random)")
    for column in ("model", "dev", "valid", "test", "fit (median)"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, (scores, fit) in rows.items():
        cells = [f"{scores[n]:.1%}" if scores else "n/a" for n in ("dev", "valid", "test")]
        table.add_row(name, *cells, "-" if fit is None else f"{fit * 1000:.1f} ms")
    table.add_row(
        "end model (LR on our labels)", "-", f"{end['valid']:.1%}", f"{end['test']:.1%}", "-"
    )
    console.print(table)
    print("published (tutorial LFs): majority 84.0%, Snorkel 86.0%, end model 94.4% on test")
    print(
        f"fit repetitions: ours {OURS_REPS}, "
        f"Snorkel {SNORKEL_REPS} (500 epochs, seed {SNORKEL_SEED})"
    )
    if snorkel is not None:
        print(
            f"Snorkel venv: {snorkel['venv']}; "
            f"fit speed-up ours vs Snorkel: {snorkel['fit_s'] / fit_ours:.0f}x"
        )
    summary = {
        "acc_majority": round(rows["majority vote"][0]["test"], 4),
        "acc_snorkel": round(snorkel["acc"]["test"], 4) if snorkel else None,
        "acc_ours": round(acc(ours)["test"], 4),
        "fit_s_snorkel": round(snorkel["fit_s"], 4) if snorkel else None,
        "fit_s_ours": round(fit_ours, 5),
        "acc_end_model": round(end["test"], 4),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--snorkel-worker":
        snorkel_worker(Path(sys.argv[2]))
    else:
        main()
