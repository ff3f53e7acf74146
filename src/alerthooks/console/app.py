"""The console's pages: the inbox (search, filters, pages of events, the last 24 hours), one
event, the rejected deliveries, and replaying failed handlers."""

from __future__ import annotations

import json
import logging
import typing
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from alerthooks.console.chart import chart
from alerthooks.console.security import CSRF_FIELD, Auth, Csrf, Gate, check_auth, csrf_key
from alerthooks.events import ALERT_KINDS, AlertEvent
from alerthooks.runtime import Unreadable, stored_event
from alerthooks.state import alert_kinds, subject_of
from alerthooks.store import REJECTIONS_KEPT, Attempt, Outcome, Status, StoredEvent, StoreError

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
TYPES: tuple[str, ...] = ("alert.triggered", "alert.cleared")
"""The normalized types the type filter offers."""
CHART_LIMIT = 2000
"""Events (and rejections) the 24-hour chart reads at most."""
SCAN_LIMIT = 2000
"""Events a page with a type or kind filter reads at most to fill itself (the "older" link
goes on from where it stopped)."""
COUNT_LIMIT = 1000
"""Dead or unparsed events counted at most for the links at the top ("1000+")."""
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
_templates.filters["day"] = lambda v: "" if v is None else f"{v.astimezone(timezone.utc):%Y-%m-%d}"
_templates.filters["clock"] = lambda v: (
    "" if v is None else f"{v.astimezone(timezone.utc):%H:%M:%S} UTC"
)


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
                Route("/rejected", self.rejected, methods=["GET", "HEAD"]),
                Route("/replay", self.replay, methods=["POST"]),
                Route("/replay-dead", self.replay_dead, methods=["POST"]),
            ],
            middleware=[Middleware(Gate, auth=auth)],
        )

    # -- pages ----------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        query = _Query.parse(request.query_params)
        if isinstance(query, str):
            return self._page(request, "error.html", status_code=400, message=query)
        try:
            await self._open()
            rows, older = await self._search(request, query)
            board = await self._alert_board()
            glance = await self._glance()
        except Exception as exc:
            return self._store_down(request, exc)
        base = _base(request)
        return self._page(
            request,
            "index.html",
            rows=rows,
            q=query,
            status=query.status,
            limit=query.limit,
            providers=sorted(self.hooks.providers),
            types=TYPES,
            kinds=ALERT_KINDS,
            older=None if older is None else f"{base}/?{query.link(before=older)}",
            newest=f"{base}/?{query.link(before=None)}" if query.before else None,
            alert_board=board,
            glance=glance,
            note=_bulk_note(request.query_params),
            refresh=any(o["status"] in IN_FLIGHT for row in rows for o in row["outcomes"]),
        )

    async def rejected(self, request: Request) -> Response:
        provider = request.query_params.get("provider") or None
        limit = _limit(request.query_params.get("limit"))
        try:
            await self._open()
            found = await self.hooks.store.rejections(limit=limit, provider=provider)
        except Exception as exc:
            return self._store_down(request, exc)
        return self._page(
            request,
            "rejected.html",
            rejections=found,
            provider=provider,
            providers=sorted(self.hooks.providers),
            limit=limit,
            kept=REJECTIONS_KEPT,
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
            attempts=_attempts(stored),
            fields=fields,
            not_normalized=not_normalized,
            raw=_pretty(stored.body),
            note=_replay_note(request.query_params),
            refresh=any(o["status"] in IN_FLIGHT for o in row["outcomes"]),
        )

    async def replay(self, request: Request) -> Response:
        form = await self._refused(request)
        if isinstance(form, Response):
            return form
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
            # Nothing else runs pending work in inline mode: run this event's now (and no
            # other's), as `alerthooks replay --app` does.
            try:
                await hooks.worker.run_events([(provider_name, event_id)], REPLAY_TIMEOUT)
                ran = "ran"
            except TimeoutError:
                ran = "running"
            except StoreError as exc:
                return self._store_down(request, exc)
        elif count:
            hooks.worker.wake()  # a worker in this process starts at once; others poll or LISTEN
        target = _base(request) + _event_path(provider_name, event_id)
        return RedirectResponse(f"{target}?replayed={count}&ran={ran}", status_code=303)

    async def replay_dead(self, request: Request) -> Response:
        """Replay every dead handler (the inbox's "replay all dead"), guarded as one replay."""
        refused = await self._refused(request)
        if isinstance(refused, Response):
            return refused
        hooks = self.hooks
        try:
            await self._open()
            events = {
                (e.provider, e.event_id)
                for e in await hooks.store.events(status="dead", limit=1_000_000)
            }
            count = await hooks.store.replay(dead=True)
        except Exception as exc:
            return self._store_down(request, exc)
        logger.info("console: every dead handler replayed (%d)", count)
        ran = "queued"
        if count and hooks.mode == "inline":
            try:
                await hooks.worker.run_events(events, REPLAY_TIMEOUT)
                ran = "ran"
            except TimeoutError:
                ran = "running"
            except StoreError as exc:
                return self._store_down(request, exc)
        elif count:
            hooks.worker.wake()
        return RedirectResponse(
            f"{_base(request)}/?replayed={count}&ran={ran}&status=dead", status_code=303
        )

    async def _refused(self, request: Request) -> Response | dict[str, str]:
        """The error page for a POST from another origin, too large or without a valid CSRF
        token; else the form's fields."""
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
        return form

    # -- parts ----------------------------------------------------------------------------------

    async def _search(
        self, request: Request, query: _Query
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of events matching ``query`` and the cursor of the next (older) page."""
        store = self.hooks.store
        post_filter = query.type is not None or query.kind is not None
        rows: list[dict[str, Any]] = []
        before, scanned = query.before, 0
        while True:
            # One more than a page: whether an "older" page exists is known without a query.
            batch = await store.events(
                status=typing.cast(Status, query.status),
                limit=query.limit + 1,
                provider=query.provider,
                search=query.q,
                since=query.since,
                until=query.until,
                before=before,
            )
            page, extra = batch[: query.limit], len(batch) > query.limit
            for i, stored in enumerate(page):
                before = stored.cursor
                scanned += 1
                row = self._row(request, stored)
                if post_filter and not query.matches(row):
                    continue
                rows.append(row)
                if len(rows) >= query.limit:
                    return rows, before if extra or i < len(page) - 1 else None
            if not extra:
                return rows, None
            if not post_filter or scanned >= SCAN_LIMIT:
                return rows, before

    async def _glance(self) -> dict[str, Any]:
        """The last 24 hours at a glance: the chart, and how many events are dead or
        unparsed."""
        store = self.hooks.store
        since = datetime.now(timezone.utc) - timedelta(hours=24)
        events = await store.events(since=since, limit=CHART_LIMIT)
        rejections = [
            r for r in await store.rejections(limit=CHART_LIMIT) if r.received_at >= since
        ]
        counts: dict[str, str] = {}
        statuses: tuple[Status, ...] = ("dead", "unparsed")
        for status in statuses:
            n = len(await store.events(status=status, limit=COUNT_LIMIT + 1))
            counts[status] = f"{COUNT_LIMIT}+" if n > COUNT_LIMIT else str(n)
        return {
            "chart": chart(events, rejections, truncated=len(events) >= CHART_LIMIT),
            "dead": counts["dead"],
            "unparsed": counts["unparsed"],
        }

    async def _alert_board(self) -> dict[str, Any]:
        """Who is in alarm now, for the board above the events: the first :data:`BOARD_LIMIT`
        subjects in alarm, and how many more there are."""
        in_alarm = await self.hooks.alert_states(in_alarm=True)
        shown = in_alarm[:BOARD_LIMIT]
        kinds = await alert_kinds(self.hooks.store, self.hooks.providers, shown)
        rows = []
        for s in shown:
            name = s.alert_name
            if not name:  # Orb's alerts have no name: say what kind and scope the event did
                stored = await self.hooks.store.get(s.provider, s.event_id)
                event = None if stored is None else self._event_of(stored)
                name = None if event is None else _summary(event)["alert"]
            rows.append(
                {
                    "provider": s.provider,
                    "alert_id": s.alert_id,
                    "alert_name": name,
                    "kind": kinds.get((s.provider, s.alert_id), "other"),
                    "subject": subject_of(s),
                    "since": s.since,
                }
            )
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

    def _row(self, request: Request, stored: StoredEvent) -> dict[str, Any]:
        outcomes = [
            {
                "handler": o.handler,
                "status": o.status,
                "attempts": max(o.attempts, len(o.history)),
                "last_error": o.last_error,
                "due_at": o.due_at,
            }
            for o in stored.outcomes
        ]
        event = self._event_of(stored)
        return {
            "provider": stored.provider,
            "event_id": stored.event_id,
            "event_type": stored.event_type,
            "received_at": stored.received_at,
            "outcomes": outcomes,
            "replayable": sum(o["status"] in REPLAYABLE for o in outcomes),
            "url": _base(request) + _event_path(stored.provider, stored.event_id),
            **_summary(event),
        }

    def _event_of(self, stored: StoredEvent) -> AlertEvent | None:
        """The stored event normalized by its provider, or None when it does not read."""
        event = stored_event(self.hooks.providers, stored.provider, stored.body, stored.event_id)
        return None if isinstance(event, Unreadable) else event

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


class _Query:
    """The inbox's search and filters, read from the URL (so a link can be shared)."""

    def __init__(self) -> None:
        self.q: str | None = None
        self.provider: str | None = None
        self.type: str | None = None
        self.kind: str | None = None
        self.status: str | None = None
        self.since: datetime | None = None
        self.until: datetime | None = None
        self.before: int | None = None
        self.limit = DEFAULT_LIMIT
        self._raw: dict[str, str] = {}

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> _Query | str:
        """The query, or the message of a 400 for a value that cannot be."""
        query = cls()
        raw = {
            k: params[k].strip()
            for k in ("q", "provider", "type", "kind", "status", "since", "until", "limit")
            if params.get(k, "").strip()
        }
        query._raw = raw
        query.q = raw.get("q")
        query.provider = raw.get("provider")
        kind = raw.get("kind")
        if kind is not None and kind not in ALERT_KINDS:
            return f"unknown kind {kind!r}; choose one of {', '.join(ALERT_KINDS)}"
        query.kind = kind
        status = raw.get("status")
        if status is not None and status not in STATUSES:
            return f"unknown status {status!r}"
        query.status = status
        shown_type = raw.get("type")
        if shown_type is not None and shown_type not in TYPES:
            return f"unknown type {shown_type!r}; choose one of {', '.join(TYPES)}"
        query.type = shown_type
        for name in ("since", "until"):
            if name in raw:
                try:
                    day = date.fromisoformat(raw[name])
                except ValueError:
                    return f"{name} must be a date (YYYY-MM-DD), got {raw[name]!r}"
                moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
                # until is inclusive of its day: events before the next midnight
                setattr(query, name, moment if name == "since" else moment + timedelta(days=1))
        before = params.get("before", "")
        query.before = int(before) if before.isdigit() else None
        query.limit = _limit(raw.get("limit"))
        return query

    def value(self, name: str) -> str:
        """The raw value of a field as given (for the form)."""
        return self._raw.get(name, "")

    @property
    def filtered(self) -> bool:
        """Whether any search or filter is set."""
        return any(k != "limit" for k in self._raw)

    @property
    def filtered_beyond_status(self) -> bool:
        """Whether a search or filter other than the status is set."""
        return any(k not in ("limit", "status") for k in self._raw)

    def link(self, *, before: int | None) -> str:
        """The query string of this search, at the page before ``before``."""
        params = dict(self._raw)
        if before is not None:
            params["before"] = str(before)
        return urlencode(params)

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether a row passes the filters the store cannot apply (normalized type, kind)."""
        if self.type is not None and row["type"] != self.type:
            return False
        return self.kind is None or row["kind"] == self.kind


def _summary(event: AlertEvent | None) -> dict[str, Any]:
    """The inbox's columns of a normalized event: type, kind (and the provider's own alert
    type), alert, subject, value."""
    if event is None:
        return {
            "type": None,
            "kind": "",
            "alert_type": None,
            "alert": None,
            "alert_id": None,
            "subject": None,
            "value": None,
        }
    alert: str | None
    if event.alert_name:
        alert = event.alert_name
    else:  # Orb's alerts have no name: their type and what they watch
        scope = "subscription" if event.subscription_id else "customer" if event.customer_id else ""
        alert = " on ".join(p for p in (event.alert_type, scope) if p) or None
    unit = "%" if event.threshold_mode == "percentage" else ""
    currency = f" {event.currency}" if event.currency else ""
    value = " / ".join(
        f"{n}{unit}{currency}" if n is not None else "-" for n in (event.value, event.threshold)
    )
    return {
        "type": event.type,
        "kind": event.kind,
        "alert_type": event.alert_type,
        "alert": alert,
        "alert_id": event.alert_id,
        "subject": event.customer_id or event.subscription_id,
        "value": None if event.value is None and event.threshold is None else value,
    }


def _attempts(stored: StoredEvent) -> list[dict[str, Any]]:
    """Every finished attempt of every handler, oldest first, with its own outcome and its
    error split into the exception type and the first line of the message."""
    found: list[dict[str, Any]] = []
    for o in stored.outcomes:
        for attempt in o.history:
            kind, message = _split_error(attempt.error)
            found.append(
                {
                    "handler": o.handler,
                    "number": attempt.number,
                    "outcome": _attempt_outcome(o, attempt),
                    "finished_at": attempt.finished_at,
                    "exception": kind,
                    "message": message,
                    "error": attempt.error,
                }
            )
    found.sort(key=lambda a: (a["finished_at"], a["handler"], a["number"]))
    return found


def _attempt_outcome(outcome: Outcome, attempt: Attempt) -> str:
    if attempt.error is None:
        return "done"
    return "dead" if attempt is outcome.history[-1] and outcome.status == "dead" else "failed"


def _split_error(error: str | None) -> tuple[str | None, str | None]:
    """``("ConnectionError", "pager down")`` from ``"ConnectionError: pager down\n…"``."""
    if error is None:
        return None, None
    first = error.strip().splitlines()[0] if error.strip() else ""
    kind, sep, message = first.partition(": ")
    if sep and kind.replace(".", "").replace("_", "").isalnum():
        return kind, message
    return None, first


def _bulk_note(query: Mapping[str, str]) -> str | None:
    """The note after "replay all dead"."""
    return _replay_note(query) if "replayed" in query else None
