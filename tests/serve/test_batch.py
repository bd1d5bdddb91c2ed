"""Batch inference: same answers as in memory, chunked, atomic, bounded memory, the CLI."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import typer
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from typer.testing import CliRunner

from loopline.cli.predict import predict_command
from loopline.errors import DataError, LooplineError
from loopline.registry.models import LoadedModel, ModelVersionInfo
from loopline.serve import batch
from loopline.serve.batch import predict_file

GOOD = ["love", "great", "happy", "wonderful", "excellent"]
BAD = ["hate", "awful", "sad", "terrible", "horrible"]


def texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = rng.choice(GOOD + BAD + ["the", "movie", "day"], size=(n, 4))
    return [" ".join(row) for row in words]


def info(version: str = "7") -> ModelVersionInfo:
    return ModelVersionInfo("sentiment", version, "run-1", ["champion"], {}, "ds-1", None, {})


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    train = pd.DataFrame({"text": texts(300, seed=1)})
    labels = [
        "positive" if sum(w in GOOD for w in t.split()) >= 2 else "negative" for t in train.text
    ]
    model = Pipeline(
        [
            ("features", ColumnTransformer([("tfidf", TfidfVectorizer(), "text")])),
            ("classifier", LogisticRegression(max_iter=500)),
        ]
    ).fit(train, labels)
    return LoadedModel(info(), model, ["text"], [str(c) for c in model.classes_])


def frame(n: int) -> pd.DataFrame:
    # "id" has leading zeros: a CSV -> CSV round trip must keep them.
    return pd.DataFrame({"id": [f"{i:05d}" for i in range(n)], "text": texts(n), "extra": 1.5})


def write_csv(df: pd.DataFrame, path: Path) -> Path:
    df.to_csv(path, index=False)
    return path


def expected(loaded: LoadedModel, df: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    proba = loaded.predict_proba(df)
    return proba, [loaded.classes[i] for i in proba.argmax(axis=1)]


def check_output(out: pd.DataFrame, df: pd.DataFrame, loaded: LoadedModel) -> None:
    proba, labels = expected(loaded, df)
    assert list(out.columns) == [
        *df.columns,
        "prediction",
        "proba.negative",
        "proba.positive",
        "model_name",
        "model_version",
    ]
    assert out["id"].astype(str).str.zfill(5).tolist() == df["id"].tolist()
    assert out["text"].tolist() == df["text"].tolist()
    assert out["prediction"].tolist() == labels
    np.testing.assert_allclose(out[["proba.negative", "proba.positive"]].to_numpy(), proba)
    assert set(out["model_name"]) == {"sentiment"}
    assert set(out["model_version"].astype(str)) == {"7"}


def test_csv_in_chunks_matches_in_memory_predictions(loaded: LoadedModel, tmp_path: Path) -> None:
    df = frame(1_234)
    seen: list[tuple[int, int | None]] = []
    summary = predict_file(
        loaded,
        write_csv(df, tmp_path / "in.csv"),
        tmp_path / "out.csv",
        chunk_rows=100,
        progress=lambda done, total: seen.append((done, total)),
    )
    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str})
    check_output(out, df, loaded)
    assert out["id"].tolist() == df["id"].tolist()  # passed through as text: zeros kept
    assert summary["rows"] == 1_234 and summary["chunks"] == 13
    assert (summary["model_name"], summary["model_version"]) == ("sentiment", "7")
    assert summary["output_format"] == "csv" and summary["replaced_columns"] == []
    done = [d for d, _ in seen]
    assert done == sorted(done) and seen[-1] == (1_234, 1_234)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_parquet_and_format_by_suffix(loaded: LoadedModel, tmp_path: Path) -> None:
    df = frame(500)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "in.parquet")
    predict_file(loaded, tmp_path / "in.parquet", tmp_path / "out.parquet", chunk_rows=64)
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.field("extra").type == pa.float64()  # Parquet types are kept
    check_output(out.to_pandas(), df, loaded)
    # CSV in, Parquet out (by suffix); gzip CSV in, gzip CSV out.
    predict_file(loaded, write_csv(df, tmp_path / "in.csv"), tmp_path / "csv.pq", chunk_rows=64)
    check_output(pq.read_table(tmp_path / "csv.pq").to_pandas(), df, loaded)
    with gzip.open(tmp_path / "in.csv.gz", "wt") as handle:
        df.to_csv(handle, index=False)
    summary = predict_file(loaded, tmp_path / "in.csv.gz", tmp_path / "out.csv.gz")
    check_output(pd.read_csv(tmp_path / "out.csv.gz", dtype={"id": str}), df, loaded)
    assert summary["input_format"] == summary["output_format"] == "csv"


def test_folder_of_parquet_files(loaded: LoadedModel, tmp_path: Path) -> None:
    df = frame(300)
    folder = tmp_path / "parts"
    folder.mkdir()
    for k, part in enumerate([df.iloc[:100], df.iloc[100:200], df.iloc[200:]]):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), folder / f"{k}.parquet")
    summary = predict_file(loaded, folder, tmp_path / "out.parquet", chunk_rows=50)
    out = pq.read_table(tmp_path / "out.parquet").to_pandas()
    check_output(out.sort_values("id", ignore_index=True), df, loaded)
    assert summary["rows"] == 300


def test_existing_output_columns_are_replaced(loaded: LoadedModel, tmp_path: Path) -> None:
    df = frame(50).assign(prediction="stale", model_version="1")
    summary = predict_file(loaded, write_csv(df, tmp_path / "in.csv"), tmp_path / "out.csv")
    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str})
    assert summary["replaced_columns"] == ["prediction", "model_version"]
    check_output(out, df.drop(columns=["prediction", "model_version"]), loaded)


def test_missing_columns_and_bad_paths(loaded: LoadedModel, tmp_path: Path) -> None:
    wrong = write_csv(pd.DataFrame({"body": ["x"], "id": [1]}), tmp_path / "wrong.csv")
    with pytest.raises(DataError, match=r"lacks the input columns \['text'\]") as error:
        predict_file(loaded, wrong, tmp_path / "out.csv")
    assert "body" in str(error.value) and error.value.hint
    with pytest.raises(DataError, match="does not exist"):
        predict_file(loaded, tmp_path / "nope.csv", tmp_path / "out.csv")
    (tmp_path / "data.txt").write_text("text\nhello\n")
    with pytest.raises(DataError, match="cannot tell the format"):
        predict_file(loaded, tmp_path / "data.txt", tmp_path / "out.csv")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read"):
        predict_file(loaded, tmp_path / "broken.parquet", tmp_path / "out.parquet")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match="cannot read"):
        predict_file(loaded, tmp_path / "empty.csv", tmp_path / "out.csv")
    with pytest.raises(LooplineError, match="chunk_rows"):
        predict_file(loaded, wrong, tmp_path / "out.csv", chunk_rows=0)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "out.parquet").exists()


def test_header_only_csv_gives_header_only_output(loaded: LoadedModel, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,text\n")
    assert predict_file(loaded, tmp_path / "in.csv", tmp_path / "out.csv")["rows"] == 0
    header = (tmp_path / "out.csv").read_text().splitlines()
    assert header == [
        '"id","text","prediction","proba.negative","proba.positive","model_name","model_version"'
    ]


class Exploding:
    """Fails on a row saying "boom", like a model meeting a value it cannot handle."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        if (df["text"] == "boom").any():
            raise ValueError("cannot score 'boom'")
        return np.asarray(self.inner.predict_proba(df))


