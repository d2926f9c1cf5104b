"""What the spec's SQL fragments say, read with PostgreSQL's own parser (pglast).

Expressions (checks, index predicates, defaults) and function bodies are parsed at
generate time. A body yields ``BodyFacts``: the schema-qualified functions it calls and
relations it names, the status literals it writes (``update … set col = 'x'``,
``insert … (col) values ('x')``), the tables it inserts into, the event payloads it builds
by hand (``jsonb_build_object('event_type', …)``), and syntax errors - each with its line
in the body file. PL/pgSQL bodies go through pglast's PL/pgSQL parser, then
every SQL statement and expression inside them through the SQL parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from pglast import parser

Json = Any  # a node of pglast's JSON parse tree


@dataclass(frozen=True)
class Located:
    """A name found in SQL with the 1-based line of the fragment it was found on."""

    schema: str
    name: str
    line: int


@dataclass(frozen=True)
class StatusWrite:
    """A literal written to ``table.column`` by an UPDATE or INSERT."""

    schema: str
    table: str
    column: str
    literal: str
    line: int


@dataclass
class BodyFacts:
    """Everything read from one function body (lines are 1-based within the body)."""

    calls: list[Located] = field(default_factory=list)
    relations: list[Located] = field(default_factory=list)
    inserts: list[Located] = field(default_factory=list)
    status_writes: list[StatusWrite] = field(default_factory=list)
    # lines of jsonb_build_object('event_type', …) calls: event payloads built by hand
    event_payloads: list[int] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)


class SqlSyntaxError(ValueError):
    """A fragment PostgreSQL's parser refuses; ``line`` is 1-based within the fragment."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def _line_of(text: bytes, offset: int) -> int:
    return text[: max(offset, 0)].count(b"\n") + 1


def _error_line(sql: str, exc: parser.ParseError) -> int:
    """The 1-based line a parse error points at (1 when it gives no position)."""
    offset = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
    return sql[:offset].count("\n") + 1


def _parse(sql: str) -> Json:
    try:
        return json.loads(parser.parse_sql_json(sql))
    except parser.ParseError as exc:
        raise SqlSyntaxError(str(exc.args[0]), _error_line(sql, exc)) from exc


def _walk(node: Json) -> Iterator[tuple[str, Json]]:
    """Every (node type, fields) pair of a parse tree, depth first."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, dict) and key[:1].isupper():
                yield key, value
            elif key == "relation" and isinstance(value, dict) and "relname" in value:
                yield "RangeVar", value  # the target of INSERT/UPDATE/DELETE is unwrapped
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _names(fields: list[Json]) -> list[str]:
    return [f["String"]["sval"] for f in fields if "String" in f]


def parse_expression(text: str) -> Json:
    """The parse tree of one SQL expression; raises ``SqlSyntaxError``."""
    return _parse(f"select ({text}\n)")  # parenthesised: a trailing word is no alias


def column_refs(tree: Json) -> list[str]:
    """Unqualified column names an expression's tree refers to, in order."""
    return [
        names[0]
        for kind, node in _walk(tree)
        if kind == "ColumnRef" and len(names := _names(node["fields"])) == 1
    ]


def compared_literals(tree: Json, column: str) -> list[str]:
    """String literals ``column`` is compared with (``=``, ``<>``, ``in (…)``, ``not in``)."""
    found: list[str] = []
    for kind, node in _walk(tree):
        if kind != "A_Expr" or node.get("kind") not in ("AEXPR_OP", "AEXPR_IN"):
            continue
        left = node.get("lexpr", {}).get("ColumnRef")
        if left is None or _names(left["fields"]) != [column]:
            continue
        right = node.get("rexpr", {})
        for value in right["List"]["items"] if "List" in right else [right]:
            found.extend(_literals(value))
    return found


def called_functions(tree: Json) -> list[tuple[str, str]]:
    """(schema, name) of every schema-qualified function call in a tree."""
    found: list[tuple[str, str]] = []
    for kind, node in _walk(tree):
        if kind == "FuncCall":
            names = _names(node["funcname"])
            if len(names) == 2:
                found.append((names[0], names[1]))
    return found


