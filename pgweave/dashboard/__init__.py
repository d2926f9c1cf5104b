"""``pgweave dashboard``: a live web monitor of flows, runs, steps, tasks and workers.

Server-rendered (Starlette, Jinja2, htmx shipped in ``static/``), live through Server-Sent
Events fed by the engine's NOTIFY channel ``pgweave:events``, with Prometheus metrics on
``/metrics`` and run-control actions where the engine offers them. The application is
:func:`pgweave.dashboard.app.create_app`.
"""