def test_a_failure_mid_way_leaves_no_output(loaded: LoadedModel, tmp_path: Path) -> None:
    model = LoadedModel(loaded.info, Exploding(loaded.model), ["text"], loaded.classes)
    df = frame(300)
    df.loc[250, "text"] = "boom"  # in the third chunk, after two were written
    (tmp_path / "out.csv").write_text("the previous output\n")
    source = write_csv(df, tmp_path / "in.csv")
    with pytest.raises(DataError, match="failed on rows 200-300: ValueError: cannot score"):
        predict_file(model, source, tmp_path / "out.csv", chunk_rows=100)
    # The old output is untouched and no temp file is left behind.
    assert (tmp_path / "out.csv").read_text() == "the previous output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


class LengthModel:
    """A model cheap enough that the memory test measures predict_file, not scikit-learn."""

    classes_ = np.array(["long", "short"])

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        long = np.clip(df["text"].str.len().to_numpy(dtype=float) / 60, 0, 1)
        return np.column_stack([long, 1 - long])


def peak_bytes(model: LoadedModel, source: Path, target: Path) -> int:
    """Peak Python/NumPy memory (tracemalloc) plus peak Arrow memory during predict_file."""
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    tracemalloc.start()
    try:
        predict_file(model, source, target, chunk_rows=5_000)
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        pa.set_memory_pool(previous)
    return python_peak + pool.max_memory()


