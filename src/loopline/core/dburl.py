"""Database URLs as SQLAlchemy should see them.

SQLAlchemy 2.0 maps a bare ``postgresql://`` URL to the psycopg2 driver, and no longer
knows the ``postgres://`` spelling at all (Heroku and many PaaS still hand it out).
Loopline ships psycopg 3 (the ``postgres`` extra), so a URL that names no driver is pointed
at it. Every engine made from a user's URL goes through :func:`sqlalchemy_url`.
"""

from __future__ import annotations

__all__ = ["sqlalchemy_url"]

# Schemes that name PostgreSQL without a driver; "postgresql+psycopg2://" etc. are left alone.
_BARE_POSTGRES = ("postgresql://", "postgres://")
_PSYCOPG = "postgresql+psycopg://"


def sqlalchemy_url(url: str) -> str:
    """``url`` with a driverless PostgreSQL scheme rewritten to ``postgresql+psycopg://``.

    ``postgresql://u@h/db`` and ``postgres://u@h/db`` become ``postgresql+psycopg://u@h/db``;
    anything else (SQLite, or a URL that names its driver such as
    ``postgresql+psycopg2://``) is returned unchanged. The scheme is matched
    case-insensitively; the rest of the URL is kept byte for byte.
    """
    lowered = url.lower()
    for scheme in _BARE_POSTGRES:
        if lowered.startswith(scheme):
            return _PSYCOPG + url[len(scheme) :]
    return url
