"""The dashboard's web application: pages, fragments for live refresh, SSE, actions, metrics."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, get_args

import psycopg
from jinja2 import Environment, PackageLoader, select_autoescape
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pgweave.dashboard import actions, dag, metrics, queries, views
from pgweave.dashboard.config import DashboardConfig
from pgweave.dashboard.events import EventHub, sse_stream
from pgweave.dashboard.security import CSRF_FIELD, SecurityMiddleware, csrf_problem
from pgweave_client.statuses import RunStatusLiteral

RUN_STATUSES: tuple[str, ...] = get_args(RunStatusLiteral)


def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("pgweave.dashboard", "templates"),
        autoescape=select_autoescape(["html", "svg"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        clock=views.clock, duration=views.duration, json_preview=views.json_preview, size=views.size
    )
    return env


class Dashboard:
    """The application's state and its request handlers."""

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.pool = AsyncConnectionPool(
            config.dsn, min_size=1, max_size=4, open=False, kwargs={"autocommit": True}
        )
        self.hub = EventHub(config.dsn)
        self.templates = _templates()

    # -- plumbing -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        """Open the pool and the event listener for the server's lifetime."""
        await self.pool.open(wait=True)
        await self.hub.start()
        try:
            yield
        finally:
            await self.hub.stop()
            await self.pool.close()

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """A template rendered with the request's CSRF token and the page's context."""
        html = self.templates.get_template(template).render(
            request=request, csrf=request.state.csrf, csrf_field=CSRF_FIELD,
            read_only=self.config.read_only, **context,
        )  # fmt: skip
        return HTMLResponse(html, status)

    async def available_actions(
        self, conn: psycopg.AsyncConnection[Any], target: str, state: queries.Row | None = None
    ) -> list[actions.Action]:
        """The actions the role may execute on a run or flow (none when read-only); with the
        target's ``state``, only those that apply to it."""
        if self.config.read_only:
            return []
        return [
            a
            for a in await actions.available(conn)
            if a.target == target and (state is None or a.applies(state))
        ]

    @staticmethod
    def fragment(request: Request) -> bool:
        """Whether htmx asks for the live part of a page only."""
        return request.headers.get("hx-request") == "true"

    # -- pages --------------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        """Per flow: runs by status (last hour, last day), queue depth; workers; throughput."""
        async with self.pool.connection() as conn:
            flows = await queries.runs_by_flow(conn)
            context: dict[str, Any] = {
                "flows": flows,
                "depths": await queries.queue_depths(conn, [f["flow_slug"] for f in flows]),
                "workers": await queries.worker_counts(conn),
                "per_minute": await queries.tasks_per_minute(conn, [f["flow_slug"] for f in flows]),
            }
        template = "_overview.html" if self.fragment(request) else "overview.html"
        return self.render(request, template, page="overview", **context)

    async def runs(self, request: Request) -> Response:
        """Runs newest first: filters, find by id, keyset pagination."""
        params = request.query_params
        found = params.get("q", "").strip()
        if found:
            try:
                return RedirectResponse(f"/runs/{uuid.UUID(found)}", 303)
            except ValueError:
                problem = "Not a run id (a UUID such as 3f1c…-…)."
                return await self._runs_page(request, queries.RunFilter(), problem, 400)
        try:
            filters = queries.RunFilter(
                flow=params.get("flow") or None,
                status=_choice(params.get("status"), RUN_STATUSES, "status"),
                since=_utc(params.get("since"), "from"),
                until=_utc(params.get("until"), "until"),
                after=queries.decode_cursor(params["after"]) if params.get("after") else None,
            )
        except ValueError as exc:
            return await self._runs_page(request, queries.RunFilter(), str(exc), 400)
        return await self._runs_page(request, filters)

    async def _runs_page(
        self,
        request: Request,
        filters: queries.RunFilter,
        problem: str | None = None,
        status: int = 200,
    ) -> Response:
        async with self.pool.connection() as conn:
            rows, next_cursor = await queries.list_runs(conn, filters)
            flows = await queries.flow_slugs(conn)
        template = "_runs_table.html" if self.fragment(request) else "runs.html"
        return self.render(
            request, template, status, page="runs", runs=rows, next_cursor=next_cursor,
            filters=filters, flows=flows, statuses=RUN_STATUSES, problem=problem,
            query={k: v for k, v in request.query_params.items() if k not in ("after", "q")},
        )  # fmt: skip

    async def run(self, request: Request) -> Response:
        """One run: DAG, steps, errors, input/output, timeline, actions."""
        run_id = _uuid(request.path_params["run_id"])
        async with self.pool.connection() as conn:
            run = await queries.run(conn, run_id)
            if run is None:
                raise HTTPException(404, f"Run {run_id} not found.")
            steps = await queries.run_steps(conn, run_id, run["flow_slug"])
            context: dict[str, Any] = {
                "run": run,
                "steps": steps,
                "layout": dag.layout(
                    [s["step_slug"] for s in steps], await queries.flow_deps(conn, run["flow_slug"])
                ),
                "step_by_slug": {s["step_slug"]: s for s in steps},
                "errors": await queries.task_errors(conn, run_id),
                "restarts": await queries.restarts(conn, run_id),
                "timeline": await queries.timeline(conn, run_id),
                "actions": await self.available_actions(conn, "run", run),
                "done": actions.ACTIONS.get(request.query_params.get("done", "")),
            }
        template = "_run_live.html" if self.fragment(request) else "run.html"
        return self.render(request, template, page="runs", dag_layout=dag, **context)

    async def flow(self, request: Request) -> Response:
        """A flow's definition (steps, dependencies, options, conditions) and recent runs."""
        slug = request.path_params["flow_slug"]
        async with self.pool.connection() as conn:
            flow = await queries.flow(conn, slug)
            if flow is None:
                raise HTTPException(404, f"Flow {slug} not found.")
            steps = await queries.flow_steps(conn, slug)
            recent, _ = await queries.list_runs(conn, queries.RunFilter(flow=slug, limit=20))
            context: dict[str, Any] = {
                "flow": flow,
                "steps": steps,
                "layout": dag.layout(
                    [s["step_slug"] for s in steps], await queries.flow_deps(conn, slug)
                ),
                "step_by_slug": {s["step_slug"]: s for s in steps},
                "runs": recent,
                "actions": await self.available_actions(conn, "flow", flow),
                "done": actions.ACTIONS.get(request.query_params.get("done", "")),
            }
        return self.render(request, "flow.html", page="flows", dag_layout=dag, **context)

    async def workers(self, request: Request) -> Response:
        """Workers: alive, stale and stopped, with their last heartbeat and queue."""
        async with self.pool.connection() as conn:
            rows = await queries.workers(conn)
        template = "_workers.html" if self.fragment(request) else "workers.html"
        return self.render(
            request, template, page="workers", workers=rows, alive_seconds=queries.ALIVE_SECONDS
        )

    # -- live, metrics, actions ---------------------------------------------------------------

    async def events(self, request: Request) -> Response:
        """Server-Sent Events: the engine's events (one run's with ``?run_id=``)."""
        run_id = request.query_params.get("run_id")
        stream = sse_stream(
            self.hub, str(_uuid(run_id)) if run_id else None, request.is_disconnected
        )
        return StreamingResponse(
            stream, media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )  # fmt: skip

    async def metrics(self, _request: Request) -> Response:
        """Prometheus metrics computed from the database."""
        async with self.pool.connection() as conn:
            body = await metrics.render(conn)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def action(self, request: Request) -> Response:
        """Run an action after its confirmation step: POST without ``confirmed`` shows the
        confirmation form, POST with it calls the engine and redirects back."""
        action = actions.ACTIONS.get(request.path_params["name"])
        if action is None:
            raise HTTPException(404, "No such action.")
        if self.config.read_only:
            raise HTTPException(403, "The dashboard is read-only (--read-only).")
        form = await request.form()
        problem = csrf_problem(request, _text(form.get(CSRF_FIELD)))
        if problem:
            raise HTTPException(403, problem)
        try:
            target = actions.parse_target(action, _text(form.get("target")) or "")
        except ValueError as exc:
            raise HTTPException(400, f"Not a run id: {form.get('target')}") from exc
        back = f"/runs/{target}" if action.target == "run" else f"/flows/{target}"
        reason = _text(form.get("reason"))
        async with self.pool.connection() as conn:
            if action not in await self.available_actions(conn, action.target):
                raise HTTPException(404, f"The engine offers no {action.label.lower()} here.")
            if form.get("confirmed") != "yes":
                return self.render(
                    request, "confirm.html", action=action, target=target, reason=reason, back=back
                )
            client = request.client.host if request.client else "?"
            try:
                row = await actions.perform(conn, action, target, reason, client)
            except psycopg.Error as exc:
                return self.render(
                    request, "error.html", 409, title=f"{action.label} refused",
                    message=exc.diag.message_primary or str(exc), back=back,
                )  # fmt: skip
        if action.starts_run:
            back = f"/runs/{row['run_id']}"
        return RedirectResponse(f"{back}?done={action.name}", 303)

    async def error_page(self, request: Request, exc: Exception) -> Response:
        """An HTTP error (404, 403, 400…) as a page."""
        assert isinstance(exc, HTTPException)
        return self.render(
            request,
            "error.html",
            exc.status_code,
            title=f"Error {exc.status_code}",
            message=exc.detail,
            back="/",
        )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise HTTPException(404, "Not a run id.") from exc


def _choice(value: str | None, allowed: tuple[str, ...], name: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise ValueError(f"Unknown {name} {value!r}: one of {', '.join(allowed)}.")
    return value


def _utc(value: str | None, name: str) -> datetime | None:
    """A ``datetime-local`` field's value, read as UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"'{name}' is not a date and time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def create_app(config: DashboardConfig) -> Starlette:
    """The ASGI application for ``config``."""
    board = Dashboard(config)
    static = StaticFiles(packages=[("pgweave.dashboard", "static")])
    app = Starlette(
        routes=[
            Route("/", board.overview),
            Route("/runs", board.runs),
            Route("/runs/{run_id}", board.run),
            Route("/flows/{flow_slug}", board.flow),
            Route("/workers", board.workers),
            Route("/events", board.events),
            Route("/metrics", board.metrics),
            Route("/actions/{name}", board.action, methods=["POST"]),
            Mount("/static", static, name="static"),
        ],
        middleware=[Middleware(SecurityMiddleware, token=config.token)],
        exception_handlers={HTTPException: board.error_page},
        lifespan=board.lifespan,
    )
    app.state.dashboard = board
    return app