def test_memory_is_bounded_by_the_chunk_not_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyarrow's CSV reader holds a few dozen blocks read ahead: small blocks make that share
    # small too, so that what is measured is what predict_file itself holds on to.
    monkeypatch.setattr(batch, "_CSV_BLOCK_BYTES", 1 << 14)
    model = LoadedModel(info(), LengthModel(), ["text"], ["long", "short"])
    words = np.array(texts(1_000))
    for n in (20_000, 200_000):
        table = pa.table({"id": np.arange(n), "text": words[np.arange(n) % 1_000]})
        pcsv.write_csv(table, tmp_path / f"{n}.csv")
    peak_bytes(model, tmp_path / "20000.csv", tmp_path / "warm.csv")  # imports, caches
    small = peak_bytes(model, tmp_path / "20000.csv", tmp_path / "small.csv")
    large = peak_bytes(model, tmp_path / "200000.csv", tmp_path / "large.csv")
    large_file = (tmp_path / "200000.csv").stat().st_size
    print(f"peak bytes: 20k rows {small:,}, 200k rows {large:,}; 200k file {large_file:,}")
    # 10x the rows, yet about the same peak; holding the input would add at least its size.
    assert large < 1.5 * small + (1 << 20), (small, large, large_file)
    assert large - small < large_file / 2, (small, large, large_file)
    assert len(pd.read_csv(tmp_path / "large.csv")) == 200_000


def test_rows_longer_than_a_block_are_read(
    loaded: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "_CSV_BLOCK_BYTES", 1 << 12)
    df = frame(200)
    df.loc[150, "text"] = "great day\n" * 3_000  # 30 kB with newlines, past the 4 kB blocks
    summary = predict_file(loaded, write_csv(df, tmp_path / "in.csv"), tmp_path / "out.csv")
    assert summary["rows"] == 200
    check_output(pd.read_csv(tmp_path / "out.csv", dtype={"id": str}), df, loaded)


class FakeRegistry:
    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.refs: list[str] = []

    def load(self, ref: str) -> LoadedModel:
        self.refs.append(ref)
        return self.model


def fake_project(monkeypatch: pytest.MonkeyPatch, registry: FakeRegistry) -> None:
    """The registry is a fake, so the project's settings are never needed."""
    monkeypatch.setattr("loopline.cli.predict.settings_from", lambda ctx: None)
    monkeypatch.setattr("loopline.registry.project.open_registry", lambda settings: registry)


