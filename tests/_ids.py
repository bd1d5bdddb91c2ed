"""Random ids for tests whose stored data a PII audit then searches."""

from __future__ import annotations

import uuid

_DIGITS_TO_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def letters_id(length: int = 32) -> str:
    """A random id of lower-case letters only.

    A hex id now and then holds a run of eight to ten digits, which the audit rightly
    reports as a phone number: that made the PII tests fail about once in a hundred runs.
    """
    return uuid.uuid4().hex[:length].translate(_DIGITS_TO_LETTERS)
