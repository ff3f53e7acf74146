"""The console's pages: recent events, one event, and replaying its failed handlers."""

from __future__ import annotations

import json
import logging
import typing
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from alerthooks.console.security import CSRF_FIELD, Auth, Csrf, Gate, check_auth, csrf_key
from alerthooks.runtime import Unreadable, stored_event
from alerthooks.state import alert_kinds, subject_of
from alerthooks.store import Status, StoredEvent, StoreError

if TYPE_CHECKING:
    from alerthooks.facade import Facade

logger = logging.getLogger(__name__)

#: Every outcome status, in the store's order: the filter links and the badges come from here.
STATUSES: tuple[str, ...] = typing.get_args(Status)
#: Statuses whose handlers the replay button runs again (what ``Store.replay`` resets).
REPLAYABLE: tuple[str, ...] = tuple(s for s in STATUSES if s in ("failed", "dead", "unparsed"))
#: Statuses of work still under way: a page showing one reloads itself every few seconds.
IN_FLIGHT: tuple[str, ...] = ("pending", "running")

DEFAULT_LIMIT = 50
BOARD_LIMIT = 100
"""Subjects in alarm the board lists at most (``alerthooks status --in-alarm`` lists all)."""
MAX_LIMIT = 500
MAX_FORM_BYTES = 8192
REPLAY_TIMEOUT = 25.0  # inline mode: how long the replay request waits for the handlers

_SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("alerthooks.console", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


_templates.filters["when"] = _when


def console_app(hooks: Facade, *, auth: Any, secret: str | bytes | None = None) -> Starlette:
    """The console of ``hooks`` as an ASGI app; see :meth:`AlertHooks.console`."""
    return _Console(hooks, check_auth(auth), secret).app


class _Console:
    def __init__(self, hooks: Facade, auth: Auth, secret: str | bytes | None) -> None:
        self.hooks = hooks
        self.csrf = Csrf(csrf_key(auth, secret))
        self._opened = False
        self.app = Starlette(
            routes=[
                Route("/", self.index, methods=["GET", "HEAD"]),
                Route("/events/{provider}/{event_id:path}", self.event, methods=["GET", "HEAD"]),
                Route("/replay", self.replay, methods=["POST"]),
            ],
            middleware=[Middleware(Gate, auth=auth)],
        )

    # -- pages ----------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        status = request.query_params.get("status") or None
        if status is not None and status not in STATUSES:
            return self._page(
                request, "error.html", status_code=400, message=f"unknown status {status!r}"
            )
        limit = _limit(request.query_params.get("limit"))
        try:
            await self._open()
            found = await self.hooks.store.events(status=typing.cast(Status, status), limit=limit)
            board = await self._alert_board()
        except Exception as exc:
            return self._store_down(request, exc)
        rows = [self._row(request, stored) for stored in found]
        return self._page(
            request,
            "index.html",
            rows=rows,
            status=status,
            limit=limit,
            alert_board=board,
            refresh=any(o["status"] in IN_FLIGHT for row in rows for o in row["outcomes"]),
        )

    async def event(self, request: Request) -> Response:
        provider_name = request.path_params["provider"]
        event_id = request.path_params["event_id"]
        try:
            await self._open()
            stored = await self.hooks.store.get(provider_name, event_id)
        except Exception as exc:
            return self._store_down(request, exc)
        if stored is None:
            return self._page(
                request,
                "error.html",
                status_code=404,
                message=f"no stored event {event_id!r} from {provider_name!r}",
            )
        row = self._row(request, stored)
        fields, not_normalized = self._normalized(stored)
        return self._page(
            request,
            "event.html",
            row=row,
            fields=fields,
            not_normalized=not_normalized,
            raw=_pretty(stored.body),
            note=_replay_note(request.query_params),
            refresh=any(o["status"] in IN_FLIGHT for o in row["outcomes"]),
        )

    async def replay(self, request: Request) -> Response:
        if not _same_origin(request):
            return self._page(
                request, "error.html", status_code=403, message="cross-origin request refused"
            )
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return self._page(request, "error.html", status_code=413, message="form too large")
        form = {k: v[0] for k, v in parse_qs(body.decode("latin-1")).items()}
        if not self.csrf.passes(request, form.get(CSRF_FIELD)):
            return self._page(
                request,
                "error.html",
                status_code=403,
                message="CSRF token missing or invalid: reload the page and try again",
            )
        provider_name, event_id = form.get("provider"), form.get("event_id")
        if not provider_name or not event_id:
            return self._page(
                request, "error.html", status_code=400, message="provider and event_id are needed"
            )
        hooks = self.hooks
        try:
            await self._open()
            stored = await hooks.store.get(provider_name, event_id)
            if stored is None:
                return self._page(
                    request,
                    "error.html",
                    status_code=404,
                    message=f"no stored event {event_id!r} from {provider_name!r}",
                )
            count = await hooks.store.replay([event_id])
            if any(o.status == "unparsed" for o in stored.outcomes):
                read = await hooks.read_again(provider_name, event_id)
                if isinstance(read, str):
                    return self._page(
                        request,
                        "error.html",
                        status_code=409,
                        message=f"still cannot be read: {read}",
                    )
                count += len(read)
                # A thin event's handlers run under the id of the event it stood for: show it.
                event_id = getattr(read, "event_id", event_id)
        except Exception as exc:
            return self._store_down(request, exc)
        logger.info("console: %s event %s replayed (%d handler(s))", provider_name, event_id, count)
        ran = "queued"
        if count and hooks.mode == "inline":
            # Nothing else runs pending work in inline mode: run it now, as
            # `alerthooks replay --app` does.
            try:
                await hooks.drain(timeout=REPLAY_TIMEOUT)
                ran = "ran"
            except TimeoutError:
                ran = "running"
            except StoreError as exc:
                return self._store_down(request, exc)
        elif count:
            hooks.worker.wake()  # a worker in this process starts at once; others poll or LISTEN
        target = _base(request) + _event_path(provider_name, event_id)
        return RedirectResponse(f"{target}?replayed={count}&ran={ran}", status_code=303)

    # -- parts ----------------------------------------------------------------------------------

    async def _alert_board(self) -> dict[str, Any]:
        """Who is in alarm now, for the board above the events: the first :data:`BOARD_LIMIT`
        subjects in alarm, and how many more there are."""
        in_alarm = await self.hooks.alert_states(in_alarm=True)
        shown = in_alarm[:BOARD_LIMIT]
        kinds = await alert_kinds(self.hooks.store, self.hooks.providers, shown)
        rows = [
            {
                "provider": s.provider,
                "alert_id": s.alert_id,
                "alert_name": s.alert_name,
                "kind": kinds.get((s.provider, s.alert_id), "other"),
                "subject": subject_of(s),
                "since": s.since,
            }
            for s in shown
        ]
        return {"rows": rows, "more": max(0, len(in_alarm) - BOARD_LIMIT)}

    def _normalized(self, stored: StoredEvent) -> tuple[list[tuple[str, str]], str | None]:
        event = stored_event(self.hooks.providers, stored.provider, stored.body, stored.event_id)
        if isinstance(event, Unreadable):
            return [], str(event)
        fields = [
            (name, "" if value is None else str(value))
            for name, value in event.model_dump(exclude={"raw"}).items()
        ]
        return fields, None

    def _kind(self, stored: StoredEvent) -> str:
        """The kind of the alert a stored event is, or "" when it does not read as one."""
        provider = self.hooks.providers.get(stored.provider)
        try:
            payload = json.loads(stored.body)
            return (
                provider.normalize(payload).kind if provider and isinstance(payload, dict) else ""
            )
        except Exception:  # not an alert, or unparsed: no kind
            return ""

    def _row(self, request: Request, stored: StoredEvent) -> dict[str, Any]:
        outcomes = [
            {
                "handler": o.handler,
                "status": o.status,
                "attempts": o.attempts,
                "last_error": o.last_error,
                "due_at": o.due_at,
            }
            for o in stored.outcomes
        ]
        return {
            "provider": stored.provider,
            "event_id": stored.event_id,
            "event_type": stored.event_type,
            "kind": self._kind(stored),
            "received_at": stored.received_at,
            "outcomes": outcomes,
            "replayable": sum(o["status"] in REPLAYABLE for o in outcomes),
            "url": _base(request) + _event_path(stored.provider, stored.event_id),
        }

    def _page(
        self, request: Request, template: str, *, status_code: int = 200, **context: Any
    ) -> Response:
        token = self.csrf.token_for(request)
        base = _base(request)
        context.setdefault("refresh", False)
        html = _templates.get_template(template).render(
            base=base,
            statuses=STATUSES,
            csrf_field=CSRF_FIELD,
            csrf=token,
            mode=self.hooks.mode,
            **context,
        )
        response = HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)
        self.csrf.set_cookie(response, request, token)
        return response

    def _store_down(self, request: Request, exc: Exception) -> Response:
        logger.warning("console: the store did not answer: %s", exc)
        return self._page(
            request, "error.html", status_code=503, message="the store did not answer; try again"
        )

    async def _open(self) -> None:
        if not self._opened:
            await self.hooks.store.open()
            self._opened = True


def _base(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _event_path(provider: str, event_id: str) -> str:
    return f"/events/{quote(provider, safe='')}/{quote(event_id, safe='')}"


def _limit(value: str | None) -> int:
    if value is None or not value.isdigit():
        return DEFAULT_LIMIT
    return max(1, min(int(value), MAX_LIMIT))


def _pretty(body: bytes) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False, sort_keys=False)
    except (ValueError, RecursionError):
        return body.decode("utf-8", "replace")


def _replay_note(query: Mapping[str, str]) -> str | None:
    count = query.get("replayed")
    if count is None or not count.isdigit():
        return None
    n = int(count)
    if n == 0:
        return "nothing to replay: no failed or dead handlers"
    ran = query.get("ran")
    if ran == "ran":
        return f"{n} handler(s) ran again"
    if ran == "running":
        return f"{n} handler(s) replayed; still running"
    return f"{n} handler(s) queued again; the worker runs them"


def _same_origin(request: Request) -> bool:
    """False when the browser says the form came from another origin."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host
