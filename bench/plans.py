"""The plans of the statements a call runs, nested ones included (``bench.million``).

``auto_explain`` is loaded into one session with ``log_nested_statements`` and
``log_analyze``: every statement a function body runs (and the foreign-key checks its
triggers run) logs its ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)``; with
``client_min_messages = log`` the server sends those log lines to the client, which keeps
them. Needs a superuser (``LOAD``), as the benchmark's throwaway cluster has.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors

SETTINGS = {
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_buffers": "on",
    "auto_explain.log_timing": "on",
    "auto_explain.log_nested_statements": "on",
    "auto_explain.log_format": "json",
    "client_min_messages": "log",
}


class PlanRecorder:
    """Collects the plans ``auto_explain`` sends while :meth:`recording`."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.plans: list[dict[str, Any]] = []
        self._on = False
        conn.execute("load 'auto_explain'")
        conn.add_notice_handler(self._notice)

    def _notice(self, diag: errors.Diagnostic) -> None:
        text = diag.message_primary or ""
        if not self._on or "plan:" not in text:
            return
        self.plans.append(json.loads(text[text.index("plan:") + len("plan:") :]))

    @contextmanager
    def recording(self) -> Iterator[list[dict[str, Any]]]:
        """Record the plans of the statements run inside the block (returned list)."""
        for name, value in SETTINGS.items():
            self.conn.execute("select set_config(%s, %s, false)", (name, value))
        self.plans = []
        self._on = True
        try:
            yield self.plans
        finally:
            self._on = False
            self.conn.execute("set client_min_messages = notice")
            self.conn.execute("set auto_explain.log_min_duration = -1")


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of a plan tree, depth first."""
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def summary(entry: dict[str, Any]) -> dict[str, Any]:
    """One logged plan, compact: the statement's first words, its time and its nodes (type,
    relation or index, rows, loops, ms)."""
    plan = entry["Plan"]
    query = " ".join(str(entry.get("Query Text", "")).split())
    return {
        "query": query[:160],
        "ms": round(float(plan.get("Actual Total Time", 0.0)), 3),
        "nodes": [
            {
                "node": node["Node Type"],
                **({"relation": node["Relation Name"]} if "Relation Name" in node else {}),
                **({"index": node["Index Name"]} if "Index Name" in node else {}),
                "rows": node.get("Actual Rows"),
                "loops": node.get("Actual Loops"),
                "ms": round(float(node.get("Actual Total Time", 0.0)), 3),
            }
            for node in nodes(plan)
        ],
    }


def seq_scans(entry: dict[str, Any], big: set[str], min_rows: int = 10_000) -> list[str]:
    """Sequential scans of a big table in a logged plan (a table in ``big``, or any table
    with at least ``min_rows`` rows removed or returned), as ``relation (rows)``."""
    found = []
    for node in nodes(entry["Plan"]):
        if node["Node Type"] != "Seq Scan":
            continue
        relation = str(node.get("Relation Name"))
        seen = int(node.get("Actual Rows", 0)) + int(node.get("Rows Removed by Filter", 0))
        if relation in big or seen * int(node.get("Actual Loops", 1)) >= min_rows:
            found.append(f"{relation} ({seen} rows x {node.get('Actual Loops', 1)} loops)")
    return found


def grouped(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summaries of the same statement text (a foreign-key check run once per row, say)
    folded into one: the first one's nodes, with ``calls`` and the total and largest ms."""
    by_query: dict[str, dict[str, Any]] = {}
    for entry in summaries:
        folded = by_query.get(entry["query"])
        if folded is None:
            by_query[entry["query"]] = {**entry, "calls": 1, "max_ms": entry["ms"]}
            continue
        folded["calls"] += 1
        folded["ms"] = round(folded["ms"] + entry["ms"], 3)
        folded["max_ms"] = max(folded["max_ms"], entry["ms"])
    return list(by_query.values())
