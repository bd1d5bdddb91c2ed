"""Personal data masked at the door: a column policy, keyed pseudonyms and free-text scanning.

A :class:`PiiPolicy` says, per column, what kind of personal data it holds and what becomes of
it before anything is stored:

``identifier``
    a keyed pseudonym ``pn<key id>_<32 hex>`` (HMAC-SHA256 of the value, truncated to 128
    bits). The same value and key always give the same pseudonym, so joins and per-customer
    features still work; without the key nobody can recompute it from a guessed value.
``mask``
    ``style: category`` (default) writes ``[EMAIL]``; ``style: shape`` keeps the punctuation
    and the last ``keep_last`` characters (``070-69-2161`` -> ``***-**-2161``);
    ``style: domain`` keeps an e-mail's domain (``***@yahoo.com``).
``generalise``
    ``how: prefix`` keeps the first ``chars`` characters (a ZIP code's first 3 digits),
    ``how: year`` keeps a date's year, ``how: round`` rounds to ``decimals`` (latitude and
    longitude), ``how: bucket`` floors a number to a multiple of ``width`` (an age).
``drop``
    the column is removed.
``keep``
    the column is not personal data.

``scan`` lists free-text columns: each value is searched for the row's own personal values
(a customer's name in a note about them) and for e-mails, phone numbers, IP addresses,
SSN-like numbers, card numbers and street addresses by recognisers (:class:`TextScanner`:
Loopline's regular expressions plus Presidio's validated recognisers when
``presidio-analyzer`` is installed, ``pip install 'loopline[pii]'``); what they find is
replaced by a tag such as ``[PHONE]``. ``unknown`` says what happens to the columns the
policy does not name (``keep``, the default; ``scan``; ``drop``; ``error``).

The policy is JSON::

    {"columns": {"ENTITY_ID": "identifier",
                 "billing_phone": {"kind": "mask", "pii": "phone", "style": "shape",
                                   "keep_last": 2},
                 "billing_zip": {"kind": "generalise", "how": "prefix", "chars": 3}},
     "scan": ["notes"], "unknown": "keep"}

and :data:`POLICIES` holds ready ones for the AWS Fraud Detector samples
(``aws-transactions``, the fraud system's default; ``aws-registrations``; ``aws-insurance``).

The key
-------
Loopline never stores or logs the key. It comes from ``LOOPLINE_PII_KEY`` or from the file
named by ``pii.key_file`` in ``loopline.yaml`` (or ``LOOPLINE_PII_KEY_FILE``), and without
one masking stops with :class:`PiiKeyMissing`: there is no unkeyed fallback, because a plain
hash of an e-mail address is reversed by hashing a list of addresses. A key is a secret of
at least 16 characters (``python -c "import secrets; print(secrets.token_hex(32))"``),
given as ``SECRET`` (key id 1) or ``ID:SECRET``; a key file may hold several keys, one per
line (``#`` starts a comment). The key with the highest id writes; all of them are used
to find a data subject's records (``loopline pii forget``).

Rotation (what Loopline implements): add the new key with a higher id to the key file and
keep the old lines. New data gets ``pn2_`` pseudonyms from then on; stored ``pn1_``
pseudonyms stay readable as they are, and ``forget`` derives a subject's pseudonym under
every key in the file, so erasure still finds the old records. Pseudonyms cannot be
re-keyed in place (that would need the raw values, which Loopline never keeps): to join old
and new data under one key, re-ingest the raw sources after the rotation; ``loopline pii
audit`` counts the pseudonyms of each key id left in the stores, and once no ``pn1_`` is
left (or needed), remove key 1 from the file. A leaked key is rotated the same way, and the
data pseudonymised under it re-ingested or deleted, since the leaked key lets anyone test
guessed values against those pseudonyms.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from loopline.errors import ConfigError, DataError

if TYPE_CHECKING:
    import pandas as pd

    from loopline.config import Settings

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "POLICIES",
    "PSEUDONYM",
    "ColumnRule",
    "PiiKey",
    "PiiKeyMissing",
    "PiiKeyRing",
    "PiiMasker",
    "PiiPolicy",
    "PiiSettings",
    "Span",
    "TextScanner",
    "load_key_ring",
    "load_policy",
    "open_masker",
    "pii_settings",
    "redact_example",
]

_log = logging.getLogger(__name__)

KEY_ENV = "LOOPLINE_PII_KEY"
KEY_FILE_ENV = "LOOPLINE_PII_KEY_FILE"
MIN_KEY_LENGTH = 16
#: A pseudonym: ``pn<key id>_<32 lowercase hex>``.
PSEUDONYM = re.compile(r"\bpn(\d{1,6})_([0-9a-f]{32})\b")
_GENERATE_HINT = (
    'generate one with `python -c "import secrets; print(secrets.token_hex(32))"` and set '
    f"{KEY_ENV}, or put it in a file (mode 600) named by `pii: {{key_file: PATH}}` in "
    "loopline.yaml"
)

Kind = Literal["identifier", "mask", "drop", "generalise", "keep"]
KINDS: tuple[str, ...] = ("identifier", "mask", "drop", "generalise", "keep")


# -- settings ------------------------------------------------------------------------------


class PiiSettings(BaseModel):
    """The ``pii`` section of ``loopline.yaml``.

    ``policy``: a name from :data:`POLICIES`, a JSON file (relative to the project) or the
    policy itself; ``key_file``: the secret file; ``engine``: ``auto`` (Presidio when it is
    installed, else Loopline's recognisers), ``presidio`` or ``regex``; ``score_threshold``:
    the lowest Presidio score accepted (phone numbers score 0.4 without context words);
    ``redis_url`` and ``stream_prefix``: the Redis streams (dead letters) that ``pii audit``
    and ``pii forget`` cover, when the stream settings do not say.
    """

    model_config = ConfigDict(extra="forbid")

    policy: str | dict[str, Any] | None = None
    key_file: str | None = None
    engine: Literal["auto", "presidio", "regex"] = "auto"
    score_threshold: float = 0.3
    redis_url: str | None = None
    stream_prefix: str | None = None


def pii_settings(settings: Settings | None) -> PiiSettings:
    """The validated ``pii`` section (defaults when there is none)."""
    raw = getattr(settings, "pii", None) or {}
    try:
        return PiiSettings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"pii.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid pii settings: {problems}",
            hint="pii takes policy, key_file, engine, score_threshold, redis_url, stream_prefix",
        ) from None


# -- keys ----------------------------------------------------------------------------------


class PiiKeyMissing(ConfigError):
    """No pseudonymisation key is configured (never a silent unkeyed hash)."""


@dataclass(frozen=True)
class PiiKey:
    """One secret with its id (the digits after ``pn`` in the pseudonyms it makes)."""

    id: int
    secret: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"PiiKey(id={self.id}, secret=***)"

    def fingerprint(self) -> str:
        """A public fingerprint of the secret (for cache keys; reveals nothing of it)."""
        return hmac.new(self.secret, b"loopline:pii:fingerprint", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class PiiKeyRing:
    """The configured keys; the one with the highest id writes, all of them find."""

    keys: tuple[PiiKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise PiiKeyMissing("no PII key given", hint=_GENERATE_HINT)
        ids = [k.id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ConfigError(
                f"PII key ids must be unique, found {sorted(ids)}",
                hint="give each key line its own id: `2:NEWSECRET` above `1:OLDSECRET`",
            )

    @property
    def current(self) -> PiiKey:
        return max(self.keys, key=lambda k: k.id)

    def fingerprint(self) -> str:
        return ",".join(f"{k.id}:{k.fingerprint()}" for k in sorted(self.keys, key=lambda k: k.id))

    def __repr__(self) -> str:
        return f"PiiKeyRing(ids={[k.id for k in self.keys]})"

    @classmethod
    def from_text(cls, text: str, where: str) -> PiiKeyRing:
        """Keys from ``SECRET`` or ``ID:SECRET`` lines (``,`` separates them too)."""
        keys: list[PiiKey] = []
        entries = [
            part.strip()
            for line in text.splitlines()
            if not line.strip().startswith("#")
            for part in line.split(",")
        ]
        for entry in (e for e in entries if e):
            head, sep, tail = entry.partition(":")
            if sep and head.strip().isdigit():
                key_id, secret = int(head), tail.strip()
            else:
                key_id, secret = 1, entry
            if len(secret) < MIN_KEY_LENGTH:
                # Never echo the secret, not even part of it.
                raise ConfigError(
                    f"the PII key {key_id} in {where} is {len(secret)} characters long; at "
                    f"least {MIN_KEY_LENGTH} are needed",
                    hint=_GENERATE_HINT,
                )
            keys.append(PiiKey(key_id, secret.encode("utf-8")))
        if not keys:
            raise PiiKeyMissing(f"{where} holds no PII key", hint=_GENERATE_HINT)
        return cls(tuple(keys))


def load_key_ring(
    settings: Settings | None = None, environ: Mapping[str, str] | None = None
) -> PiiKeyRing:
    """The keys from ``LOOPLINE_PII_KEY``, else ``LOOPLINE_PII_KEY_FILE``/``pii.key_file``.

    Raises :class:`PiiKeyMissing` when none is configured.
    """
    env = os.environ if environ is None else environ
    if env.get(KEY_ENV, "").strip():
        return PiiKeyRing.from_text(env[KEY_ENV], f"${KEY_ENV}")
    key_file = env.get(KEY_FILE_ENV) or pii_settings(settings).key_file
    if not key_file:
        raise PiiKeyMissing(
            "no PII key is configured: personal data cannot be pseudonymised",
            hint=_GENERATE_HINT,
        )
    path = Path(key_file).expanduser()
    if not path.is_absolute() and settings is not None:
        path = settings.project_root / path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PiiKeyMissing(
            f"the PII key file {path} does not exist", hint=_GENERATE_HINT
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot read the PII key file {path}: {getattr(exc, 'strerror', None) or exc}",
            hint="make it a readable UTF-8 text file with one key per line",
        ) from None
    return PiiKeyRing.from_text(text, str(path))


# -- the policy ----------------------------------------------------------------------------


class ColumnRule(BaseModel):
    """What becomes of one column (see the module doc for the kinds and their options)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    pii: str | None = None  # the kind of personal data: email, phone, name, ssn, ip, ...
    style: Literal["category", "shape", "domain"] = "category"
    keep_last: int = 0
    how: Literal["prefix", "year", "round", "bucket"] | None = None
    chars: int = 3
    decimals: int = 1
    width: float = 10.0

    def tag(self, column: str) -> str:
        return f"[{(self.pii or column).upper()}]"


class PiiPolicy(BaseModel):
    """Columns -> rules, free-text columns to scan, and what to do with other columns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    columns: dict[str, ColumnRule] = {}
    scan: list[str] = []
    unknown: Literal["keep", "scan", "drop", "error"] = "keep"

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | str, where: str = "the PII policy") -> PiiPolicy:
        """A policy from its JSON (a mapping or text); a column may be given as its kind."""
        data = json.loads(value) if isinstance(value, str) else dict(value)
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a JSON object, found {type(data).__name__}")
        columns = data.get("columns", {})
        if isinstance(columns, dict):
            data["columns"] = {
                str(name): {"kind": rule} if isinstance(rule, str) else rule
                for name, rule in columns.items()
            }
        try:
            policy = cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ConfigError(
                f"{where} is invalid: {problems}",
                hint=f"each column takes a kind ({', '.join(KINDS)}) and its options; "
                "see loopline.data.pii",
            ) from None
        for rule_name, rule in policy.columns.items():
            if rule.kind == "generalise" and rule.how is None:
                raise ConfigError(
                    f"{where}: column {rule_name!r} is generalised but says not how",
                    hint="add how: prefix, year, round or bucket",
                )
        return policy

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=False)

    def digest(self) -> str:
        """A hash of the policy (a cache-key input: another policy, another output)."""
        text = json.dumps(self.to_json(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def personal_columns(self) -> dict[str, ColumnRule]:
        """The columns that hold personal data (every kind but ``keep``)."""
        return {name: rule for name, rule in self.columns.items() if rule.kind != "keep"}


def _rules(**columns: Any) -> dict[str, Any]:
    return columns


_SHAPE_PHONE = {"kind": "mask", "pii": "phone", "style": "shape", "keep_last": 2}
#: Ready policies for the AWS Fraud Detector samples (../shared/data/fraud/...).
POLICIES: dict[str, dict[str, Any]] = {
    # The fraud system's default: customers, e-mails and IPs stay joinable as pseudonyms.
    "aws-transactions": {
        "name": "aws-transactions",
        "columns": _rules(
            ENTITY_ID={"kind": "identifier", "pii": "ssn"},
            EVENT_ID="keep",
            customer_name={"kind": "drop", "pii": "name"},
            billing_street={"kind": "drop", "pii": "address"},
            billing_zip={"kind": "generalise", "pii": "postal_code", "how": "prefix", "chars": 3},
            billing_latitude={"kind": "generalise", "pii": "location", "how": "round"},
            billing_longitude={"kind": "generalise", "pii": "location", "how": "round"},
            ip_address={"kind": "identifier", "pii": "ip"},
            customer_email={"kind": "identifier", "pii": "email"},
            billing_phone=_SHAPE_PHONE,
            user_agent="keep",
            customer_job="keep",
            billing_city="keep",
            billing_state="keep",
            card_bin="keep",
        ),
        "scan": [],
        "unknown": "keep",
    },
    "aws-registrations": {
        "name": "aws-registrations",
        "columns": _rules(
            ip_address={"kind": "identifier", "pii": "ip"},
            email_address={"kind": "identifier", "pii": "email"},
            phone_number=_SHAPE_PHONE,
            billing_address={"kind": "drop", "pii": "address"},
            billing_postal={"kind": "generalise", "pii": "postal_code", "how": "prefix"},
            user_agent="keep",
        ),
        "scan": [],
        "unknown": "keep",
    },
    "aws-insurance": {
        "name": "aws-insurance",
        "columns": _rules(
            first_name={"kind": "drop", "pii": "name"},
            last_name={"kind": "drop", "pii": "name"},
            date_of_birth={"kind": "generalise", "pii": "date_of_birth", "how": "year"},
            ENTITY_ID={"kind": "identifier", "pii": "customer_id"},
            policy_id={"kind": "identifier", "pii": "policy_id"},
            # In this sample every claim's EVENT_ID is its policy_id: pseudonymised alike.
            EVENT_ID={"kind": "identifier", "pii": "policy_id"},
            customer_age={"kind": "generalise", "pii": "age", "how": "bucket", "width": 5},
        ),
        "scan": [],
        "unknown": "keep",
    },
}


def load_policy(
    ref: str | Mapping[str, Any] | PiiPolicy | None = None, settings: Settings | None = None
) -> PiiPolicy:
    """A policy from a :data:`POLICIES` name, a JSON file, a mapping, or the settings.

    ``None`` takes ``pii.policy`` from the settings; a relative file is the project's.
    """
    if isinstance(ref, PiiPolicy):
        return ref
    if ref is None:
        ref = pii_settings(settings).policy
        if ref is None:
            raise ConfigError(
                "no PII policy is configured",
                hint=f"set `pii: {{policy: NAME|FILE}}` in loopline.yaml (ready ones: "
                f"{', '.join(POLICIES)}) or pass policy=",
            )
    if isinstance(ref, Mapping):
        return PiiPolicy.from_json(ref)
    if ref in POLICIES:
        return PiiPolicy.from_json(POLICIES[ref], f"policy {ref!r}")
    path = Path(ref).expanduser()
    if not path.is_absolute() and settings is not None:
        path = settings.project_root / path
    if not path.is_file():
        raise ConfigError(
            f"unknown PII policy {ref!r}: neither a ready policy nor a file",
            hint=f"ready policies: {', '.join(POLICIES)}; or give a JSON file",
        )
    try:
        return PiiPolicy.from_json(path.read_text(encoding="utf-8"), str(path))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None


# -- recognisers for free text -------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One piece of personal data found in a text."""

    entity: str
    start: int
    end: int
    score: float
    source: str  # "loopline" or "presidio"


#: The replacement tag of each entity type.
TAGS = {
    "EMAIL_ADDRESS": "[EMAIL]",
    "PHONE_NUMBER": "[PHONE]",
    "IP_ADDRESS": "[IP]",
    "US_SSN": "[SSN]",
    "CREDIT_CARD": "[CARD]",
    "STREET_ADDRESS": "[ADDRESS]",
    "IBAN_CODE": "[IBAN]",
    "US_ITIN": "[ITIN]",
}
#: What Presidio is asked for. Its e-mail recogniser is left out: Loopline's pattern finds
#: the same addresses without tldextract (which would try to download a suffix list).
PRESIDIO_ENTITIES = ["PHONE_NUMBER", "IP_ADDRESS", "US_SSN", "CREDIT_CARD", "IBAN_CODE", "US_ITIN"]

# Faker's (and the US Postal Service's common) street suffixes.
_STREET_SUFFIXES = (
    "Alley Avenue Ave Branch Bridge Brook Brooks Burg Burgs Bypass Camp Canyon Cape Causeway "
    "Center Centers Circle Circles Cliff Cliffs Club Common Commons Corner Corners Course Court "
    "Courts Cove Coves Creek Crescent Crest Crossing Crossroad Curve Dale Dam Divide Drive Dr "
    "Drives Estate Estates Expressway Extension Extensions Fall Falls Ferry Field Fields Flat "
    "Flats Ford Fords Forest Forge Forges Fork Forks Fort Freeway Garden Gardens Gateway Glen "
    "Glens Green Greens Grove Groves Harbor Harbors Haven Heights Highway Hill Hills Hollow "
    "Inlet Island Islands Isle Junction Junctions Key Keys Knoll Knolls Lake Lakes Land Landing "
    "Lane Ln Light Lights Loaf Lock Locks Lodge Loop Mall Manor Manors Meadow Meadows Mews Mill "
    "Mills Mission Motorway Mount Mountain Mountains Neck Orchard Oval Overpass Park Parks "
    "Parkway Parkways Pass Passage Path Pike Pine Pines Place Pl Plain Plains Plaza Point Points "
    "Port Ports Prairie Radial Ramp Ranch Rapid Rapids Rest Ridge Ridges River Road Rd Roads "
    "Route Row Rue Run Shoal Shoals Shore Shores Skyway Spring Springs Spur Spurs Square Squares "
    "Station Stravenue Stream Street St Streets Summit Terrace Throughway Trace Track "
    "Trafficway Trail Tunnel Turnpike Underpass Union Unions Valley Valleys Via Viaduct View "
    "Views Village Villages Ville Vista Walk Walks Wall Way Ways Well Wells"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# One pass over the text; each alternative is a named group, validated afterwards.
_RECOGNISERS = re.compile(
    "|".join(
        [
            r"(?P<EMAIL_ADDRESS>(?<![\w.+%-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
            r"\.[A-Za-z]{2,}(?![\w-]))",
            rf"(?P<IPV4>(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\w]|\.\d))",
            r"(?P<US_SSN>(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-]))",
            # +1 / 0044 / "1-" country codes, (555) or 555 area codes, extensions.
            r"(?P<PHONE_NUMBER>(?<![\w+.,])(?:(?:\+|00)\d{1,3}[\s.-]*|1[\s.-]+)?"
            r"(?:\(\d{3}\)|\d{3})[\s.-]*\d{3}[\s.-]*\d{4}"
            r"(?:(?:[\s.-]+|\s*(?:x|ext\.?)\s*)\d{1,5})?(?![\w]))",
            r"(?P<STREET_ADDRESS>(?<![\w.-])\d{1,6}\s+(?:[A-Z][A-Za-z'-]*\.?\s+){1,4}"
            rf"(?:{_STREET_SUFFIXES.replace(' ', '|')})\b\.?"
            r"(?:,?\s+(?:Apt\.?|Suite|Unit|#)\s*[\w-]+)?)",
            r"(?P<IPV6>(?<![\w:])(?=[0-9A-Fa-f:]*[0-9A-Fa-f])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4})"
            r"{2,7}(?![\w:]))",
        ]
    )
)
# Apart, because a run of digits that fails the Luhn check may still be a phone number.
_CARD = re.compile(r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w-])")
# Card numbers by issuer (Visa, Mastercard, Amex, Discover, Diners, JCB) and length: a bare
# run of digits that passes the Luhn check is one in ten (an object id in a debug log).
_ISSUER = re.compile(
    r"4(?:\d{12}|\d{15}|\d{18})$|(?:5[1-5]\d\d|222[1-9]|22[3-9]\d|2[3-6]\d\d|27[01]\d|2720)\d{12}$"
    r"|3[47]\d{13}$|(?:6011|65\d\d|64[4-9]\d)\d{12,15}$|3(?:0[0-5]|[68]\d)\d{11}$"
    r"|35\d{14,17}$"
)
# Texts that may hold something Presidio finds: without a match, it is not asked.
_PRESIDIO_CANDIDATE = re.compile(
    r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|[0-9A-Fa-f]{0,4}::?[0-9A-Fa-f]{1,4}:"
    r"|(?:\d[\s().+/-]{0,3}){6,}\d|\b[A-Z]{2}\d{2}[A-Z0-9]{10}"
)
# Version numbers look like IPv4 addresses or phone numbers ("rv:1.9.6.20",
# "Chrome/31.0.816.0", which Presidio takes for a Dutch phone number): not personal data.
_VERSION_BEFORE = re.compile(r"(?:rv:|/|[Vv]ersion\s?)$")
_VERSION_TOKEN = re.compile(r"(?:rv:|/|[Vv]ersion\s?)[\d._-]+")
_SCORES = {"EMAIL_ADDRESS": 1.0, "IP_ADDRESS": 0.6, "US_SSN": 0.5, "CREDIT_CARD": 1.0}
_SCORES |= {"PHONE_NUMBER": 0.5, "STREET_ADDRESS": 0.5}


def _machine_ip(value: str) -> bool:
    """Addresses of no person: loopback, unspecified, link-local, multicast (127.0.0.1 in a
    server's log)."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return (
        address.is_loopback
        or address.is_unspecified
        or address.is_link_local
        or address.is_multicast
    )


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _builtin_spans(text: str) -> list[Span]:
    spans: list[Span] = []
    for match in _RECOGNISERS.finditer(text):
        entity = match.lastgroup
        assert entity is not None
        start, end = match.span()
        value = match.group()
        if entity == "PHONE_NUMBER" and value.isdigit() and value[0] in "01":
            continue  # ten bare digits with no area code (0/1 never start one): a timestamp
        if entity == "IPV4":
            if _VERSION_BEFORE.search(text, max(0, start - 8), start) or _machine_ip(value):
                continue
            entity = "IP_ADDRESS"
        elif entity == "IPV6":
            try:
                ipaddress.IPv6Address(value)
            except ValueError:
                continue
            if _machine_ip(value):
                continue
            entity = "IP_ADDRESS"
        spans.append(Span(entity, start, end, _SCORES[entity], "loopline"))
    for match in _CARD.finditer(text):
        digits = match.group().replace(" ", "").replace("-", "")
        if _ISSUER.match(digits) and _luhn(digits):
            spans.append(Span("CREDIT_CARD", *match.span(), _SCORES["CREDIT_CARD"], "loopline"))
    return spans


def _merge(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans: the earliest first, the longest of those starting together."""
    chosen: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start), -s.score)):
        if chosen and span.start < chosen[-1].end:
            last = chosen[-1]
            if span.end > last.end:  # overlapping finds: redact their union
                entity = last.entity if last.score >= span.score else span.entity
                chosen[-1] = Span(entity, last.start, span.end, max(last.score, span.score), "both")
            continue
        chosen.append(span)
    return chosen


