"""Errors that Loopline reports to users.

A :class:`LooplineError` is a *user* error: bad input, a missing file, an unknown model.
The CLI prints its message and hint on one line each and exits with code 2, without a
traceback (unless ``--debug``). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LooplineError(Exception):
    """A problem the user can fix: says what was expected, what was found, and what to do."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class ConfigError(LooplineError):
    """The project configuration (loopline.yaml, pyproject, LOOPLINE_* variables) is invalid."""


class DataError(LooplineError):
    """An input data file is missing, empty, malformed or has the wrong columns."""


class ValidationFailed(LooplineError):
    """Data validation found violations; ``report`` holds the full quality report."""

    def __init__(self, message: str, report: dict[str, object], hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.report = report


class ModelNotFound(LooplineError):
    """A model name, version or alias does not exist in the registry."""


class PipelineError(LooplineError):
    """A pipeline is defined wrongly (unknown step input, cycle, bad parameter)."""


class StepFailed(LooplineError):
    """A step raised; the run stopped and nothing downstream ran."""

    exit_code = 1

    def __init__(self, step: str, cause: BaseException, run_id: str) -> None:
        cause_msg = (
            str(cause) if isinstance(cause, LooplineError) else f"{type(cause).__name__}: {cause}"
        )
        super().__init__(
            f"step '{step}' failed: {cause_msg}",
            hint=getattr(cause, "hint", None) or f"see `loopline runs show {run_id}`",
        )
        self.step = step
        self.cause = cause
        self.run_id = run_id
