"""Values a step returns to tell the runner what to record: the lineage is the runner's job.

A step that registers a model returns a :class:`ModelVersion`. The runner, which knows the
step's input artifacts, the run and its code version, then links that version to the model
artifact, the reference profile, the recipe that produced the model (the training step's
cache key) and every dataset version upstream of it, in the same transaction as the step's
own record. The step never writes lineage itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version, as a register step reports it.

    ``model_input`` and ``reference_input`` name the step's parameters that received the
    model and its reference profile; the runner takes their artifact hashes from there.
    """

    name: str
    version: str
    promoted: bool = False
    champion: str | None = None
    mlflow_run_id: str | None = None
    dataset_version: str | None = None
    new: bool = True
    reasons: list[str] = field(default_factory=list)
    model_input: str = "model"
    reference_input: str | None = "reference"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelVersion:
        """The inverse of :meth:`to_dict`."""
        return cls(**data)