class TextScanner:
    """Finds personal data in free text: Loopline's patterns, plus Presidio when available.

    Loopline's patterns (always on, a few microseconds a text): e-mail addresses, IPv4 and
    IPv6 addresses (not version numbers such as ``rv:1.9.6.20``), SSN-like ``ddd-dd-dddd``,
    card numbers passing the Luhn check, phone numbers in North American formats with
    country codes and extensions, and street addresses ending in a street suffix. Presidio
    (``engine="presidio"``, or ``"auto"`` when installed) runs with the ``no_op`` NLP engine
    (no model download) and adds its validated recognisers: phone numbers in international
    formats (libphonenumber), IBANs, ITINs, SSNs, cards. It is asked only about texts that
    hold a candidate (digits in a phone-like run, a dotted quad, a colon group), which
    keeps the cost per message in microseconds for most texts.

    Not found: names and other words (Presidio needs a spaCy NER model for those; Loopline
    replaces the record's own name and other personal values where they appear in its free
    text, see :class:`PiiMasker`), addresses without a number and a street suffix.
    """

    def __init__(
        self, engine: Literal["auto", "presidio", "regex"] = "auto", score_threshold: float = 0.3
    ) -> None:
        self.engine = engine
        self.score_threshold = score_threshold
        self._analyzer: Any = None
        self._lock = threading.Lock()
        if engine == "presidio":
            self._presidio()  # fail now, with the install hint, rather than mid-stream
        elif engine == "auto":
            import importlib.util

            found = importlib.util.find_spec("presidio_analyzer") is not None
            self.engine = "presidio" if found else "regex"

    @property
    def uses_presidio(self) -> bool:
        return self.engine != "regex"

    def _presidio(self) -> Any:
        if self._analyzer is None:
            with self._lock:
                if self._analyzer is None:
                    self._analyzer = _presidio_analyzer()
        return self._analyzer

    def warm_up(self) -> None:
        """Load Presidio now (about 2 s) instead of on the first text that needs it."""
        if self.uses_presidio:
            self._presidio()

    def find(self, text: str) -> list[Span]:
        """The personal data in ``text``, as non-overlapping spans."""
        if not text:
            return []
        spans = _builtin_spans(text)
        if self.uses_presidio and _PRESIDIO_CANDIDATE.search(_VERSION_TOKEN.sub(" ", text)):
            for result in self._presidio().analyze(
                text,
                language="en",
                entities=PRESIDIO_ENTITIES,
                score_threshold=self.score_threshold,
            ):
                if _VERSION_BEFORE.search(text, max(0, result.start - 8), result.start):
                    continue
                if _decimal(text, result) or (result.start and text[result.start - 1].isalnum()):
                    continue  # a number, or the tail of a longer token
                found = text[result.start : result.end]
                if result.entity_type == "IP_ADDRESS" and _machine_ip(found):
                    continue
                if result.entity_type == "PHONE_NUMBER" and found.isdigit() and found[0] in "01":
                    continue  # bare digits without an area code: an epoch timestamp, an id
                spans.append(
                    Span(result.entity_type, result.start, result.end, result.score, "presidio")
                )
        return _merge(spans)

    def redact(self, text: str) -> str:
        """``text`` with each piece of personal data replaced by its tag (``[PHONE]``)."""
        spans = self.find(text)
        for span in reversed(spans):
            text = text[: span.start] + TAGS.get(span.entity, "[PII]") + text[span.end :]
        return text


