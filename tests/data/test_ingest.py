"""Readers for text datasets: real shared data, every supported format, every bad input."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from loopline.data.ingest import (
    SENTIMENT140_URL,
    fetch_url,
    load_source,
    read_sentiment140,
    read_table,
    read_text_folder,
    read_text_lines,
    read_vader_ground_truth,
)
from loopline.errors import DataError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
S140_SAMPLE = SHARED / "sentiment" / "sentiment140_train_sample"
VADER = SHARED / "sentiment" / "vader" / "tweets_GroundTruth.txt"


def s140_row(polarity: int, text: str, i: int = 1) -> str:
    """One line of the Sentiment140 CSV (every field quoted, as in the original)."""
    return (
        f'"{polarity}","{1467810369 + i}","Mon Apr 06 22:19:45 PDT 2009","NO_QUERY","u{i}","{text}"'
    )


# ---------------------------------------------------------------------------------------------
# the real shared data


def test_sentiment140_sample_folder_loads_both_labels() -> None:
    df = load_source(S140_SAMPLE)
    assert len(df) == 100_000
    assert list(df.columns[:2]) == ["text", "label"]
    assert df["label"].value_counts().to_dict() == {"negative": 50_000, "positive": 50_000}
    assert df["text"].str.contains("[\r\n]", regex=True).sum() == 0
    first_negative = df.loc[df["label"] == "negative", "text"].iloc[0]
    assert first_negative.startswith("@switchfoot http://twitpic.com/2y1zl - Awww")


def test_read_text_lines_takes_the_label_per_file() -> None:
    df = read_text_lines({S140_SAMPLE / "positive_tweets_50k.txt.gz": "positive"})
    assert len(df) == 50_000
    assert set(df["label"]) == {"positive"}
    assert df["text"].iloc[-1].startswith("happy #charitytuesday")


def test_vader_ground_truth_with_default_threshold() -> None:
    df = read_vader_ground_truth(VADER)
    assert df["label"].value_counts().to_dict() == {"positive": 2824, "negative": 1268}
    assert {"text", "label", "score", "id"} <= set(df.columns)
    assert (df.loc[df["label"] == "positive", "score"] > 0.05).all()
    # Quotes are literal characters in this file (read with quoting off).
    row = df[df["id"] == "50"].iloc[0]
    assert row["text"] == 'Repeat after me "dcpromo is my friend... dcpromo is my friend"'


def test_vader_keeps_neutral_rows_on_request() -> None:
    df = read_vader_ground_truth(VADER, keep_neutral=True)
    assert len(df) == 4200
    assert df["label"].value_counts()["neutral"] == 108


def test_load_source_detects_vader_file() -> None:
    df = load_source(VADER)
    assert len(df) == 2824 + 1268
    assert "score" in df.columns


# ---------------------------------------------------------------------------------------------
# formats


def test_sentiment140_csv_maps_polarity_and_reads_latin1(tmp_path: Path) -> None:
    path = tmp_path / "training.csv"
    rows = [s140_row(0, "so sad, really", 1), s140_row(2, "meh", 2), s140_row(4, "café :)", 3)]
    path.write_bytes(("\r\n".join(rows) + "\r\n").encode("latin-1"))
    df = read_sentiment140(path)
    assert df["label"].tolist() == ["negative", "neutral", "positive"]
    assert df["text"].tolist() == ["so sad, really", "meh", "café :)"]
    assert list(df.columns) == ["text", "label", "polarity", "id", "date", "query", "user"]
    assert df["id"].iloc[0] == "1467810370"


def test_sentiment140_zip_reads_the_training_member(tmp_path: Path) -> None:
    path = tmp_path / "trainingandtestdata.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("training.1600000.processed.noemoticon.csv", s140_row(4, "yes") + "\n")
        zf.writestr("testdata.manual.2009.06.14.csv", s140_row(0, "no") + "\n")
    df = load_source(path)
    assert df[["text", "label"]].values.tolist() == [["yes", "positive"]]


def test_sentiment140_rejects_unknown_polarity(tmp_path: Path) -> None:
    path = tmp_path / "s140.csv"
    path.write_text(s140_row(4, "ok") + "\n" + s140_row(3, "hm") + "\n")
    with pytest.raises(DataError, match=r"expected 0, 2 or 4.*found '3' on line 2"):
        read_sentiment140(path)


def test_text_lines_keep_blank_lines_and_strip_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "neg.txt.gz"
    path.write_bytes(gzip.compress("\ufeffbad day\r\n\r\n  spaces kept  \r\nlast\r".encode()))
    df = read_text_lines({path: "negative"})
    assert df["text"].tolist() == ["bad day", "", "  spaces kept  ", "last"]
    assert df["label"].tolist() == ["negative"] * 4


def test_text_lines_keep_unusual_separators_inside_a_line(tmp_path: Path) -> None:
    path = tmp_path / "positive.txt"
    path.write_text("one\x0bstill one\u2028same\nnext\n", encoding="utf-8")
    assert read_text_lines({path: "positive"})["text"].tolist() == [
        "one\x0bstill one\u2028same",
        "next",
    ]


def test_text_lines_unlabelled_file(tmp_path: Path) -> None:
    path = tmp_path / "tweets.txt"
    path.write_text("a\nb\n")
    df = load_source(path)
    assert df["text"].tolist() == ["a", "b"]
    assert df["label"].isna().all()


def test_folder_of_line_files_uses_the_file_name_prefix(tmp_path: Path) -> None:
    (tmp_path / "positive_a.txt").write_text("yay\n")
    (tmp_path / "negative_b.txt.gz").write_bytes(gzip.compress(b"boo\n"))
    (tmp_path / "README.md").write_text("ignored")
    df = load_source(tmp_path)
    assert sorted(df[["text", "label"]].values.tolist()) == [
        ["boo", "negative"],
        ["yay", "positive"],
    ]


def test_table_csv_with_column_mapping_and_label_map(tmp_path: Path) -> None:
    path = tmp_path / "spam.csv"
    path.write_text('COMMENT_ID,CONTENT,CLASS\n1,"buy now, cheap",1\n2,nice song,0\n3,hm,\n')
    df = read_table(path, "CONTENT", "CLASS", label_map={1: "spam", 0: "ham"})
    assert list(df.columns) == ["text", "label", "COMMENT_ID"]
    assert df["text"].tolist() == ["buy now, cheap", "nice song", "hm"]
    assert df["label"].iloc[:2].tolist() == ["spam", "ham"]
    assert pd.isna(df["label"].iloc[2])


def test_table_without_labels(tmp_path: Path) -> None:
    path = tmp_path / "texts.csv"
    path.write_text("text,user\nhello,a\nNA,b\n")
    df = read_table(path, label_column=None)
    assert df["text"].tolist() == ["hello", "NA"]  # "NA" is a text, not a missing value
    assert df["label"].isna().all()
    assert "user" in df.columns


def test_parquet_table_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "data.parquet"
    pd.DataFrame({"review": ["good", "bad"], "stars": [5, 1]}).to_parquet(path)
    df = load_source(path, text_column="review", label_column="stars")
    assert df["text"].tolist() == ["good", "bad"]
    assert df["label"].tolist() == ["5", "1"]


def test_csv_without_sentiment140_shape_is_a_table(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("text,label\ngreat,positive\nawful,negative\n")
    df = load_source(path)
    assert df[["text", "label"]].values.tolist() == [["great", "positive"], ["awful", "negative"]]


def test_tab_separated_table(tmp_path: Path) -> None:
    path = tmp_path / "data.tsv"
    path.write_text("label\ttext\npositive\tgood, really\n")
    assert load_source(path)["text"].tolist() == ["good, really"]


def test_format_can_be_forced(tmp_path: Path) -> None:
    path = tmp_path / "export.dat"
    path.write_text("7\t-1.5\tterrible\n8\t2.0\tlovely\n")
    df = load_source(path, format="vader")
    assert df["label"].tolist() == ["negative", "positive"]


# ---------------------------------------------------------------------------------------------
# bad input


def test_missing_file_names_the_path() -> None:
    with pytest.raises(DataError, match=r"data file not found: .*nope\.csv") as info:
        load_source("nope.csv")
    assert info.value.hint
    for reader in (read_sentiment140, read_table, read_vader_ground_truth):
        with pytest.raises(DataError, match="data file not found"):
            reader("nope.csv")
    with pytest.raises(DataError, match="data file not found"):
        read_text_lines({"nope.txt": "positive"})


@pytest.mark.parametrize("name", ["empty.csv", "empty.txt", "empty.tsv", "empty.parquet"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(DataError, match="data file is empty"):
        load_source(path)


def test_empty_gzip_file(tmp_path: Path) -> None:
    path = tmp_path / "positive.txt.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(DataError, match="empty"):
        load_source(path)


def test_header_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("text,label\n")
    with pytest.raises(DataError, match="no data rows"):
        load_source(path)


def test_missing_columns_say_expected_found_and_how_to_map(tmp_path: Path) -> None:
    path = tmp_path / "yt.csv"
    path.write_text("COMMENT_ID,CONTENT,CLASS\n1,hi,0\n")
    with pytest.raises(DataError) as info:
        load_source(path)
    message = str(info.value)
    assert "missing column 'text' and 'label'" in message
    assert "found columns: COMMENT_ID, CONTENT, CLASS" in message
    assert info.value.hint is not None
    # The flags a command-line user types, and the arguments a Python user passes.
    assert "--text-column CONTENT --label-column CLASS" in info.value.hint
    assert "text_column and label_column arguments" in info.value.hint


def test_missing_label_column_only(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text\nhello\n")
    with pytest.raises(DataError, match="missing column 'label'") as info:
        read_table(path)
    assert "Python: label_column None" in (info.value.hint or "")


def test_non_utf8_csv_names_line_and_byte_and_suggests_latin1(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"text,label\nok,positive\ncaf\xe9 au lait,positive\n")
    with pytest.raises(DataError) as info:
        load_source(path)
    message = str(info.value)
    assert "cannot decode" in message and str(path) in message
    assert "line 3" in message and "byte offset 26" in message and "0xE9" in message
    assert "--encoding latin-1 (Python: the encoding argument)" in (info.value.hint or "")
    assert load_source(path, encoding="latin-1")["text"].iloc[1] == "café au lait"


def test_non_utf8_text_lines_names_line_and_byte(tmp_path: Path) -> None:
    path = tmp_path / "positive.txt"
    path.write_bytes(b"fine\nna\xefve\n")
    with pytest.raises(DataError, match=r"line 2, byte 3 of the line \(byte offset 7") as info:
        load_source(path)
    assert "latin-1" in (info.value.hint or "")


@pytest.mark.parametrize(
    ("row", "found"), [("bad,row,here", "3 fields"), ("short", "1 field")], ids=["long", "short"]
)
def test_malformed_csv_row(tmp_path: Path, row: str, found: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"text,label\nhello,positive\n{row}\nok,negative\n")
    with pytest.raises(DataError) as info:
        load_source(path)
    assert f"line 3 has {found}, expected 2" in str(info.value)
    assert "malformed CSV row" in str(info.value)


def test_malformed_sentiment140_row(tmp_path: Path) -> None:
    path = tmp_path / "s140.csv"
    path.write_text(s140_row(0, "a") + "\n" + '"4","2","d","q","u"\n')
    with pytest.raises(DataError, match="line 2 has 5 fields, expected 6"):
        read_sentiment140(path)


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(DataError, match="cannot read Parquet file"):
        load_source(path)


def test_folder_without_label_files(tmp_path: Path) -> None:
    (tmp_path / "tweets.txt").write_text("x\n")
    with pytest.raises(DataError, match=r"no text-line files in .*found: tweets\.txt"):
        load_source(tmp_path)


# ---------------------------------------------------------------------------------------------
# text folders: root/<label>/*.txt, one document per file


def spam_text_folder(shared_data: Path, root: Path, per_class: int = 15) -> pd.DataFrame:
    """Write YouTube comments as root/spam/*.txt and root/ham/*.txt; return what was written."""
    comments = pd.read_csv(shared_data / "spam_youtube" / "Youtube01-Psy.csv")
    written = []
    for cls, label in ((1, "spam"), (0, "ham")):
        (root / label).mkdir(parents=True)
        rows = comments[comments["CLASS"] == cls].head(per_class)
        for i, content in enumerate(rows["CONTENT"]):
            path = root / label / f"{i:03d}.txt"
            path.write_text(content, encoding="utf-8")
            written.append({"text": content, "label": label, "path": str(path.resolve())})
    return pd.DataFrame(written)


def test_text_folder_reads_one_document_per_file(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "comments"
    written = spam_text_folder(shared_data, root)
    (root / "README.md").write_text("ignored")
    (root / "ham" / "notes.md").write_text("ignored too")
    (root / ".cache").mkdir()
    (root / ".cache" / "x.txt").write_text("hidden folders are skipped")
    df = read_text_folder(root)
    assert list(df.columns) == ["text", "label", "path"]
    expected = written.sort_values(["label", "path"]).reset_index(drop=True)
    assert df["label"].tolist() == expected["label"].tolist() == ["ham"] * 15 + ["spam"] * 15
    assert df["path"].tolist() == expected["path"].tolist()
    assert df["text"].tolist() == expected["text"].tolist()  # byte for byte, U+FEFF included
    assert any(t.endswith("\ufeff") for t in df["text"])  # this source's trailing U+FEFF


def test_load_source_detects_a_text_folder(shared_data: Path, tmp_path: Path) -> None:
    root = tmp_path / "comments"
    spam_text_folder(shared_data, root, per_class=5)
    (root / "ham" / "multi.txt.gz").write_bytes(
        gzip.compress("\ufeffline one\nline two\n".encode())
    )
    df = load_source(root)
    assert len(df) == 11 and df["label"].value_counts().to_dict() == {"ham": 6, "spam": 5}
    multi = df.loc[df["path"].str.endswith("multi.txt.gz"), "text"].item()
    assert multi == "line one\nline two\n"  # BOM dropped, line breaks kept
    assert load_source(root, format="text_folder").equals(df)


def test_line_files_still_win_over_sub_folders(tmp_path: Path) -> None:
    (tmp_path / "positive.txt").write_text("yay\nwoo\n")
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "old.txt").write_text("a whole document")
    df = load_source(tmp_path)
    assert df["text"].tolist() == ["yay", "woo"] and set(df["label"]) == {"positive"}


def test_text_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="text folder not found"):
        read_text_folder(tmp_path / "missing")
    (tmp_path / "doc.txt").write_text("x")
    with pytest.raises(DataError, match="expected a folder of label sub-folders, found a file"):
        read_text_folder(tmp_path / "doc.txt")
    with pytest.raises(DataError, match=r"no documents in .*found: doc\.txt") as info:
        read_text_folder(tmp_path)
    assert info.value.hint is not None and "sub-folder named after their label" in info.value.hint
    (tmp_path / "neg").mkdir()
    (tmp_path / "neg" / "bad.txt").write_bytes("caf\u00e9".encode("latin-1"))
    with pytest.raises(DataError, match=r"cannot decode .*bad\.txt as utf-8: line 1") as info:
        read_text_folder(tmp_path)
    assert info.value.hint is not None and "latin-1" in info.value.hint
    assert read_text_folder(tmp_path, encoding="latin-1")["text"].tolist() == ["caf\u00e9"]


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "positive.txt.gz"
    path.write_bytes(gzip.compress(b"hello\n" * 100)[:30])
    with pytest.raises(DataError, match="cannot read"):
        load_source(path)


def test_unknown_format_and_encoding(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("text,label\na,positive\n")
    with pytest.raises(DataError, match="unknown data format"):
        load_source(path, format="xml")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="unknown text encoding"):
        load_source(path, encoding="utf-42")


# ---------------------------------------------------------------------------------------------
# downloads (a local HTTP server; no internet)


class _Server:
    """Serves ``files`` (path -> bytes) and counts the requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server()
    yield srv
    srv.close()


def test_fetch_downloads_once_and_records_the_digest(server: _Server, tmp_path: Path) -> None:
    body = b"text,label\nhi,positive\n"
    server.files["/d/data.csv"] = body
    url = f"{server.url}/d/data.csv"
    path = fetch_url(url, tmp_path)
    assert path.read_bytes() == body and path.name.endswith("data.csv")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest[url]["sha256"] == hashlib.sha256(body).hexdigest()
    assert fetch_url(url, tmp_path) == path
    assert server.requests == 1  # the cached copy was reused
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_fetch_verifies_a_given_sha256(server: _Server, tmp_path: Path) -> None:
    server.files["/x.csv"] = b"abc"
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch_url(f"{server.url}/x.csv", tmp_path, sha256="0" * 64)
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing partial left behind
    good = hashlib.sha256(b"abc").hexdigest()
    assert fetch_url(f"{server.url}/x.csv", tmp_path, sha256=good).read_bytes() == b"abc"


def test_fetch_trust_on_first_use_detects_a_changed_upstream(
    server: _Server, tmp_path: Path
) -> None:
    url = f"{server.url}/y.txt"
    server.files["/y.txt"] = b"first"
    path = fetch_url(url, tmp_path)
    path.write_bytes(b"tampered")  # the cached copy no longer matches the manifest ...
    server.files["/y.txt"] = b"second"  # ... and upstream changed too
    with pytest.raises(DataError, match="checksum mismatch") as info:
        fetch_url(url, tmp_path)
    assert "manifest.json" in (info.value.hint or "")
    assert not path.exists()


def test_fetch_http_error_and_unreachable_host(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="HTTP 404"):
        fetch_url(f"{server.url}/missing.csv", tmp_path)
    with pytest.raises(DataError, match="could not download"):
        fetch_url("http://127.0.0.1:9/nothing.csv", tmp_path, timeout=2)


def test_load_source_from_url(server: _Server, tmp_path: Path) -> None:
    server.files["/s140.csv"] = (s140_row(4, "good") + "\n" + s140_row(0, "bad") + "\n").encode()
    df = load_source(f"{server.url}/s140.csv", cache_dir=tmp_path)
    assert df["label"].tolist() == ["positive", "negative"]


def test_sentiment140_url_is_the_stanford_archive() -> None:
    assert SENTIMENT140_URL.endswith("cs.stanford.edu/people/alecmgo/trainingandtestdata.zip")