_FK_ACTIONS = {
    "a": "no action",
    "r": "restrict",
    "c": "cascade",
    "n": "set null",
    "d": "set default",
}


def foreign_key(definition: str) -> dict[str, object]:
    """``foreign key (…) references s.t (…) on …`` as plain data (table, columns, actions)."""
    tree = _parse(f"alter table t add constraint c {definition}")
    constraint = next(node for kind, node in _walk(tree) if kind == "Constraint")
    return {
        "table": constraint["pktable"]["relname"],
        "columns": _names(constraint.get("pk_attrs", [])),
        "on_delete": _FK_ACTIONS[constraint.get("fk_del_action", "a")],
        "on_update": _FK_ACTIONS[constraint.get("fk_upd_action", "a")],
    }


def _literals(value: Json) -> list[str]:
    """String constants a value expression can evaluate to (constants and CASE results)."""
    if "A_Const" in value:
        sval = value["A_Const"].get("sval")
        return [sval["sval"]] if sval is not None else []
    if "TypeCast" in value:
        return _literals(value["TypeCast"]["arg"])
    if "CaseExpr" in value:
        case = value["CaseExpr"]
        found = [
            lit for when in case.get("args", []) for lit in _literals(when["CaseWhen"]["result"])
        ]
        return found + (_literals(case["defresult"]) if "defresult" in case else [])
    return []


def _statement_facts(tree: Json, text: bytes, first_line: int, facts: BodyFacts) -> None:
    """Add what one parsed SQL text holds; its line 1 is ``first_line`` of the body."""

    def line(node: Json) -> int:
        return first_line + _line_of(text, int(node.get("location", 0))) - 1

    for kind, node in _walk(tree):
        if kind == "FuncCall":
            names = _names(node["funcname"])
            if len(names) == 2:
                facts.calls.append(Located(names[0], names[1], line(node)))
            if names[-1] == "jsonb_build_object" and names[0] in (
                "jsonb_build_object",
                "pg_catalog",
            ):
                first = node.get("args", [{}])[0]
                if _literals(first) == ["event_type"]:
                    facts.event_payloads.append(line(node))
        elif kind == "RangeVar" and "schemaname" in node:
            facts.relations.append(Located(node["schemaname"], node["relname"], line(node)))
        elif kind == "UpdateStmt":
            relation = node["relation"]
            for target in node.get("targetList", []):
                res = target["ResTarget"]
                for literal in _literals(res.get("val", {})):
                    facts.status_writes.append(
                        StatusWrite(
                            relation.get("schemaname", ""),
                            relation["relname"],
                            res["name"],
                            literal,
                            line(res),
                        )
                    )
        elif kind == "InsertStmt":
            relation = node["relation"]
            schema = relation.get("schemaname", "")
            facts.inserts.append(Located(schema, relation["relname"], line(relation)))
            columns = [c["ResTarget"]["name"] for c in node.get("cols", [])]
            select = node.get("selectStmt", {}).get("SelectStmt", {})
            rows = [list(row["List"]["items"]) for row in select.get("valuesLists", [])] or [
                [t["ResTarget"]["val"] for t in select.get("targetList", [])]
            ]
            for row in rows:
                for column, value in zip(columns, row, strict=False):
                    for literal in _literals(value):
                        facts.status_writes.append(
                            StatusWrite(
                                schema, relation["relname"], column, literal, line(relation)
                            )
                        )


def _sql_facts(sql: str, first_line: int, facts: BodyFacts, prefix: str = "") -> None:
    text = (prefix + sql).encode()
    try:
        tree = _parse(prefix + sql)
    except SqlSyntaxError as exc:
        facts.errors.append((first_line + exc.line - 1, str(exc)))
        return
    _statement_facts(tree, text, first_line, facts)