_DECIMAL = re.compile(r"-?\d+\.\d+")


def _decimal(text: str, result: Any) -> bool:
    """A decimal number, or the tail of one: ``0.1234567890`` is no phone number."""
    start = result.start
    if start >= 2 and text[start - 1] == "." and text[start - 2].isdigit():
        return True
    return _DECIMAL.fullmatch(text, start, result.end) is not None


def _presidio_analyzer() -> Any:
    try:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
    except ImportError:
        raise ConfigError(
            "the Presidio recognisers are not installed",
            hint="pip install 'loopline[pii]', or set `pii: {engine: regex}` to use "
            "Loopline's own recognisers only",
        ) from None
    # Presidio logs every recogniser it loads at INFO, and warns about the missing NER model.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "no_op",
            "models": [{"lang_code": "en", "model_name": "none"}],
        }
    ).create_engine()
    return AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])


def redact_example(value: str, keep: int = 2) -> str:
    """A found value as a report may show it: its shape and last ``keep`` characters."""
    return _shape(value, keep)


# -- masking -------------------------------------------------------------------------------

_SHAPE_CHARS = re.compile(r"[A-Za-z0-9]")


def _shape(text: str, keep_last: int) -> str:
    """Letters and digits become ``*`` except the last ``keep_last`` of them."""
    positions = [m.start() for m in _SHAPE_CHARS.finditer(text)]
    hidden = set(positions[: max(0, len(positions) - keep_last)])
    return "".join("*" if i in hidden else c for i, c in enumerate(text))


