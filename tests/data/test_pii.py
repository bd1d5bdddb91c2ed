"""Personal data masked at the door: policies, keyed pseudonyms, free-text recognisers.

On the AWS Fraud Detector samples (../shared/data/fraud/aws_fraud_detector_samples), whose
synthetic customers have names, e-mails, phones, SSN-like ids, IPs and street addresses.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from loopline import pipeline
from loopline.config import load_settings
from loopline.core.artifacts import ArtifactStore
from loopline.data.pii import (
    KEY_ENV,
    POLICIES,
    PSEUDONYM,
    PiiKeyMissing,
    PiiKeyRing,
    PiiMasker,
    PiiPolicy,
    TextScanner,
    load_key_ring,
    load_policy,
    open_masker,
    pii_settings,
)
from loopline.data.pii_steps import read_pii_table
from loopline.errors import ConfigError, DataError, StepFailed

KEY = "1:" + "k" * 32
OTHER_KEY = "1:" + "z" * 32
AWS = Path("fraud/aws_fraud_detector_samples")
FILES = {
    "transaction_data_2K_coldstart.csv": "aws-transactions",
    "registration_data_2K_coldstart.csv": "aws-registrations",
    "registration_data_20K_minimum.csv": "aws-registrations",
    "Insurance_FraudulentAutoInsuranceClaims_2K_coldstart.csv": "aws-insurance",
}


@pytest.fixture(scope="module")
def presidio() -> TextScanner:
    pytest.importorskip("presidio_analyzer")
    scanner = TextScanner("presidio")
    scanner.warm_up()
    return scanner


def _read(shared_data: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(shared_data / AWS / name)


def _cells(frame: pd.DataFrame) -> set[str]:
    return {str(v) for column in frame.columns for v in frame[column].dropna().unique()}


# -- masking per kind on the AWS files -------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FILES))
def test_no_raw_value_of_a_personal_column_survives_mask_frame(
    shared_data: Path, name: str
) -> None:
    raw = _read(shared_data, name)
    policy = load_policy(FILES[name])
    masked = PiiMasker(policy, KEY).mask_frame(raw)

    personal = {c: r for c, r in policy.columns.items() if r.kind != "keep" and c in raw.columns}
    assert personal
    cells = _cells(masked)
    text = "\n".join(sorted(_cells(masked[[c for c in masked.columns if c in personal]])))
    # A value a kept column also holds is no leak (the town of Dennis, MA; customer Dennis).
    kept = _cells(raw[[c for c in raw.columns if c not in personal]])
    for column, rule in personal.items():
        values = {str(v) for v in raw[column].dropna().unique()} - kept
        if rule.kind == "generalise":
            continue
        assert not values & cells, column
        long_values = [v for v in values if len(v) >= 6]
        assert not [v for v in long_values if v in text], column
        if rule.kind == "drop":
            assert column not in masked.columns
        elif rule.kind == "identifier":
            assert masked[column].dropna().map(lambda v: bool(PSEUDONYM.fullmatch(v))).all()
    assert len(masked) == len(raw)


def test_each_kind_does_what_the_policy_says(shared_data: Path) -> None:
    raw = _read(shared_data, "transaction_data_2K_coldstart.csv")
    masked = PiiMasker("aws-transactions", KEY).mask_frame(raw)
    first_raw, first = raw.iloc[0], masked.iloc[0]

    assert first_raw["ENTITY_ID"] == "070-69-2161"
    assert first["ENTITY_ID"].startswith("pn1_") and len(first["ENTITY_ID"]) == 36
    assert "customer_name" not in masked.columns and "billing_street" not in masked.columns
    assert first["billing_zip"] == str(first_raw["billing_zip"])[:3]
    assert first["billing_latitude"] == round(first_raw["billing_latitude"], 1)
    assert first_raw["billing_phone"] == "+1-021-436-2616-2085"
    assert first["billing_phone"] == "+*-***-***-****-**85"  # the shape, the last 2 digits
    for kept in ("user_agent", "order_price", "merchant", "EVENT_TIMESTAMP", "card_bin"):
        assert first[kept] == first_raw[kept]

    insurance = _read(shared_data, "Insurance_FraudulentAutoInsuranceClaims_2K_coldstart.csv")
    claims = PiiMasker("aws-insurance", KEY).mask_frame(insurance)
    assert claims["date_of_birth"].iloc[0] == 1956
    assert claims["customer_age"].iloc[0] == 45.0  # 47 in buckets of 5
    assert not {"first_name", "last_name"} & set(claims.columns)


def test_category_and_domain_masks() -> None:
    policy = PiiPolicy.from_json(
        {
            "columns": {
                "email": {"kind": "mask", "pii": "email"},
                "contact": {"kind": "mask", "style": "domain"},
                "ssn": {"kind": "mask", "style": "shape", "keep_last": 4},
            }
        }
    )
    frame = pd.DataFrame(
        {"email": ["a@b.org"], "contact": ["Jason@Lynch.org"], "ssn": ["070-69-2161"]}
    )
    masked = PiiMasker(policy, KEY).mask_frame(frame).iloc[0].to_dict()

    assert masked == {"email": "[EMAIL]", "contact": "***@lynch.org", "ssn": "***-**-2161"}


def test_pseudonyms_are_stable_per_key_and_differ_across_keys(shared_data: Path) -> None:
    raw = _read(shared_data, "transaction_data_2K_coldstart.csv")
    once = PiiMasker("aws-transactions", KEY).mask_frame(raw)
    again = PiiMasker("aws-transactions", KEY).mask_frame(raw)
    other = PiiMasker("aws-transactions", OTHER_KEY).mask_frame(raw)

    assert once["customer_email"].equals(again["customer_email"])
    assert not set(once["customer_email"]) & set(other["customer_email"])
    # Joins and per-customer features still work: the same groups, under other names.
    sizes = raw.groupby("ENTITY_ID").size().sort_values().tolist()
    assert once.groupby("ENTITY_ID").size().sort_values().tolist() == sizes
    assert raw["ENTITY_ID"].nunique() == once["ENTITY_ID"].nunique()
    # Case and spaces around an e-mail address do not make another subject.
    masker = PiiMasker("aws-transactions", KEY)
    assert masker.pseudonym(" Jason@Lynch.org ") == masker.pseudonym("jason@lynch.org")


def test_mask_record_gives_the_row_mask_frame_gives(shared_data: Path) -> None:
    raw = _read(shared_data, "transaction_data_2K_coldstart.csv").head(200)
    masker = PiiMasker("aws-transactions", KEY)
    frame = masker.mask_frame(raw)

    for i, record in enumerate(raw.to_dict("records")):
        one = masker.mask_record(record)
        assert list(one) == list(frame.columns)
        for column, value in one.items():
            expected = frame[column].iloc[i]
            if _missing(value) or _missing(expected):
                assert _missing(value) and _missing(expected), column
            else:
                assert value == expected, column


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


# -- free text -------------------------------------------------------------------------------

PLANTED = {
    "EMAIL_ADDRESS": "jasonsnyder@lynch.org",
    "PHONE_NUMBER": "(555)355 - 1785",
    "IP_ADDRESS": "25.45.36.165",
    "US_SSN": "070-69-2161",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "STREET_ADDRESS": "4900 Zachary Field Apt. 377",
}
NOTE = (
    "Customer called from (555)355 - 1785 and again from +1-021-436-2616-2085; mail "
    "jasonsnyder@lynch.org, login from 25.45.36.165 and 2001:db8::8a2e:370:7334. SSN "
    "070-69-2161, card 4111 1111 1111 1111, lives at 4900 Zachary Field Apt. 377."
)


@pytest.mark.parametrize("engine", ["regex", "presidio"])
def test_free_text_scanning_finds_planted_personal_data(engine: str, presidio: TextScanner) -> None:
    scanner = presidio if engine == "presidio" else TextScanner("regex")

    found = {span.entity for span in scanner.find(NOTE)}
    redacted = scanner.redact(NOTE)

    assert set(PLANTED) <= found
    for value in [*PLANTED.values(), "+1-021-436-2616-2085", "2001:db8::8a2e:370:7334"]:
        assert value not in redacted
    assert "[EMAIL]" in redacted and "[PHONE]" in redacted and "[ADDRESS]" in redacted
    assert redacted.startswith("Customer called from [PHONE]")


@pytest.mark.parametrize("engine", ["regex", "presidio"])
def test_version_numbers_and_ids_are_not_personal_data(engine: str, presidio: TextScanner) -> None:
    scanner = presidio if engine == "presidio" else TextScanner("regex")
    texts = [
        "Mozilla/5.0 (X11; Linux i686; rv:1.9.6.20) Gecko/2011-05-16 12:45:20 Firefox/3.8",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/534.1 Chrome/31.0.816.0 Safari/534.1",
        "run 3f2a9c1e7d4b4c0e8a6b2d9f1e3c5a7b at 2022-12-24T15:53:30Z took 0.1234567890 s",
        "order 101208c0a99b601c4b11a8fb8fedc75d6 for 7.53 BIF",
    ]
    for text in texts:
        assert scanner.find(text) == [], text


def test_presidio_adds_international_phone_numbers_and_ibans(presidio: TextScanner) -> None:
    text = "call our London office on +44 20 7946 0958, pay to DE89 3704 0044 0532 0130 00"

    assert not TextScanner("regex").find(text)
    assert [s.entity for s in presidio.find(text)] == ["PHONE_NUMBER", "IBAN_CODE"]


def test_names_in_free_text_are_replaced_when_they_are_the_rows_own(shared_data: Path) -> None:
    # Without an NLP model no recogniser finds a bare name; the row's own name column does.
    raw = _read(shared_data, "transaction_data_2K_coldstart.csv").head(3)
    raw["notes"] = [
        f"{raw['customer_name'][0]} phoned, wants a refund to {raw['customer_email'][0]}",
        "no contact details given",
        f"ask {raw['customer_name'][2]} about 4900 Zachary Field Apt. 377",
    ]
    policy = PiiPolicy.from_json({**POLICIES["aws-transactions"], "scan": ["notes"]})
    masker = PiiMasker(policy, KEY)
    masked = masker.mask_frame(raw)

    assert masked["notes"][0] == (
        f"[NAME] phoned, wants a refund to {masker.pseudonym(raw['customer_email'][0])}"
    )
    assert masked["notes"][1] == "no contact details given"
    assert masked["notes"][2] == "ask [NAME] about [ADDRESS]"
    assert masker.mask_record(raw.iloc[0].to_dict())["notes"] == masked["notes"][0]
    assert TextScanner("regex").find("Dennis phoned") == []  # the weakness, stated


def test_unknown_columns_follow_the_policy() -> None:
    frame = pd.DataFrame({"email": ["a@b.org"], "note": ["write to c@d.org"], "n": [1]})
    base = {"columns": {"email": "identifier"}}

    scanned = PiiMasker(PiiPolicy.from_json({**base, "unknown": "scan"}), KEY).mask_frame(frame)
    dropped = PiiMasker(PiiPolicy.from_json({**base, "unknown": "drop"}), KEY).mask_frame(frame)

    assert scanned["note"][0] == "write to [EMAIL]" and scanned["n"][0] == 1
    assert list(dropped.columns) == ["email"]
    with pytest.raises(DataError, match=r"does not say what the columns \['note', 'n'\] hold"):
        PiiMasker(PiiPolicy.from_json({**base, "unknown": "error"}), KEY).mask_frame(frame)


# -- keys ------------------------------------------------------------------------------------


def test_no_key_is_a_clear_error_never_an_unkeyed_hash(project: Path) -> None:
    settings = load_settings(project)

    with pytest.raises(PiiKeyMissing) as caught:
        open_masker(settings, "aws-transactions", environ={})

    assert "no PII key is configured" in caught.value.message
    assert KEY_ENV in (caught.value.hint or "") and "key_file" in (caught.value.hint or "")


def test_a_short_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_key_ring(environ={KEY_ENV: "2:hunter2"})

    assert "is 7 characters long; at least 16" in caught.value.message
    assert "hunter2" not in str(caught.value)


def test_the_key_never_shows_in_reprs_or_fingerprints() -> None:
    ring = PiiKeyRing.from_text("7:" + "s3cret" * 4, "test")
    masker = PiiMasker("aws-transactions", ring)

    for text in (repr(ring), repr(ring.current), repr(masker), masker.fingerprint()):
        assert "s3cret" not in text
    assert masker.pseudonym("x").startswith("pn7_")


def test_key_file_from_settings_and_rotation(project: Path) -> None:
    (project / "pii.key").write_text(f"# rotated 2026-11\n2:{'n' * 32}\n1:{'o' * 32}\n")
    (project / "loopline.yaml").write_text(
        "pii:\n  policy: aws-transactions\n  key_file: pii.key\n"
    )
    settings = load_settings(project)
    old = PiiMasker("aws-transactions", "1:" + "o" * 32)

    masker = open_masker(settings, environ={})

    assert masker.policy.name == "aws-transactions"
    assert masker.keys.current.id == 2
    new_pseudonym = masker.pseudonym("jason@lynch.org")
    assert new_pseudonym is not None and new_pseudonym.startswith("pn2_")
    # The old key stays for reads: forget finds the pn1_ records of before the rotation.
    assert masker.pseudonyms("jason@lynch.org") == [new_pseudonym, old.pseudonym("jason@lynch.org")]
    # The environment wins over the file.
    assert open_masker(settings, environ={KEY_ENV: KEY}).pseudonym("x").startswith("pn1_")


def test_the_pii_settings_section_is_validated(project: Path) -> None:
    (project / "loopline.yaml").write_text("pii:\n  polcy: aws-transactions\n")

    with pytest.raises(ConfigError, match=r"pii\.polcy: Extra inputs are not permitted"):
        pii_settings(load_settings(project))


def test_policies_are_json_and_bad_ones_say_what_is_wrong() -> None:
    policy = load_policy("aws-transactions")

    assert PiiPolicy.from_json(policy.to_json()) == policy
    with pytest.raises(ConfigError, match=r"columns\.zip\.kind"):
        PiiPolicy.from_json({"columns": {"zip": "hide"}})
    with pytest.raises(ConfigError, match="generalised but says not how"):
        PiiPolicy.from_json({"columns": {"zip": "generalise"}})
    with pytest.raises(ConfigError, match="unknown PII policy 'nope'"):
        load_policy("nope")


# -- the door: read_pii_table ------------------------------------------------------------------


@pipeline
def door(source: str) -> None:
    read_pii_table(source, dataset="transactions")


def test_read_pii_table_stores_only_the_masked_table(
    project: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = project / "tx.csv"
    _read(shared_data, "transaction_data_2K_coldstart.csv").head(40).to_csv(source, index=False)
    (project / "loopline.yaml").write_text("pii:\n  policy: aws-transactions\n")
    settings = load_settings(project)
    monkeypatch.setenv(KEY_ENV, KEY)

    first = door.run(settings, source=str(source))
    cached = door.run(settings, source=str(source))
    monkeypatch.setenv(KEY_ENV, OTHER_KEY)
    rekeyed = door.run(settings, source=str(source))

    assert first.status == cached.status == rekeyed.status == "completed"
    assert cached.cache_hits == 1 and rekeyed.cache_hits == 0  # another key, another output
    assert settings.artifact_root
    store = ArtifactStore(settings.artifact_root)
    assert len(store.list_hashes()) == 2  # one masked table per key, never the raw one
    for digest in store.list_hashes():
        table = store.load(digest)
        assert "customer_name" not in table.columns
        assert table["customer_email"].str.startswith("pn1_").all()
    everything = b"".join(p.read_bytes() for p in settings.home_dir.rglob("*") if p.is_file())
    for secret in ("k" * 32, "z" * 32, "070-69-2161"):
        assert secret.encode() not in everything


def test_read_pii_table_without_a_key_reads_nothing(
    project: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = project / "tx.csv"
    _read(shared_data, "transaction_data_2K_coldstart.csv").head(5).to_csv(source, index=False)
    (project / "loopline.yaml").write_text("pii:\n  policy: aws-transactions\n")
    monkeypatch.delenv(KEY_ENV, raising=False)

    settings = load_settings(project)

    with pytest.raises(StepFailed) as caught:
        door.run(settings, source=str(source))

    assert isinstance(caught.value.cause, PiiKeyMissing)
    assert settings.artifact_root and not ArtifactStore(settings.artifact_root).list_hashes()


def test_read_pii_table_errors_do_not_quote_personal_data(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # read_table's own message quotes the bad value; stored in runs.error, printed by the CLI.
    monkeypatch.setenv(KEY_ENV, KEY)
    source = project / "bad.csv"
    source.write_text("email,note\njasonsnyder@lynch.org,hello\n")

    with pytest.raises(DataError) as caught:
        read_pii_table.fn(str(source), policy={"columns": {"email": "identifier"}},
                          parse_dates=["email"])  # fmt: skip

    assert caught.value.message == (
        "column 'email' holds values that are not dates or times: '[EMAIL]' (row 0; 1 such "
        "rows in all)"
    )
    assert "jasonsnyder" not in str(caught.value)