def test_predict_command(
    loaded: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = FakeRegistry(loaded)
    fake_project(monkeypatch, registry)
    monkeypatch.chdir(tmp_path)
    app = typer.Typer()
    app.command("predict")(predict_command)
    app.command("other")(lambda: None)  # two commands: typer keeps "predict" as a sub-command
    write_csv(frame(120), tmp_path / "in.csv")
    runner = CliRunner()

    result = runner.invoke(app, ["predict", "sentiment", "in.csv", "out.parquet", "--json"])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = orjson.loads(result.stdout)
    assert summary["rows"] == 120 and summary["model_version"] == "7"
    assert registry.refs == ["sentiment@champion"]
    check_output(pq.read_table(tmp_path / "out.parquet").to_pandas(), frame(120), loaded)

    result = runner.invoke(
        app, ["predict", "sentiment/7", "in.csv", "out.csv", "--chunk-rows", "50"]
    )
    assert result.exit_code == 0, result.output
    assert "scored 120 rows with sentiment version 7" in result.stdout
    assert registry.refs[-1] == "sentiment/7"

    result = runner.invoke(app, ["predict", "sentiment", "missing.csv", "out.csv"])
    assert isinstance(result.exception, DataError) and len(registry.refs) == 2


# --- output and input names, folders -----------------------------------------------------

SUPPORTED = ".csv, .csv.gz, .parquet or .pq"


def test_an_unknown_output_suffix_is_refused_naming_the_supported_ones(
    loaded: LoadedModel, tmp_path: Path
) -> None:
    source = write_csv(frame(20), tmp_path / "in.csv")
    for name in ("out.xlsx", "out", "out.parquet.gz", "out.CSV.zip"):
        with pytest.raises(DataError, match="cannot tell the output format") as error:
            predict_file(loaded, source, tmp_path / name)
        assert SUPPORTED in error.value.message and error.value.hint
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(DataError, match="is a folder"):
        predict_file(loaded, source, tmp_path / "folder.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.csv", "in.csv"]


def test_an_unknown_input_suffix_is_refused_naming_the_supported_ones(
    loaded: LoadedModel, tmp_path: Path
) -> None:
    (tmp_path / "data.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(DataError, match="cannot tell the format") as error:
        predict_file(loaded, tmp_path / "data.xlsx", tmp_path / "out.csv")
    assert SUPPORTED in error.value.message
    assert not (tmp_path / "out.csv").exists()


def test_a_missing_output_folder_is_refused_unless_create_dirs(
    loaded: LoadedModel, tmp_path: Path
) -> None:
    source = write_csv(frame(20), tmp_path / "in.csv")
    target = tmp_path / "new" / "sub" / "out.csv"
    with pytest.raises(DataError, match="does not exist") as error:
        predict_file(loaded, source, target)
    assert error.value.hint and "--create-dirs" in error.value.hint
    assert not (tmp_path / "new").exists()

    assert predict_file(loaded, source, target, create_dirs=True)["rows"] == 20
    assert target.is_file()

    # A failed run removes the folders it created: nothing is written on error.
    model = LoadedModel(loaded.info, Exploding(loaded.model), ["text"], loaded.classes)
    df = frame(20)
    df.loc[5, "text"] = "boom"
    boom = write_csv(df, tmp_path / "boom.csv")
    with pytest.raises(DataError, match="cannot score"):
        predict_file(model, boom, tmp_path / "other" / "deep" / "out.csv", create_dirs=True)
    assert not (tmp_path / "other").exists()


# --- empty and malformed rows --------------------------------------------------------------


class Recording:
    """Passes through to a model; remembers the texts it was asked to score."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seen: list[str] = []

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        self.seen.extend(df["text"])
        return np.asarray(self.inner.predict_proba(df))


def test_rows_with_empty_text_are_not_scored_and_are_counted(
    loaded: LoadedModel, tmp_path: Path
) -> None:
    model = LoadedModel(loaded.info, Recording(loaded.model), ["text"], loaded.classes)
    df = frame(12)
    df.loc[[2, 4, 5, 9], "text"] = ["", "   ", "\t", "\u00a0 "]  # rows 4-5: a whole chunk
    summary = predict_file(
        model, write_csv(df, tmp_path / "in.csv"), tmp_path / "out.csv", chunk_rows=2
    )

    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str})
    empty = [2, 4, 5, 9]
    assert out["id"].tolist() == df["id"].tolist()  # every row is kept, in order
    assert out.loc[empty, ["prediction", "proba.negative", "proba.positive"]].isna().all().all()
    scored = df.drop(index=empty)
    check_output(out.drop(index=empty), scored, loaded)
    assert model.model.seen == scored["text"].tolist()  # the model never saw an empty text
    assert (summary["rows_read"], summary["rows_scored"], summary["rows_empty"]) == (12, 8, 4)
    assert summary["rows"] == 12 and summary["rows_malformed"] == 0


def test_missing_and_empty_text_in_parquet_is_counted_as_empty(
    loaded: LoadedModel, tmp_path: Path
) -> None:
    # The signature says text: a first chunk of nothing but empty values is still text.
    model = LoadedModel(
        loaded.info, loaded.model, ["text"], loaded.classes, input_types={"text": "string"}
    )
    df = frame(8)
    table = pa.table({"id": df["id"], "text": [None, "", *df["text"][2:]]})
    pq.write_table(table, tmp_path / "in.parquet")
    summary = predict_file(model, tmp_path / "in.parquet", tmp_path / "out.parquet", chunk_rows=2)
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.column("prediction").null_count == 2
    assert out.column("proba.positive").to_pylist()[:2] == [None, None]
    assert (summary["rows_scored"], summary["rows_empty"]) == (6, 2)
    # The same from CSV, where the first chunk's text column holds only empty values.
    pcsv.write_csv(table, tmp_path / "in.csv")
    summary = predict_file(model, tmp_path / "in.csv", tmp_path / "out.csv", chunk_rows=2)
    assert (summary["rows_scored"], summary["rows_empty"]) == (6, 2)


def test_an_unclosed_quote_is_an_error_naming_its_line(
    loaded: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # line 1: header, 2: a row, 3-4: a quoted value over two lines, 5: the unclosed quote
    text = 'id,text\n1,good day\n2,"a quote\nacross lines"\n3,"never closed\n4,great\n5,awful\n'
    (tmp_path / "in.csv").write_text(text)
    with pytest.raises(DataError, match="line 5") as error:
        predict_file(loaded, tmp_path / "in.csv", tmp_path / "out.csv")
    assert "never closed" in error.value.message and error.value.hint
    with gzip.open(tmp_path / "in.csv.gz", "wt") as handle:
        handle.write(text)
    with pytest.raises(DataError, match="line 5"):
        predict_file(loaded, tmp_path / "in.csv.gz", tmp_path / "out.csv")
    # The rest of the file is longer than a read block: the same answer, at once.
    monkeypatch.setattr(batch, "_CSV_BLOCK_BYTES", 1 << 12)
    rows = "".join(f"{i},great movie number {i}\n" for i in range(6, 3_000))
    (tmp_path / "long.csv").write_text(text.replace("4,great\n", "4,great\n" + rows))
    with pytest.raises(DataError, match="line 5"):
        predict_file(loaded, tmp_path / "long.csv", tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    # A quote inside an unquoted value is just a character.
    (tmp_path / "inch.csv").write_text('id,text\n1,a 5" screen\n2,great\n')
    assert predict_file(loaded, tmp_path / "inch.csv", tmp_path / "out.csv")["rows"] == 2


MALFORMED = 'id,text\n1,good\n2,"two\nlines"\n3,too,many\n4,fine\n5\n6,ok\n'


def test_a_malformed_row_is_an_error_naming_its_line(loaded: LoadedModel, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(MALFORMED)
    with pytest.raises(DataError, match="line 5") as error:
        predict_file(loaded, tmp_path / "in.csv", tmp_path / "out.csv")
    assert "3 fields" in error.value.message and "expected 2" in error.value.message
    assert error.value.hint and "--skip-malformed" in error.value.hint
    assert not (tmp_path / "out.csv").exists()


def test_malformed_rows_are_skipped_and_counted_on_request(
    loaded: LoadedModel, tmp_path: Path
) -> None:
    (tmp_path / "in.csv").write_text(MALFORMED)
    summary = predict_file(loaded, tmp_path / "in.csv", tmp_path / "out.csv", skip_malformed=True)
    out = pd.read_csv(tmp_path / "out.csv")
    assert out["id"].tolist() == [1, 2, 4, 6]
    assert (summary["rows_read"], summary["rows"], summary["rows_malformed"]) == (6, 4, 2)
    assert summary["malformed_lines"] == [5, 7]


# --- which column feeds which model input -------------------------------------------------


def test_a_column_mapping_feeds_a_differently_named_column(
    loaded: LoadedModel, tmp_path: Path
) -> None:
    df = frame(30).rename(columns={"text": "CONTENT"})
    source = write_csv(df, tmp_path / "in.csv")
    summary = predict_file(loaded, source, tmp_path / "out.csv", columns={"text": "CONTENT"})
    out = pd.read_csv(tmp_path / "out.csv", dtype={"id": str})
    assert "text" not in out.columns and out["CONTENT"].tolist() == df["CONTENT"].tolist()
    _, labels = expected(loaded, df.rename(columns={"CONTENT": "text"}))
    assert out["prediction"].tolist() == labels
    assert summary["columns"] == {"text": "CONTENT"}

    with pytest.raises(DataError, match=r"lacks the input columns \['text'\]") as error:
        predict_file(loaded, source, tmp_path / "out.csv")
    assert error.value.hint and "--column text=" in error.value.hint
    assert "CONTENT" in error.value.message
    with pytest.raises(DataError, match="not an input of model"):
        predict_file(loaded, source, tmp_path / "out.csv", columns={"body": "CONTENT"})
    with pytest.raises(DataError, match="no column 'NOPE'"):
        predict_file(loaded, source, tmp_path / "out.csv", columns={"text": "NOPE"})


def test_predict_command_options(
    loaded: LoadedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = FakeRegistry(loaded)
    fake_project(monkeypatch, registry)
    monkeypatch.chdir(tmp_path)
    app = typer.Typer()
    app.command("predict")(predict_command)
    app.command("other")(lambda: None)
    df = frame(10).rename(columns={"text": "CONTENT"})
    df.loc[3, "CONTENT"] = " "
    write_csv(df, tmp_path / "in.csv")
    runner = CliRunner()
    base = ["predict", "sentiment", "in.csv"]

    # Refused before the model is loaded: unknown suffix, missing folder, bad --column.
    result = runner.invoke(app, [*base, "out.xlsx"])
    assert isinstance(result.exception, DataError) and SUPPORTED in result.exception.message
    result = runner.invoke(app, [*base, "new/out.csv", "--column", "text=CONTENT"])
    assert isinstance(result.exception, DataError)
    assert "--create-dirs" in (result.exception.hint or "")
    result = runner.invoke(app, [*base, "out.csv", "--column", "CONTENT"])
    assert isinstance(result.exception, LooplineError)
    assert "--column text=CONTENT" in (result.exception.hint or "")
    assert registry.refs == []

    result = runner.invoke(app, [*base, "new/out.csv", "--column", "text=CONTENT", "--create-dirs"])
    assert result.exit_code == 0, result.output
    assert "read 10 rows: 9 scored, 1 with empty text (not scored)" in result.stdout
    result = runner.invoke(app, [*base, "out.parquet", "--column", "text=CONTENT", "--json"])
    summary = orjson.loads(result.stdout)
    assert (summary["rows_read"], summary["rows_scored"], summary["rows_empty"]) == (10, 9, 1)

    (tmp_path / "bad.csv").write_text(MALFORMED)
    result = runner.invoke(app, ["predict", "sentiment", "bad.csv", "out.csv", "--skip-malformed"])
    assert result.exit_code == 0, result.output
    assert "2 malformed (skipped, lines 5, 7)" in result.stdout
