"""Compiled kernels of LinearTextPredictor (see _lean.c and loopline.serve.inference)."""

from typing_extensions import Buffer

class KeyTable:
    def __init__(self, keys: Buffer, values: Buffer) -> None: ...
    def __len__(self) -> int: ...
    def find(self, keys: Buffer) -> bytearray: ...

def word_entries(
    ids: list[int],
    counts: list[int],
    base: int,
    min_n: int,
    max_n: int,
    unigrams: Buffer | None,
    tables: tuple[KeyTable | None, ...],
) -> tuple[bytearray, bytearray]: ...
def char_wb_columns(
    words: list[str], codes: Buffer, bits: int, min_n: int, max_n: int, table: KeyTable
) -> list[bytes]: ...
def packed_entries(found: list[bytes], per_text: list[int]) -> tuple[bytearray, bytearray]: ...
def accumulate_group(
    scores: Buffer,
    k: int,
    blocks: list[tuple[Buffer, Buffer]],
    starts: Buffer,
    weights: Buffer,
    log_table: Buffer | None,
    binary: bool,
    norm: int,
) -> None: ...
def accumulate_dense(
    scores: Buffer, k: int, dense: Buffer, width: int, coef: Buffer, offset: int
) -> None: ...
