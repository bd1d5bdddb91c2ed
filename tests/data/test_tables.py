"""read_table_source: CSV, Parquet, partitioned folders and SQL, on real data and bad input."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import pandas as pd
import pytest

from loopline.data.tables import parse_datetimes, read_table_source
from loopline.errors import DataError


def fraud_month(shared_data: Path) -> Path:
    return shared_data / "fraud" / "fraud_handbook_simulated" / "transactions_2018-04.csv.gz"


@functools.cache
def _read_sample(path: Path) -> pd.DataFrame:
    return read_table_source(path).iloc[::144].reset_index(drop=True)


@pytest.fixture
def fraud_sample(shared_data: Path) -> pd.DataFrame:
    """Every 144th transaction of April 2018: 2,001 rows over the whole month (read once)."""
    return _read_sample(fraud_month(shared_data)).copy()


# ---------------------------------------------------------------------------------------------
# real data


def test_fraud_month_csv_gz_with_inferred_types(shared_data: Path) -> None:
    df = read_table_source(fraud_month(shared_data))
    assert len(df) == 288_062
    assert list(df.columns) == [
        "TRANSACTION_ID",
        "TX_DATETIME",
        "CUSTOMER_ID",
        "TERMINAL_ID",
        "TX_AMOUNT",
        "TX_TIME_SECONDS",
        "TX_TIME_DAYS",
        "TX_FRAUD",
        "TX_FRAUD_SCENARIO",
    ]
    assert pd.api.types.is_datetime64_any_dtype(df["TX_DATETIME"])
    assert pd.api.types.is_integer_dtype(df["TRANSACTION_ID"])
    assert pd.api.types.is_float_dtype(df["TX_AMOUNT"])
    assert int(df["TX_FRAUD"].sum()) == 1702
    assert df["TX_FRAUD_SCENARIO"].value_counts().to_dict() == {0: 286_360, 2: 931, 3: 603, 1: 168}


def test_columns_select_in_the_order_given(shared_data: Path) -> None:
    df = read_table_source(fraud_month(shared_data), columns=["TX_AMOUNT", "TRANSACTION_ID"])
    assert list(df.columns) == ["TX_AMOUNT", "TRANSACTION_ID"]
    assert len(df) == 288_062


def test_unknown_column_lists_the_available_ones_and_suggests(shared_data: Path) -> None:
    with pytest.raises(DataError) as info:
        read_table_source(fraud_month(shared_data), columns=["TX_AMOUNTS", "TRANSACTION_ID"])
    err = info.value
    assert "unknown column 'TX_AMOUNTS'" in err.message
    assert "available columns: TRANSACTION_ID, TX_DATETIME" in err.message
    assert err.hint is not None and "did you mean 'TX_AMOUNT'" in err.hint


def test_folder_of_csv_files_is_read_in_file_name_order(shared_data: Path) -> None:
    df = read_table_source(shared_data / "spam_youtube")
    assert len(df) == 1956
    assert list(df.columns) == ["COMMENT_ID", "AUTHOR", "DATE", "CONTENT", "CLASS"]
    assert df["CLASS"].value_counts().to_dict() == {1: 1005, 0: 951}
    psy = read_table_source(shared_data / "spam_youtube" / "Youtube01-Psy.csv")
    shakira = read_table_source(shared_data / "spam_youtube" / "Youtube05-Shakira.csv")
    assert df["COMMENT_ID"].head(350).tolist() == psy["COMMENT_ID"].tolist()
    assert df["COMMENT_ID"].tail(370).tolist() == shakira["COMMENT_ID"].tolist()
    # Eminem's 245 empty DATE fields are missing values, not empty strings.
    assert int(df["DATE"].isna().sum()) == 245
    assert pd.api.types.is_datetime64_any_dtype(df["DATE"])


def test_parse_dates_converts_strings(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("id,when\n1,04/01/2018 10:00\n2,04/02/2018 11:30\n3,\n")
    raw = read_table_source(path)
    assert not pd.api.types.is_datetime64_any_dtype(raw["when"])
    df = read_table_source(path, parse_dates=["when"])
    assert df["when"].iloc[1] == pd.Timestamp("2018-04-02 11:30")
    assert pd.isna(df["when"].iloc[2])


def test_parse_dates_reports_the_column_and_a_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("id,when\n1,2018-04-01\n2,soon\n3,2018-04-03\n")
    with pytest.raises(DataError, match=r"column 'when' .*not dates.*'soon' \(row 1; 1 such"):
        read_table_source(path, parse_dates=["when"])
    with pytest.raises(DataError, match=r"unknown column 'whn' \(parse_dates=\)"):
        read_table_source(path, parse_dates=["whn"])
    with pytest.raises(DataError, match="holds int64 numbers, not dates"):
        parse_datetimes(pd.Series([1, 2]), "id")


# ---------------------------------------------------------------------------------------------
# Parquet and partitioned folders


def test_parquet_file_and_format_override(tmp_path: Path, fraud_sample: pd.DataFrame) -> None:
    path = tmp_path / "tx.data"  # no telling extension: detected by its magic bytes
    fraud_sample.to_parquet(path)
    df = read_table_source(path)
    pd.testing.assert_frame_equal(df, fraud_sample, check_dtype=False)
    assert len(read_table_source(path, format="parquet")) == 2001


def test_hive_partitioned_parquet_keys_become_columns(
    tmp_path: Path, fraud_sample: pd.DataFrame
) -> None:
    root = tmp_path / "tx"
    days = fraud_sample["TX_DATETIME"].dt.day
    for day, part in fraud_sample.groupby(days):
        folder = root / "month=4" / f"day={day}"
        folder.mkdir(parents=True)
        part.to_parquet(folder / "part-0.parquet")
    (root / "_SUCCESS").write_text("")  # written by Spark; skipped
    df = read_table_source(root)
    assert len(df) == 2001
    assert list(df.columns) == [*fraud_sample.columns, "month", "day"]
    assert (df["month"] == 4).all()
    assert (df["day"] == df["TX_DATETIME"].dt.day).all()
    assert df["day"].nunique() == 30
    # Read in path order: "day=10" sorts before "day=2", and rows keep their order per file.
    assert df["day"].drop_duplicates().tolist()[:3] == [1, 10, 11]


def test_partitioned_csv_unifies_int_and_float(tmp_path: Path) -> None:
    (tmp_path / "region=north").mkdir()
    (tmp_path / "region=south").mkdir()
    (tmp_path / "region=north" / "a.csv").write_text("id,amount\n1,10\n2,20\n")
    (tmp_path / "region=south" / "a.csv.gz").write_bytes(gzip.compress(b"id,amount\n3,2.5\n"))
    df = read_table_source(tmp_path)
    assert df["amount"].tolist() == [10.0, 20.0, 2.5]
    assert df["region"].tolist() == ["north", "north", "south"]


def test_files_with_conflicting_types_name_both(tmp_path: Path) -> None:
    (tmp_path / "1.csv").write_text("id,amount\n1,10\n")
    (tmp_path / "2.csv").write_text("id,amount\n2,ten\n")
    with pytest.raises(DataError, match=r"column 'amount' has type int64 in 1\.csv but string"):
        read_table_source(tmp_path)


# ---------------------------------------------------------------------------------------------
# bad files and folders


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data file or folder not found: .*nope\.csv"):
        read_table_source(tmp_path / "nope.csv")


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match=r"data file is empty: .*empty\.csv \(0 bytes\)"):
        read_table_source(empty)
    header = tmp_path / "header.csv"
    header.write_text("a,b\n")
    with pytest.raises(DataError, match=r"no data rows in .*header\.csv"):
        read_table_source(header)


def test_malformed_row_in_a_folder_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,amount\n1,10\n")
    (tmp_path / "b.csv").write_text("id,amount\n2,20\n3,30,oops\n")
    with pytest.raises(DataError) as info:
        read_table_source(tmp_path)
    assert "malformed CSV row in" in info.value.message
    assert "b.csv: line 3 has 3 fields, expected 2" in info.value.message


def test_undecodable_bytes_name_line_and_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("id,city\n1,Zürich\n".encode("latin-1"))
    with pytest.raises(DataError, match="line 2") as info:
        read_table_source(path)
    assert info.value.hint is not None and "latin-1" in info.value.hint
    assert read_table_source(path, encoding="latin-1")["city"].tolist() == ["Zürich"]


def test_folder_without_data_files(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(DataError, match=r"no CSV or Parquet files in folder .*found README\.md"):
        read_table_source(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="found nothing"):
        read_table_source(empty)


def test_folder_of_mixed_formats(tmp_path: Path, fraud_sample: pd.DataFrame) -> None:
    fraud_sample.head(10).to_csv(tmp_path / "a.csv", index=False)
    fraud_sample.tail(10).to_parquet(tmp_path / "b.parquet")
    with pytest.raises(DataError, match=r"mixes file formats: 1 csv files .*1 parquet files"):
        read_table_source(tmp_path)
    assert len(read_table_source(tmp_path, format="parquet")) == 10
    assert len(read_table_source(tmp_path, format="csv")) == 10


def test_unknown_format_and_file_options_on_a_file(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a\n1\n")
    with pytest.raises(DataError, match="unknown table format 'xls'"):
        read_table_source(path, format="xls")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="query= and table= apply to databases"):
        read_table_source(path, table="t")
    with pytest.raises(DataError, match="unsupported URL"):
        read_table_source("https://example.org/t.csv")


# ---------------------------------------------------------------------------------------------
# SQL


@pytest.fixture
def sqlite_url(tmp_path: Path, fraud_sample: pd.DataFrame) -> str:
    import sqlalchemy as sa

    path = tmp_path / "tx.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    fraud_sample.to_sql("transactions", engine, index=False)
    engine.dispose()
    return f"sqlite:///{path}"


def test_sqlite_table_and_query(sqlite_url: str, fraud_sample: pd.DataFrame) -> None:
    df = read_table_source(sqlite_url, table="transactions")
    assert len(df) == 2001 and list(df.columns) == list(fraud_sample.columns)
    assert pd.api.types.is_datetime64_any_dtype(df["TX_DATETIME"])  # typed by reflection
    fraud = read_table_source(
        sqlite_url,
        query="SELECT TRANSACTION_ID, TX_AMOUNT, TX_DATETIME FROM transactions "
        "WHERE TX_FRAUD = 1 ORDER BY TRANSACTION_ID",
        parse_dates=["TX_DATETIME"],
    )
    expected = fraud_sample.loc[fraud_sample["TX_FRAUD"] == 1, "TRANSACTION_ID"].tolist()
    assert fraud["TRANSACTION_ID"].tolist() == expected
    assert pd.api.types.is_datetime64_any_dtype(fraud["TX_DATETIME"])


def test_sql_needs_exactly_one_of_query_and_table(sqlite_url: str) -> None:
    with pytest.raises(DataError, match="exactly one of query= or table=, found neither"):
        read_table_source(sqlite_url)
    with pytest.raises(DataError, match="found both"):
        read_table_source(sqlite_url, table="transactions", query="SELECT 1")
    with pytest.raises(DataError, match="expected a read-only SELECT query, found 'DELETE"):
        read_table_source(sqlite_url, query="DELETE FROM transactions")


def test_sql_errors_are_one_line(sqlite_url: str) -> None:
    with pytest.raises(DataError) as info:
        read_table_source(sqlite_url, table="transaction")
    assert "no table 'transaction'" in info.value.message
    assert "tables there: transactions" in info.value.message
    assert info.value.hint == "did you mean 'transactions'?"
    with pytest.raises(DataError, match=r'near "FORM": syntax error') as info:
        read_table_source(sqlite_url, query="SELECT * FORM transactions")
    assert "\n" not in info.value.message
    with pytest.raises(DataError, match="no such table: nowhere"):
        read_table_source(sqlite_url, query="SELECT * FROM nowhere")


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(DataError, match="SQLite database file not found"):
        read_table_source(f"sqlite:///{path}", table="t")
    assert not path.exists()


def test_unreachable_server_hides_the_password() -> None:
    url = "postgresql://reader:s3cr3t-pw@127.0.0.1:1/warehouse"
    with pytest.raises(DataError) as info:
        read_table_source(url, query="SELECT 1")
    message = info.value.message
    assert "s3cr3t-pw" not in str(info.value)
    assert "postgresql+psycopg://reader:***@127.0.0.1:1/warehouse" in message
    assert "\n" not in message
    assert info.value.hint is not None and "server is running" in info.value.hint


@pytest.mark.postgres
def test_postgresql_url_reads_through_psycopg3(
    postgres_url: str, fraud_sample: pd.DataFrame
) -> None:
    import sqlalchemy as sa

    from loopline.core.dburl import sqlalchemy_url

    engine = sa.create_engine(sqlalchemy_url(postgres_url))
    fraud_sample.head(100).to_sql("transactions", engine, index=False)
    engine.dispose()
    df = read_table_source(postgres_url, table="transactions")  # a plain postgresql:// URL
    assert len(df) == 100
    amounts = read_table_source(
        postgres_url, query='SELECT "TX_AMOUNT" FROM transactions WHERE "TX_AMOUNT" > 100'
    )
    assert (amounts["TX_AMOUNT"] > 100).all()