_ASSIGNMENT = re.compile(r"^[^:=]*?:?=", re.DOTALL)


def _plpgsql_source(body: str, schemas: tuple[str, ...], signature: str) -> str:
    """A CREATE FUNCTION around ``body`` that pglast's PL/pgSQL parser accepts.

    That parser cannot look up types outside pg_catalog and public, so schema-qualified
    types in DECLARE sections are requalified as ``public`` (only for this parse: the
    statements and expressions are taken from the tree, where they are unchanged).
    """
    tokens = parser.scan(body)
    raw = body.encode()
    out = bytearray()
    last = 0
    declaring = False
    for index, token in enumerate(tokens):
        if token.name == "DECLARE":
            declaring = True
        elif token.name == "BEGIN_P":
            declaring = False
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        word = raw[token.start : token.end + 1].decode()
        if (
            declaring
            and token.name == "IDENT"
            and word in schemas
            and following is not None
            and following.name == "ASCII_46"
        ):
            out += raw[last : token.start] + b"public"
            last = token.end + 1
    out += raw[last:]
    # one header line: body line N is line N + 1 of the source
    return (
        f"create function pgweave_check{signature} language plpgsql as $pgweave$\n"
        + out.decode()
        + "\n$pgweave$"
    )


def _query_line(body: str, query: str, statement_line: int) -> int:
    """The body line a statement's query starts on: it follows the statement's start
    (``return query`` may put it on the next line); where PL/pgSQL rewrote the text
    (``perform`` becomes ``select``), the statement's line."""
    lines = body.split("\n")
    start = sum(len(line) + 1 for line in lines[: statement_line - 1])
    head = query.strip().split("\n")[0]
    found = body.find(head, start) if head else -1
    return statement_line if found < 0 else body.count("\n", 0, found) + 1


def _plpgsql_facts(body: str, schemas: tuple[str, ...], signature: str, facts: BodyFacts) -> None:
    source = _plpgsql_source(body, schemas, signature)
    try:
        tree = json.loads(parser.parse_plpgsql_json(source))
    except parser.ParseError as exc:
        facts.errors.append((max(_error_line(source, exc) - 1, 1), str(exc.args[0])))
        return

    def visit(node: Json, lineno: int) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item, lineno)
            return
        if not isinstance(node, dict):
            return
        lineno = int(node.get("lineno", lineno))
        expr = node.get("PLpgSQL_expr")
        if expr is not None:
            query, mode = expr["query"], expr.get("parseMode", 0)
            body_line = _query_line(body, query, max(lineno - 1, 1))
            if mode == 0:
                _sql_facts(query, body_line, facts)
            elif mode == 2:
                _sql_facts(query, body_line, facts, "select ")
            else:  # an assignment "target := expression"
                match = _ASSIGNMENT.match(query)
                rest = query[match.end() :] if match else query
                _sql_facts(rest, body_line, facts, "select ")
            return
        for value in node.values():
            visit(value, lineno)

    visit(tree, 1)


def body_facts(body: str, language: str, schemas: tuple[str, ...], signature: str) -> BodyFacts:
    """Parse a function body (``sql`` or ``plpgsql``) and collect its facts.

    ``signature`` is ``(args) returns …`` with types PostgreSQL's parser can resolve
    without a catalog (PL/pgSQL needs it to know variables and the kind of result).
    """
    facts = BodyFacts()
    if language == "plpgsql":
        _plpgsql_facts(body, schemas, signature, facts)
    else:
        _sql_facts(body, 1, facts)
    return facts


@lru_cache(maxsize=1)
def pgmq_functions() -> frozenset[str]:
    """The functions pgmq's SQL (as shipped in the ``pgmq`` package) creates."""
    sql = resources.files("pgmq").joinpath("sql/pgmq.sql").read_text(encoding="utf-8")
    tree = json.loads(parser.parse_sql_json(sql))
    return frozenset(
        _names(node["funcname"])[-1] for kind, node in _walk(tree) if kind == "CreateFunctionStmt"
    )
