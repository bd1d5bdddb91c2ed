"""Apache Airflow in a virtual environment of its own, for the tests of the exported DAGs.

Airflow pins much of what Loopline also uses (SQLAlchemy, FastAPI, pendulum...), so it never
shares Loopline's environment: the exported DAG's tasks call the ``loopline`` command, as
they would on an Airflow worker. Built once into ``.bench/airflow-venv`` and reused while
the requirements and the constraints file are unchanged (a stamp holds their hash);
`make airflow-venv` (run by ``.ci/run`` before the tests) and the test fixture both call
:func:`ensure_airflow_venv`.

Run as a script to build it: ``python tests/orchestrate/airflow_venv.py``.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".bench" / "airflow-venv"
REQUIREMENTS = ["apache-airflow==3.3.2", "apache-airflow-providers-standard==1.21.0"]
# Airflow's install method: every transitive package pinned by a constraints file (Airflow
# publishes one per release; only the package index is reachable here, so this one was
# frozen from a working install).
CONSTRAINTS = Path(__file__).with_name("airflow-constraints.txt")


def ensure_airflow_venv() -> Path:
    """The ``bin`` folder of the Airflow environment, building it first if needed."""
    stamp = hashlib.sha256(
        "\n".join([sys.version, *REQUIREMENTS]).encode() + CONSTRAINTS.read_bytes()
    ).hexdigest()
    stamp_file = VENV / ".stamp"
    if stamp_file.is_file() and stamp_file.read_text() == stamp:
        return VENV / "bin"
    print(f"creating {VENV} (Airflow; about a minute)", file=sys.stderr, flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    log = VENV.parent / "airflow-venv.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    commands = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        [
            str(VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            *REQUIREMENTS,
            "--constraint",
            str(CONSTRAINTS),
        ],
    ]
    with log.open("w") as out:
        for command in commands:
            if subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode:
                shutil.rmtree(VENV, ignore_errors=True)  # never a half-built environment
                tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
                raise RuntimeError(f"{' '.join(command[:5])} failed; see {log}:\n{tail}")
    stamp_file.write_text(stamp)
    return VENV / "bin"


if __name__ == "__main__":
    print(ensure_airflow_venv())
