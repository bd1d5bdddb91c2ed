"""The schema a streamed transaction must satisfy before anything is decided about it.

:class:`Transaction` follows the Fraud Detection Handbook's columns (the simulated data in
``../shared/data/fraud``): an id, a time, a customer, a terminal and a non-negative finite
amount; the simulator's label columns are optional, and any other field (a card number, an
e-mail address: what the PII masker is there for) is kept as sent. A different schema is
any pydantic model passed to the consumer with the name of its id field.

:func:`check` returns the validated record or the reason it was refused. The reason names
fields and rules only, never the values sent: a dead letter's reason must not carry the
personal data its payload had masked.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["Transaction", "check"]


class Transaction(BaseModel):
    """One card transaction as it arrives."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    TRANSACTION_ID: int | str = Field(description="unique per transaction; the decision key")
    TX_DATETIME: datetime
    CUSTOMER_ID: int | str
    TERMINAL_ID: int | str
    TX_AMOUNT: float = Field(ge=0)
    TX_TIME_SECONDS: int | None = None
    TX_TIME_DAYS: int | None = None
    TX_FRAUD: int | None = Field(default=None, ge=0, le=1)
    TX_FRAUD_SCENARIO: int | None = None

    @field_validator("TX_AMOUNT")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID")
    @classmethod
    def _not_blank(cls, value: int | str) -> int | str:
        if isinstance(value, str) and not value:
            raise ValueError("must not be empty")
        return value


def check(
    schema: type[BaseModel], payload: dict[str, Any]
) -> tuple[dict[str, Any] | None, str | None]:
    """``(record, None)`` when ``payload`` satisfies ``schema``, else ``(None, reason)``.

    The record holds the schema's parsed values (a datetime for ``TX_DATETIME``, floats
    for amounts sent as text) and every extra field as sent.
    """
    try:
        model = schema.model_validate(payload)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"]) or "(body)"
            problems.append(f"{where}: {error['msg']}")
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        return None, f"schema violation: {shown}{more}"
    return model.model_dump(), None