def _normalise(value: Any) -> str | None:
    """The text a pseudonym is made of: stripped; e-mail addresses lower-cased; integral
    numbers without ``.0``."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            value = int(value)
    text = str(value).strip()
    if "@" in text:
        text = text.lower()
    return text


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, str | bytes) else False
    except (TypeError, ValueError):
        return False


class PiiMasker:
    """Applies a :class:`PiiPolicy` with a key: to whole frames (batch) or one record (stream).

    :meth:`mask_frame` and :meth:`mask_record` give the same values for the same row.
    """

    def __init__(
        self,
        policy: PiiPolicy | Mapping[str, Any] | str,
        keys: PiiKeyRing | str,
        scanner: TextScanner | None = None,
    ) -> None:
        self.policy = load_policy(policy) if not isinstance(policy, PiiPolicy) else policy
        self.keys = keys if isinstance(keys, PiiKeyRing) else PiiKeyRing.from_text(keys, "key")
        self._key = self.keys.current
        self._prefix = f"pn{self._key.id}_"
        self.scanner = scanner or TextScanner()
        self._personal = self.policy.personal_columns()
        self._scan = set(self.policy.scan)

    def __repr__(self) -> str:
        return f"PiiMasker(policy={self.policy.name!r}, keys={self.keys!r})"

    def fingerprint(self) -> str:
        """Policy and key fingerprints: what a masked output depends on besides its input."""
        return f"{self.policy.digest()}|{self.keys.fingerprint()}|{self.scanner.engine}"

    # -- pseudonyms ----------------------------------------------------------------------------
    def pseudonym(self, value: Any) -> str | None:
        """The pseudonym of ``value`` under the current key (None for a missing value)."""
        text = _normalise(value)
        if text is None:
            return None
        # hmac.digest: OpenSSL's one-shot HMAC, several times faster than hmac.new per value.
        return self._prefix + hmac.digest(self._key.secret, text.encode(), "sha256")[:16].hex()

    def pseudonyms(self, value: Any) -> list[str]:
        """The pseudonyms of ``value`` under every key (newest first): what forget looks for."""
        text = _normalise(value)
        if text is None:
            return []
        return [
            f"pn{key.id}_" + hmac.digest(key.secret, text.encode(), "sha256")[:16].hex()
            for key in sorted(self.keys.keys, key=lambda k: -k.id)
        ]

    # -- one value -----------------------------------------------------------------------------
    def _value(self, column: str, rule: ColumnRule, value: Any) -> Any:
        if _is_missing(value):
            return value
        if rule.kind == "identifier":
            return self.pseudonym(value)
        if rule.kind == "mask":
            return self._mask_text(column, rule, _normalise(value) or "")
        if rule.kind == "generalise":
            return _generalise_value(rule, value)
        return value

    @staticmethod
    def _mask_text(column: str, rule: ColumnRule, text: str) -> str:
        if rule.style == "shape":
            return _shape(text, rule.keep_last)
        if rule.style == "domain" and "@" in text:
            return "***@" + text.rsplit("@", 1)[1]
        return rule.tag(column)

    def _replacement(self, column: str, rule: ColumnRule, value: Any) -> str:
        """What a row's own personal value becomes where its free text mentions it."""
        if rule.kind in ("identifier", "mask"):
            return str(self._value(column, rule, value))
        return rule.tag(column)

    def _scrub(self, text: str, own: Sequence[tuple[str, str]]) -> str:
        for raw, replacement in own:
            if raw in text:
                text = re.sub(rf"(?<!\w){re.escape(raw)}(?!\w)", replacement, text)
        return self.scanner.redact(text)

    def mask_text(self, text: str) -> str:
        """Free text with every recognised piece of personal data replaced by its tag."""
        return self.scanner.redact(text)

    def _unknown(self, columns: Iterable[str]) -> list[str]:
        unknown = [c for c in columns if c not in self.policy.columns and c not in self._scan]
        if unknown and self.policy.unknown == "error":
            raise DataError(
                f"the PII policy {self.policy.name or ''} does not say what the columns "
                f"{unknown} hold",
                hint="add them to the policy's columns (keep, if they hold no personal data)",
            )
        return unknown

    # -- records (streams) -----------------------------------------------------------------------
    def mask_record(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """One message masked by the policy (same result as :meth:`mask_frame` on its row)."""
        unknown = self._unknown(record)
        scan = self._scan | (set(unknown) if self.policy.unknown == "scan" else set())
        dropped = set(unknown) if self.policy.unknown == "drop" else set()
        own: list[tuple[str, str]] | None = None
        out: dict[str, Any] = {}
        for column, value in record.items():
            rule = self._personal.get(column)
            if rule is not None:
                if rule.kind != "drop":
                    out[column] = self._value(column, rule, value)
            elif column in scan:
                if isinstance(value, str):
                    if own is None:
                        own = self._own_values(record)
                    out[column] = self._scrub(value, own)
                else:
                    out[column] = value
            elif column not in dropped:
                out[column] = value
        return out

    def _own_values(self, record: Mapping[str, Any]) -> list[tuple[str, str]]:
        own = []
        for column, rule in self._personal.items():
            value = record.get(column)
            text = None if _is_missing(value) else str(value).strip()
            if text and len(text) >= 3:
                own.append((text, self._replacement(column, rule, value)))
        # Longest first, so "Ann Lee" is replaced before "Ann".
        return sorted(own, key=lambda pair: -len(pair[0]))

    # -- frames (batch) -------------------------------------------------------------------------
    def mask_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``frame`` masked by the policy, column by column (values deduplicated)."""
        import pandas as pd

        unknown = self._unknown(frame.columns)
        scan = [c for c in frame.columns if c in self._scan]
        if self.policy.unknown == "scan":
            scan += [c for c in unknown if _is_text(frame[c])]
        out = frame.copy()
        if scan:
            own = self._own_frame_values(frame)
            for column in scan:
                out[column] = self._scan_column(frame[column], own)
        for column, rule in self._personal.items():
            if column not in out.columns or rule.kind == "drop":
                continue
            out[column] = self._mask_column(column, rule, frame[column])
        dropped = [c for c, r in self._personal.items() if r.kind == "drop" and c in out.columns]
        if self.policy.unknown == "drop":
            dropped += unknown
        return pd.DataFrame(out.drop(columns=dropped))

    def _mask_column(self, column: str, rule: ColumnRule, series: pd.Series) -> pd.Series:
        import numpy as np
        import pandas as pd

        if rule.kind == "generalise":
            return _generalise_series(rule, series)
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        masked = np.array([self._value(column, rule, v) for v in uniques] + [None], dtype=object)
        # -1 (a missing value) picks the trailing None.
        return pd.Series(masked[codes], index=series.index, name=series.name, dtype="str")

    def _own_frame_values(self, frame: pd.DataFrame) -> list[list[tuple[str, str]]]:
        """Per row, its own personal values and their replacements (for free-text columns)."""
        present = [(c, r) for c, r in self._personal.items() if c in frame.columns]
        rows: list[list[tuple[str, str]]] = [[] for _ in range(len(frame))]
        for column, rule in present:
            cache: dict[Any, str] = {}
            for i, value in enumerate(frame[column].tolist()):
                if _is_missing(value):
                    continue
                text = str(value).strip()
                if len(text) < 3:
                    continue
                if text not in cache:
                    cache[text] = self._replacement(column, rule, value)
                rows[i].append((text, cache[text]))
        for own in rows:
            own.sort(key=lambda pair: -len(pair[0]))
        return rows

    def _scan_column(self, series: pd.Series, own: list[list[tuple[str, str]]]) -> pd.Series:
        import pandas as pd

        texts = series.tolist()
        redacted: dict[str, str] = {}
        result: list[Any] = []
        for text, mine in zip(texts, own, strict=True):
            if not isinstance(text, str):
                result.append(text)
                continue
            if any(raw in text for raw, _ in mine):
                result.append(self._scrub(text, mine))
                continue
            if text not in redacted:
                redacted[text] = self.scanner.redact(text)
            result.append(redacted[text])
        return pd.Series(result, index=series.index, name=series.name, dtype=series.dtype)


def _is_text(series: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_string_dtype(series) or series.dtype == object)


def _generalise_value(rule: ColumnRule, value: Any) -> Any:
    if rule.how == "prefix":
        text = _normalise(value) or ""
        return text[: rule.chars]
    if rule.how == "year":
        if isinstance(value, datetime | date):
            return value.year
        import pandas as pd

        parsed = pd.to_datetime(str(value), errors="coerce", utc=True)
        return None if pd.isna(parsed) else int(parsed.year)
    number = _number(value)
    if number is None:
        return None
    if rule.how == "round":
        return round(number, rule.decimals)
    return math.floor(number / rule.width) * rule.width


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _generalise_series(rule: ColumnRule, series: pd.Series) -> pd.Series:
    import numpy as np
    import pandas as pd

    if rule.how == "prefix":
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        cut = np.array([_generalise_value(rule, v) for v in uniques] + [None], dtype=object)
        return pd.Series(cut[codes], index=series.index, name=series.name)
    if rule.how == "year":
        parsed = pd.to_datetime(series, errors="coerce", utc=True, format="mixed")
        return parsed.dt.year.astype("Int64")
    numbers = pd.to_numeric(series, errors="coerce").astype("float64")
    if rule.how == "round":
        return numbers.round(rule.decimals)
    return np.floor(numbers / rule.width) * rule.width


# -- from the settings -----------------------------------------------------------------------


def open_masker(
    settings: Settings | None = None,
    policy: str | Mapping[str, Any] | PiiPolicy | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> PiiMasker:
    """The project's masker: its policy (or ``policy``), its key(s) and its scanner.

    This is what the stream consumer and the batch read step call at the door.
    """
    config = pii_settings(settings)
    return PiiMasker(
        load_policy(policy, settings),
        load_key_ring(settings, environ),
        TextScanner(config.engine, config.score_threshold),
    )


def scrubbed_error(exc: BaseException, scanner: TextScanner | None = None) -> str:
    """An exception's message with recognisable personal data replaced (for errors that
    are stored in the metadata database or printed)."""
    text = str(exc)
    return (scanner or TextScanner("regex")).redact(text)


def is_pseudonym(value: Any) -> bool:
    return isinstance(value, str) and PSEUDONYM.fullmatch(value) is not None
