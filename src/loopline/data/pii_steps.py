"""The door: a read step that masks personal data before anything is stored.

``read_pii_table`` reads a table like :func:`~loopline.data.steps.read_table` and masks it
with the project's PII policy and key *inside the same step*, so the only version the
artifact store, the dataset versions and everything downstream ever see is the masked one.
(A separate masking step after ``read_table`` would be too late: ``read_table``'s output,
raw, is an artifact of its own.) Errors are stored in the metadata database and printed, so
their messages are scrubbed of recognisable personal data, and the original exception is
not chained.

The key is read from the environment or the key file at run time and never becomes a step
parameter; the cache key gets the key's fingerprint instead (another key, another output).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loopline.core.step import step

if TYPE_CHECKING:
    import pandas as pd

    from loopline.core.runner import RunContext
    from loopline.data.pii import PiiMasker

__all__ = ["read_pii_table"]


def _dataset_param(params: dict[str, Any]) -> str | None:
    return params.get("dataset")


def _masker(ctx: RunContext | None, policy: str | dict[str, Any] | None) -> PiiMasker:
    from loopline.data.pii import open_masker

    return open_masker(ctx.settings if ctx is not None else None, policy)


def _door_state(ctx: RunContext, params: dict[str, Any], inputs: dict[str, str]) -> str:
    """The policy, the key's fingerprint (never the key) and, for a database, a fresh read."""
    import uuid

    fresh = uuid.uuid4().hex if "://" in str(params.get("source", "")) else ""
    return f"pii:{_masker(ctx, params.get('policy')).fingerprint()}{fresh}"


@step(dataset=_dataset_param, cache_extra=_door_state)
def read_pii_table(
    source: str | Path,
    *,
    dataset: str = "table",
    policy: str | dict[str, Any] | None = None,
    format: Literal["auto", "csv", "parquet", "sql"] = "auto",
    query: str | None = None,
    table: str | None = None,
    columns: list[str] | None = None,
    parse_dates: list[str] | None = None,
    schema: dict[str, Any] | None = None,
    max_missing_share: float = 0.95,
    ctx: RunContext | None = None,
) -> pd.DataFrame:
    """Read a table, mask its personal data by ``policy``, then validate the masked table.

    ``policy`` is a ready policy's name (``aws-transactions``), a JSON file or the policy
    itself; default: ``pii.policy`` of the project. The key comes from ``LOOPLINE_PII_KEY``
    or ``pii.key_file``; without one the step stops before reading anything. The other
    parameters are those of ``read_table``.
    """
    from loopline.data.pii import scrubbed_error
    from loopline.data.tables import read_table_source
    from loopline.data.validate import validate_table
    from loopline.errors import DataError, LooplineError

    masker = _masker(ctx, policy)  # no key, no read
    try:
        frame = read_table_source(
            source,
            format=format,
            query=query,
            table=table,
            columns=columns,
            parse_dates=parse_dates,
        )
        masked = masker.mask_frame(frame)
    except LooplineError as exc:
        raise DataError(masker.mask_text(exc.message), hint=exc.hint) from None
    except Exception as exc:
        raise DataError(
            f"reading and masking {source} failed: {type(exc).__name__}: "
            f"{scrubbed_error(exc, masker.scanner)}",
            hint="check the file; personal data in this message was replaced by tags",
        ) from None
    # Validated after masking: a violation report only ever shows masked values.
    checked, _report = validate_table(masked, schema, max_missing_share=max_missing_share)
    return checked
