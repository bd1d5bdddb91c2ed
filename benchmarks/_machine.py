"""The machine and tool versions a benchmark figure was measured with.

Every benchmark's last JSON line carries one ``"machine"`` object, so that a figure can be
judged against the load it was measured under and the versions it compared::

    from _machine import machine_info, start_load

    load_start = start_load()          # first thing in main(), before any timing
    ...                                # the benchmark
    info = machine_info(
        load_start,
        ["loopline", "scikit-learn"],  # tools living in this interpreter's environment
        venvs={SNORKEL_PYTHON: ["snorkel", "torch"]},  # tools living in another venv
    )
    print(json.dumps({...figures..., "machine": info}))

``machine_info`` returns::

    {"cores": 2, "cpu": "AMD EPYC ...", "load_start": [1.61, 1.07, 1.01],
     "load_end": [...], "python": "3.11.7", "platform": "Linux-6.1-x86_64",
     "versions": {"loopline": "0.1.0", "scikit-learn": "1.6.1", "snorkel": "0.10.0", ...}}

Load averages are ``os.getloadavg()``: the 1, 5 and 15 minute figures. A version is read
with :mod:`importlib.metadata` by the interpreter whose environment holds the tool (a venv's
python is asked in a subprocess); a tool that is not installed there reads ``None``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["command_env", "load_average", "machine_info", "start_load", "versions"]

_ASK = (
    "import importlib.metadata as m, json, platform, sys\n"
    "def v(name):\n"
    "    try:\n"
    "        return m.version(name)\n"
    "    except m.PackageNotFoundError:\n"
    "        return None\n"
    "print(json.dumps({'python': platform.python_version(),"
    " 'versions': {n: v(n) for n in sys.argv[1:]}}))\n"
)


def command_env(**extra: str) -> dict[str, str]:
    """The environment for the commands a benchmark times (every tool's alike): this one
    plus ``extra``, less ``PYTHONDONTWRITEBYTECODE``. An installed package keeps its compiled
    bytecode; with that variable set (some sandboxes and containers do), every start compiles
    the project's own modules again, which cost a fully cached ``loopline run`` 0.4 s of its
    0.8-1.2 s."""
    env = {**os.environ, **extra}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded to 2 decimals."""
    return [round(x, 2) for x in os.getloadavg()]


def start_load() -> list[float]:
    """The load average at the start of a benchmark: call it first, pass it to machine_info."""
    return load_average()


def versions(tools: Iterable[str], python: str | Path | None = None) -> dict[str, str | None]:
    """Installed versions of ``tools`` (distribution names) in ``python``'s environment.

    ``python`` is another interpreter (e.g. ``.bench/snorkel-venv/bin/python``); None means
    this one. A tool not installed there, or an interpreter that cannot answer, gives None.
    """
    names = list(tools)
    # Compare the paths as given: a venv's python is a symlink to the same interpreter,
    # yet sees its own site-packages.
    if python is None or Path(python).absolute() == Path(sys.executable).absolute():
        return {name: _version_here(name) for name in names}
    return _ask(python, names)["versions"]


def machine_info(
    load_start: list[float],
    tools: Iterable[str] = (),
    *,
    venvs: Mapping[str | Path, Iterable[str]] | None = None,
) -> dict[str, Any]:
    """Cores, CPU, load average at ``load_start`` and now, Python, and the tools' versions.

    ``tools`` are read in this interpreter's environment; ``venvs`` maps the python of
    another virtualenv to the tools living there (their versions are read by that python,
    and its Python version is recorded as ``"python (<venv folder>)"``).
    """
    found = versions(tools)
    for python, names in (venvs or {}).items():
        answer = _ask(python, list(names))
        found.update(answer["versions"])
        if answer["python"] is not None:
            found[f"python ({Path(python).parent.parent.name})"] = answer["python"]
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "load_start": list(load_start),
        "load_end": load_average(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "versions": found,
    }


def _version_here(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _ask(python: str | Path, names: list[str]) -> dict[str, Any]:
    nothing: dict[str, Any] = {"python": None, "versions": dict.fromkeys(names)}
    try:
        done = subprocess.run(
            [str(python), "-c", _ASK, *names],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return nothing
    if done.returncode != 0:
        return nothing
    try:
        answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return nothing
    return answer


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None
