"""The stores the decision service opens from a project's settings: the online feature
store and the PII masker (shared by the consumer, the re-score and the review loop)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopline.stream.connect import parse_url
from loopline.stream.consumer import OnlineFeatures, RecordMasker
from loopline.stream.source import StreamError

if TYPE_CHECKING:
    from loopline.config import Settings

__all__ = ["open_features", "open_masker"]


def open_features(spec: str, settings: Settings) -> OnlineFeatures | None:
    """The online feature store ``spec`` names: ``none`` (the model reads the transaction's
    own fields), ``embedded`` (SQLite under the project's ``.loopline/features/``, no
    server) or a ``redis://`` URL (:func:`loopline.features.open_feature_store`)."""
    if spec == "none":
        return None
    from loopline.features import open_feature_store

    if spec == "embedded":
        return open_feature_store(settings.home_dir / "features")
    scheme, _base, _options = parse_url(spec)
    if scheme in ("redis", "rediss"):
        return open_feature_store(spec)
    raise StreamError(
        f"unknown feature store {spec!r}",
        hint="--features (fraud.features) takes embedded, none or a redis://HOST:6379/0 URL",
    )


def open_masker(settings: Settings, policy: str | None, no_pii: bool) -> RecordMasker | None:
    """The project's PII masker (``policy`` overrides ``pii.policy``); None with ``no_pii``."""
    if no_pii:
        return None
    from loopline.data.pii import open_masker as pii_masker

    return pii_masker(settings, policy)
