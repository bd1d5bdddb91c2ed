"""The feedback route and the admin routes (reload, rollback) of the prediction server.

Admin routes exist only when an admin token is configured; each call must carry
``Authorization: Bearer <token>`` (no header: 401, wrong token: 403). The token is compared
in constant time and never echoed or logged. They take no model reference or path: reload
re-resolves the references the server was started with, and rollback moves the champion
alias of the served model back to ``previous`` in the registry.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from loopline.errors import LooplineError
from loopline.registry.models import CHAMPION
from loopline.serve.http import (
    ApiError,
    JSONBytesResponse,
    json_object,
    loc_error,
    openapi_json_body,
)
from loopline.serve.routing import RegistryModel, Router

if TYPE_CHECKING:
    from loopline.core.metadata import MetadataStore
    from loopline.serve.metrics import ServeMetrics

__all__ = ["AdminService", "add_admin_routes", "add_feedback_route", "check_admin_token"]

log = logging.getLogger(__name__)


class AdminService(Protocol):
    """What these routes use of the app's service (``loopline.serve.app.PredictionService``).

    Declared here rather than imported, so that this module does not import the app that
    mounts it (``app`` imports ``admin``; a cycle otherwise).
    """

    router: Router
    metrics: ServeMetrics

    @property
    def api_keys(self) -> Sequence[bytes]: ...

    def check_api_key(self, given: str | None) -> None: ...

    def answered(self, request_id: str) -> bool: ...


_MAX_ACTOR = 100
_MAX_REASON = 500


# --- feedback --------------------------------------------------------------------------------


def add_feedback_route(app: FastAPI, service: AdminService, store: MetadataStore) -> None:
    """``POST /feedback {"request_id", "label"}``: ground truth joined to the prediction log.

    The label must be one of the served models' classes; API keys apply as for /predict.

    Whether the request id belongs to a prediction cannot be decided here for certain: the
    prediction log is written asynchronously, another worker process (or an earlier run of
    the server) may have answered the request, and a label may arrive months later. So every
    valid label is stored, and the answer says what this process knows: 201 with
    ``"matched": true`` when it answered that request id lately (:class:`~loopline.serve.app.
    RecentRequests`), else 202 with ``"matched": false`` and a ``warning``, counted in
    ``loopline_feedback_orphaned_total``. Monitoring joins the labels to the log later and
    reports those that match no prediction ("feedback for unknown request ids").
    """
    from loopline.core.feedback import record_feedback

    orphaned = service.metrics.feedback_orphaned

    async def feedback(request: Request) -> Response:
        """Store the true label of an earlier prediction, by its request id.

        Send ``{"request_id": "<the request_id of a /predict answer>", "label": "<a class>"}``
        (a batch item's id is ``<id>.<index>``). Every valid label is stored. 201 with
        ``"matched": true``: this server answered that request id lately. 202 with
        ``"matched": false`` and a ``warning``: it did not (a wrong id, or a prediction
        answered by another worker, before a restart or long ago); the label joins a
        prediction only if the prediction log has that id, and monitoring reports labels that
        match none.
        """
        if service.api_keys:
            service.check_api_key(request.headers.get("x-api-key"))
        classes = _served_classes(service.router)
        request_id, label = _parse_feedback(await request.body(), classes)
        champion = service.router.champion.current.name
        try:
            feedback_id = await run_in_threadpool(
                record_feedback, store, request_id, label, model_name=champion, source="api"
            )
        except LooplineError as exc:  # e.g. a value longer than the table allows
            raise ApiError(422, exc.message) from None
        answer: dict[str, Any] = {
            "feedback_id": feedback_id,
            "request_id": request_id,
            "label": label,
            "matched": service.answered(request_id),
        }
        if answer["matched"]:
            return JSONBytesResponse(answer, status_code=201)
        orphaned.inc()
        answer["warning"] = (
            f"request id {request_id!r} is not one this server answered lately; the label is "
            "stored and counts only if the prediction log has a prediction with this id "
            "(check that it is the request_id of a /predict answer, '<id>.<index>' for a "
            "batch item)"
        )
        return JSONBytesResponse(answer, status_code=202)

    app.add_api_route(
        "/feedback",
        feedback,
        methods=["POST"],
        status_code=201,
        summary="Record the true label of a prediction",
        responses={
            201: {"description": "Stored; this server answered that request id lately."},
            202: {
                "description": "Stored, but this server did not answer that request id lately "
                '("matched": false, with a warning); it counts only if the prediction log '
                "has it."
            },
        },
        openapi_extra=openapi_json_body(
            {
                "request_id": {"type": "string", "minLength": 1, "maxLength": 64},
                "label": {"type": "string", "minLength": 1, "maxLength": 200},
            },
            required=["request_id", "label"],
        ),
    )


def _served_classes(router: Router) -> list[str]:
    classes: list[str] = []
    for slot in router.slots:
        for c in slot.current.loaded.classes:
            if str(c) not in classes:
                classes.append(str(c))
    return classes


def _parse_feedback(body: bytes, classes: list[str]) -> tuple[str, str]:
    """``(request_id, label)`` from the body, or a 422 that names every bad field."""
    payload = json_object(body, 'send {"request_id": "...", "label": "..."}')
    detail = [
        loc_error(["body", key], "Extra inputs are not permitted", "extra_forbidden")
        for key in sorted(set(payload) - {"request_id", "label"})
    ]
    values: dict[str, str] = {}
    for key in ("request_id", "label"):
        problem = _text_problem(payload, key)
        if problem is None:
            values[key] = payload[key].strip()
        else:
            message, kind = problem
            detail.append(loc_error(["body", key], message, kind))
    if detail:
        where = ".".join(map(str, detail[0]["loc"]))
        raise ApiError(422, f"invalid feedback: {where}: {detail[0]['msg']}", detail)
    if values["label"] not in classes:
        message = (
            f"label {values['label']!r} is not one of the model's classes: {', '.join(classes)}"
        )
        raise ApiError(422, message, [loc_error(["body", "label"], message, "enum")])
    return values["request_id"], values["label"]


def _text_problem(payload: dict[str, Any], key: str) -> tuple[str, str] | None:
    """What is wrong with a required non-empty string field: (message, error type)."""
    if key not in payload:
        return f"{key} is missing: send a non-empty string", "missing"
    value = payload[key]
    if not isinstance(value, str):
        return f"{key} is not a string: send a non-empty string", "string_type"
    if not value.strip():
        return f"{key} is empty: send a non-empty string", "string_too_short"
    return None


# --- admin -----------------------------------------------------------------------------------


def check_admin_token(header: str | None, expected: bytes) -> None:
    """Accept an ``Authorization: Bearer <token>`` header carrying ``expected``.

    Raises :class:`ApiError` 401 (no bearer token) or 403 (a wrong one). Shared by these
    routes and the dashboard's (``loopline ui``) alias moves.
    """
    scheme, _, given = (header or "").partition(" ")
    if not header or scheme.lower() != "bearer" or not given.strip():
        raise ApiError(
            401,
            "admin routes need an 'Authorization: Bearer <token>' header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # Constant-time: the answer's timing must not reveal how much of the token matched.
    if not hmac.compare_digest(given.strip().encode(), expected):
        raise ApiError(403, "the admin token is not valid")


def add_admin_routes(app: FastAPI, service: AdminService, token: str) -> None:
    """``/admin/reload`` and ``/admin/rollback``, behind a bearer token."""
    expected = token.encode()
    router = service.router

    def authorize(request: Request) -> None:
        check_admin_token(request.headers.get("authorization"), expected)

    async def reload(request: Request) -> Response:
        """Re-resolve every followed reference now; swap in what changed."""
        authorize(request)
        changed = await run_in_threadpool(_refresh_all, router)
        return JSONBytesResponse({"routes": _routes_state(router, changed)})

    async def rollback(request: Request) -> Response:
        """Move the champion alias back to the previous version, then follow it."""
        authorize(request)
        source = router.champion.source
        if not isinstance(source, RegistryModel) or source.alias != CHAMPION:
            raise ApiError(
                409,
                f"this server serves {source.ref}, not NAME@champion: roll back with "
                "`loopline models rollback NAME` and reload",
            )
        reason, actor = _parse_rollback(await request.body())
        host = request.client.host if request.client else "unknown"
        actor = f"{actor} (POST /admin/rollback from {host})"
        old = router.champion.current.version
        try:
            await run_in_threadpool(
                source.registry.rollback, source.name, reason=reason, actor=actor
            )
        except LooplineError as exc:
            raise ApiError(409, exc.message) from None
        changed = await run_in_threadpool(_refresh_all, router)
        new = router.champion.current
        return JSONBytesResponse(
            {
                "model_name": new.name,
                "model_version": new.version,
                "previous_version": old,
                "reason": reason,
                "actor": actor,
                "routes": _routes_state(router, changed),
            }
        )

    security: dict[str, Any] = {"security": [{"bearer": []}]}
    app.add_api_route("/admin/reload", reload, methods=["POST"], openapi_extra=security)
    app.add_api_route(
        "/admin/rollback",
        rollback,
        methods=["POST"],
        openapi_extra={
            **security,
            **openapi_json_body(
                {
                    "reason": {"type": "string", "maxLength": _MAX_REASON},
                    "actor": {"type": "string", "maxLength": _MAX_ACTOR},
                },
                required=[],
                body_required=False,
            ),
        },
    )


def _refresh_all(router: Router) -> dict[str, bool]:
    """Refresh every slot (blocking); which routes changed. The old models keep serving
    when a reference cannot be resolved or its new version cannot be loaded."""
    changed = {}
    for slot in router.slots:
        try:
            changed[slot.route] = slot.refresh()
        except LooplineError as exc:
            raise ApiError(409, f"cannot reload {slot.source.ref}: {exc.message}") from None
        except Exception as exc:  # the registry or the artifact store failed
            log.warning("cannot reload %s", slot.source.ref, exc_info=True)
            message = f"cannot reload {slot.source.ref} ({type(exc).__name__}): still serving"
            raise ApiError(502, f"{message} version {slot.current.version}") from None
    return changed


def _routes_state(router: Router, changed: dict[str, bool]) -> dict[str, Any]:
    return {
        slot.route: {
            "model_name": slot.current.name,
            "model_version": slot.current.version,
            "changed": changed.get(slot.route, False),
        }
        for slot in router.slots
    }


def _parse_rollback(body: bytes) -> tuple[str, str]:
    reason, actor = "rollback requested through POST /admin/rollback", "admin"
    if not body.strip():
        return reason, actor
    payload = json_object(body, 'send {"reason": "...", "actor": "..."} or nothing')
    for key, limit in (("reason", _MAX_REASON), ("actor", _MAX_ACTOR)):
        value = payload.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            message = f"{key} must be a non-empty string of at most {limit} characters"
            raise ApiError(422, message, [loc_error(["body", key], message, "string_type")])
    return (payload.get("reason") or reason).strip(), (payload.get("actor") or actor).strip()
