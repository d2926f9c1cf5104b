"""Build the intermediate model from a validated spec, checking every cross-reference.

All problems are collected (not just the first) and raised together as a ``SpecError``
whose issues name the offending path and the file/line it came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from generator import spec_model as sm
from generator.diagnostics import Path_, SpecError, SpecIssue
from generator.ir import (
    ArgumentIR,
    AttributeIR,
    ColumnIR,
    CompositeTypeIR,
    ConstraintIR,
    ErrorIR,
    EventIR,
    ExternalGrantIR,
    FunctionIR,
    IndexIR,
    ReturnsIR,
    RoleIR,
    SchemaIR,
    StateIR,
    StateMachineIR,
    TableIR,
    TransitionIR,
)
from generator.loader import LoadedSpec, SourceMap, load_spec
from generator.sql_types import TypeRef, parse_type

BODY_DELIMITER = "$body$"


class _Builder:
    """Holds the spec and the issues found while building; one instance per build."""

    def __init__(self, loaded: LoadedSpec) -> None:
        self.spec = loaded.spec
        self.source: SourceMap = loaded.source
        self.root = loaded.root
        self.schema = self.spec.settings.schema_name
        self.issues: list[SpecIssue] = []
        self.table_names = set(self.spec.tables)
        self.composite_names = set(self.spec.types)

    # -- helpers -------------------------------------------------------------------------
    def error(self, path: Path_, message: str) -> None:
        self.issues.append(self.source.issue(path, message))

    def resolve_type(self, text: str, path: Path_, *, allow_rows: bool = True) -> TypeRef:
        stripped = text.strip()
        prefix = f"{self.schema}."
        if stripped.lower().startswith(prefix):
            stripped = stripped[len(prefix) :]
        ref = parse_type(stripped, self.table_names if allow_rows else set(), self.composite_names)
        if ref is None or (ref.name == "void" and path[-1] != "type"):
            self.error(path, f"unknown type '{text}'")
            return TypeRef("text", "base")
        return ref

    def known_columns(self, table: str, columns: Iterable[str], path: Path_) -> None:
        spec_table = self.spec.tables.get(table)
        if spec_table is None:
            return
        for index, column in enumerate(columns):
            if column not in spec_table.columns:
                self.error((*path, index), f"unknown column '{column}' in table '{table}'")

    # -- tables --------------------------------------------------------------------------
    def machine_for(self, table: str, column: str) -> tuple[str, sm.StateMachine] | None:
        for name, machine in self.spec.state_machines.items():
            if machine.table == table and machine.column == column:
                return name, machine
        return None

    def build_table(self, name: str, table: sm.Table) -> TableIR:
        path: Path_ = ("tables", name)
        columns: list[ColumnIR] = []
        constraints: list[ConstraintIR] = []
        for column_name, column in table.columns.items():
            column_path = (*path, "columns", column_name)
            ref = self.resolve_type(column.type, (*column_path, "type"), allow_rows=False)
            default = column.default
            governed = self.machine_for(name, column_name)
            machine_name = None
            if governed is not None:
                machine_name, machine = governed
                if default is not None:
                    self.error(
                        (*column_path, "default"),
                        f"status column default is derived from state machine '{machine_name}'"
                        f" (initial state '{machine.initial}'); remove it",
                    )
                default = f"'{machine.initial}'"
            columns.append(
                ColumnIR(
                    column_name,
                    ref,
                    column.nullable,
                    default,
                    column.doc,
                    machine_name,
                    column.renamed_from,
                )
            )
            if column.renamed_from is not None and column.renamed_from in table.columns:
                self.error(
                    (*column_path, "renamed_from"),
                    f"'{column.renamed_from}' is still a column of table '{name}'",
                )
            if column.check is not None:
                constraints.append(
                    ConstraintIR(
                        f"{name}_{column_name}_check",
                        "check",
                        f"check ({column.check})",
                        (column_name,),
                    )
                )
        if table.primary_key is not None:
            pk = table.primary_key
            self.known_columns(name, pk.columns, (*path, "primary_key", "columns"))
            constraints.insert(
                0,
                ConstraintIR(
                    pk.name or f"{name}_pkey",
                    "primary key",
                    f"primary key ({', '.join(pk.columns)})",
                    tuple(pk.columns),
                ),
            )
        for index, unique in enumerate(table.unique):
            self.known_columns(name, unique.columns, (*path, "unique", index, "columns"))
            constraints.append(
                ConstraintIR(
                    unique.name or f"{name}_{'_'.join(unique.columns)}_key",
                    "unique",
                    f"unique ({', '.join(unique.columns)})",
                    tuple(unique.columns),
                )
            )
        references: list[str] = []
        for index, fk in enumerate(table.foreign_keys):
            constraints.append(self.build_foreign_key(name, fk, (*path, "foreign_keys", index)))
            if fk.references != name and fk.references not in references:
                references.append(fk.references)
        for index, check in enumerate(table.checks):
            self.check_state_literals(
                name, check.expression, (*path, "checks", index, "expression")
            )
            constraints.append(
                ConstraintIR(
                    check.name,
                    "check",
                    f"check ({check.expression})",
                    self.columns_in(name, check.expression),
                    doc=check.doc,
                )
            )
        indexes: list[IndexIR] = []
        for index, spec_index in enumerate(table.indexes):
            index_path = (*path, "indexes", index)
            self.known_columns(name, spec_index.columns, (*index_path, "columns"))
            if spec_index.where is not None:
                self.check_state_literals(name, spec_index.where, (*index_path, "where"))
            indexes.append(
                IndexIR(
                    spec_index.name,
                    name,
                    tuple(spec_index.columns),
                    spec_index.unique,
                    spec_index.where,
                    spec_index.doc,
                )
            )
        if table.renamed_from is not None and table.renamed_from in self.spec.tables:
            self.error(
                (*path, "renamed_from"), f"'{table.renamed_from}' is still a table of the spec"
            )
        return TableIR(
            name,
            table.doc,
            tuple(columns),
            tuple(constraints),
            tuple(indexes),
            tuple(references),
            table.renamed_from,
        )

    def build_foreign_key(self, table: str, fk: sm.ForeignKey, path: Path_) -> ConstraintIR:
        self.known_columns(table, fk.columns, (*path, "columns"))
        target = self.spec.tables.get(fk.references)
        ref_columns = fk.ref_columns
        if target is None:
            self.error((*path, "references"), f"unknown table '{fk.references}'")
        else:
            if ref_columns is None:
                if target.primary_key is None:
                    self.error((*path, "references"), f"table '{fk.references}' has no primary key")
                else:
                    ref_columns = target.primary_key.columns
            else:
                self.known_columns(fk.references, ref_columns, (*path, "ref_columns"))
            if ref_columns is not None:
                keys = [list(u.columns) for u in target.unique]
                if target.primary_key is not None:
                    keys.append(list(target.primary_key.columns))
                if sorted(ref_columns) not in [sorted(key) for key in keys]:
                    self.error(
                        (*path, "ref_columns"),
                        f"columns ({', '.join(ref_columns)}) of '{fk.references}' are not a "
                        "primary or unique key",
                    )
                if len(ref_columns) != len(fk.columns):
                    self.error((*path, "ref_columns"), "column count differs from 'columns'")
        ref_columns = ref_columns or fk.columns
        definition = (
            f"foreign key ({', '.join(fk.columns)}) references {self.schema}.{fk.references} "
            f"({', '.join(ref_columns)})"
        )
        if fk.on_delete != "no action":
            definition += f" on delete {fk.on_delete}"
        if fk.on_update != "no action":
            definition += f" on update {fk.on_update}"
        return ConstraintIR(
            fk.name or f"{table}_{'_'.join(fk.columns)}_fkey",
            "foreign key",
            definition,
            tuple(fk.columns),
        )

    def columns_in(self, table: str, expression: str) -> tuple[str, ...]:
        words = set(re.findall(r"[a-z_][a-z0-9_]*", expression))
        return tuple(c for c in self.spec.tables[table].columns if c in words)

    def check_state_literals(self, table: str, expression: str, path: Path_) -> None:
        """Status literals in checks/partial indexes must be states of the governing machine."""
        for machine_name, machine in self.spec.state_machines.items():
            if machine.table != table:
                continue
            column = re.escape(machine.column)
            literals: list[str] = []
            for match in re.finditer(rf"\b{column}\s*(?:=|<>|!=)\s*'([^']*)'", expression):
                literals.append(match.group(1))
            for match in re.finditer(
                rf"\b{column}\s+(?:not\s+)?in\s*\(([^)]*)\)", expression, re.I
            ):
                literals.extend(re.findall(r"'([^']*)'", match.group(1)))
            for literal in literals:
                if literal not in machine.states:
                    self.error(
                        path, f"'{literal}' is not a state of state machine '{machine_name}'"
                    )

    # -- state machines ------------------------------------------------------------------
    def build_machine(
        self, name: str, machine: sm.StateMachine
    ) -> tuple[StateMachineIR, list[ConstraintIR]]:
        path: Path_ = ("state_machines", name)
        table = self.spec.tables.get(machine.table)
        if table is None:
            self.error((*path, "table"), f"unknown table '{machine.table}'")
        elif machine.column not in table.columns:
            self.error(
                (*path, "column"), f"unknown column '{machine.column}' in table '{machine.table}'"
            )
        else:
            column = table.columns[machine.column]
            if parse_type(column.type, set(), set()) != TypeRef("text", "base") or column.nullable:
                self.error(
                    (*path, "column"),
                    f"status column '{machine.table}.{machine.column}' must be 'text' and not nullable",
                )
        if machine.initial not in machine.states:
            self.error((*path, "initial"), f"unknown state '{machine.initial}'")
        for index, terminal in enumerate(machine.terminal):
            if terminal not in machine.states:
                self.error((*path, "terminal", index), f"unknown state '{terminal}'")
        for state_name, state in machine.states.items():
            state_path = (*path, "states", state_name)
            if (
                state.timestamp is not None
                and table is not None
                and state.timestamp not in table.columns
            ):
                self.error(
                    (*state_path, "timestamp"),
                    f"unknown column '{state.timestamp}' in table '{machine.table}'",
                )
            for index, other in enumerate(state.after):
                other_state = machine.states.get(other)
                if other_state is None:
                    self.error((*state_path, "after", index), f"unknown state '{other}'")
                elif state.timestamp is None or other_state.timestamp is None:
                    self.error((*state_path, "after", index), "both states need a timestamp column")
        transitions: list[TransitionIR] = []
        for index, transition in enumerate(machine.transitions):
            t_path = (*path, "transitions", index)
            for s_index, source in enumerate(transition.from_):
                if source not in machine.states:
                    self.error((*t_path, "from", s_index), f"unknown state '{source}'")
                elif source in machine.terminal:
                    self.error(
                        (*t_path, "from", s_index), f"terminal state '{source}' cannot be left"
                    )
            if transition.to not in machine.states:
                self.error((*t_path, "to"), f"unknown state '{transition.to}'")
            if not transition.from_ and transition.to != machine.initial:
                self.error(
                    (*t_path, "to"), f"rows are created in the initial state '{machine.initial}'"
                )
            for f_index, function in enumerate(transition.by):
                if function not in self.spec.functions:
                    self.error((*t_path, "by", f_index), f"unknown function '{function}'")
            transitions.append(
                TransitionIR(
                    tuple(transition.from_), transition.to, tuple(transition.by), transition.doc
                )
            )
        reachable = {machine.initial} | {t.to for t in machine.transitions}
        for state_name in machine.states:
            if state_name not in reachable:
                self.error(
                    (*path, "states", state_name), "state is never entered by any transition"
                )
        states = tuple(
            StateIR(
                state_name,
                state.doc,
                state.timestamp,
                state_name == machine.initial,
                state_name in machine.terminal,
            )
            for state_name, state in machine.states.items()
        )
        ir = StateMachineIR(
            name, machine.doc, machine.table, machine.column, states, tuple(transitions)
        )
        return ir, self.derived_checks(ir, machine)

    def derived_checks(self, ir: StateMachineIR, machine: sm.StateMachine) -> list[ConstraintIR]:
        origin = f"state machine {ir.name}"
        quoted = ", ".join(f"'{state.name}'" for state in ir.states)
        checks = [
            ConstraintIR(
                machine.check_name,
                "check",
                f"check ({ir.column} in ({quoted}))",
                (ir.column,),
                origin,
                f"{ir.column} is a state of state machine {ir.name}",
            )
        ]
        if machine.exclusive_timestamps_check is not None:
            stamps = list(
                dict.fromkeys(s.timestamp for s in ir.states if s.terminal and s.timestamp)
            )
            checks.append(
                ConstraintIR(
                    machine.exclusive_timestamps_check,
                    "check",
                    f"check (num_nonnulls({', '.join(stamps)}) <= 1)",
                    tuple(stamps),
                    origin,
                    "at most one terminal timestamp is set",
                )
            )
        for state_name, state in machine.states.items():
            for other in state.after:
                other_stamp = machine.states[other].timestamp if other in machine.states else None
                if state.timestamp is None or other_stamp is None:
                    continue
                checks.append(
                    ConstraintIR(
                        f"{state.timestamp}_is_after_{other_stamp}",
                        "check",
                        f"check ({state.timestamp} is null or {state.timestamp} >= {other_stamp})",
                        (state.timestamp, other_stamp),
                        origin,
                        f"a row enters '{state_name}' no earlier than '{other}'",
                    )
                )
        return checks

    # -- functions -----------------------------------------------------------------------
    def build_function(self, name: str, function: sm.Function) -> FunctionIR:
        path: Path_ = ("functions", name)
        args = tuple(
            ArgumentIR(
                arg_name,
                self.resolve_type(arg.type, (*path, "args", arg_name, "type")),
                arg.default,
                arg.doc,
            )
            for arg_name, arg in function.args.items()
        )
        seen_default = False
        for arg_name, arg in function.args.items():
            if arg.default is not None:
                seen_default = True
            elif seen_default:
                self.error(
                    (*path, "args", arg_name), "argument without default follows one with a default"
                )
        returns = function.returns
        table = None
        if returns.table is not None:
            table = tuple(
                AttributeIR(col, self.resolve_type(text, (*path, "returns", "table", col)))
                for col, text in returns.table.items()
            )
        result_type = None
        if returns.type is not None:
            result_type = self.resolve_type(returns.type, (*path, "returns", "type"))
        body_path = (self.root / function.body).resolve()
        body = ""
        try:
            body_path.relative_to(self.root.resolve())
            body = body_path.read_text(encoding="utf-8").strip("\n")
        except ValueError:
            self.error(
                (*path, "body"), f"body file '{function.body}' lies outside the spec directory"
            )
        except OSError:
            self.error((*path, "body"), f"body file '{function.body}' not found")
        if BODY_DELIMITER in body:
            self.error((*path, "body"), f"body must not contain the delimiter {BODY_DELIMITER}")
        for index, error in enumerate(function.raises):
            if error not in self.spec.errors:
                self.error((*path, "raises", index), f"unknown error '{error}'")
        for index, event in enumerate(function.emits):
            if event not in self.spec.events:
                self.error((*path, "emits", index), f"unknown event '{event}'")
        calls = tuple(
            other
            for other in self.spec.functions
            if other != name and re.search(rf"\b{self.schema}\.{re.escape(other)}\s*\(", body)
        )
        transitions = tuple(
            f"{machine_name}: {'|'.join(t.from_) or 'insert'} → {t.to}"
            for machine_name, machine in self.spec.state_machines.items()
            for t in machine.transitions
            if name in t.by
        )
        return FunctionIR(
            name=name,
            doc=function.doc,
            args=args,
            returns=ReturnsIR(result_type, returns.setof, table),
            language=function.language,
            volatility=function.volatility,
            parallel=function.parallel,
            security=function.security,
            search_path=function.search_path,
            strict=function.strict,
            body=body,
            body_file=function.body,
            internal=function.internal,
            raises=tuple(function.raises),
            emits=tuple(function.emits),
            calls=calls,
            transitions=transitions,
            client_variants=tuple(function.client_variants),
        )

    # -- roles ---------------------------------------------------------------------------
    def build_role(
        self,
        name: str,
        role: sm.Role,
        functions: dict[str, FunctionIR],
        tables: Sequence[TableIR],
    ) -> RoleIR:
        path: Path_ = ("roles", name)
        for index, function in enumerate(role.execute):
            if function not in self.spec.functions:
                self.error((*path, "execute", index), f"unknown function '{function}'")
            elif function in role.execute[:index]:
                self.error((*path, "execute", index), f"function '{function}' listed twice")
        for table in role.tables:
            if table not in self.spec.tables:
                self.error((*path, "tables", table), f"unknown table '{table}'")
        external = tuple(
            ExternalGrantIR(
                g.schema_name,
                g.usage,
                g.execute_all_functions,
                tuple(g.table_privileges_all),
                tuple(g.future_table_privileges),
            )
            for g in role.external
        )
        return RoleIR(
            name,
            role.doc,
            role.login,
            tuple(role.execute),
            tuple((table, tuple(privileges)) for table, privileges in role.tables.items()),
            external,
            self.implied_execute(role, functions, tables),
        )

    def implied_execute(
        self, role: sm.Role, functions: dict[str, FunctionIR], tables: Sequence[TableIR]
    ) -> tuple[tuple[str, str], ...]:
        """Functions a role must be able to execute for the ones it is granted to work.

        PostgreSQL checks EXECUTE as the current user: inside a security invoker function
        that is the caller, so each function it calls needs a grant too (transitively);
        inside a security definer function it is the owner, so the walk stops there.
        Check constraints run as the writing role, so the functions they call are needed
        by every role that may insert into or update their table.
        """
        implied: dict[str, str] = {}
        pending: list[str] = []

        def need(function: str, reason: str) -> None:
            if function in functions and function not in role.execute and function not in implied:
                implied[function] = reason
                pending.append(function)

        for table in tables:
            if not {"insert", "update"} & set(role.tables.get(table.name, [])):
                continue
            checks = " ".join(c.definition for c in table.constraints if c.kind == "check")
            for function in functions:
                if re.search(rf"\b{self.schema}\.{re.escape(function)}\s*\(", checks):
                    need(function, f"checks of {table.name}")
        pending.extend(f for f in role.execute if f in functions)
        while pending:
            caller = functions[pending.pop(0)]
            if caller.security == "invoker":
                for callee in caller.calls:
                    need(callee, f"called by {caller.name}")
        return tuple(implied.items())

    # -- whole schema --------------------------------------------------------------------
    def build(self) -> SchemaIR:
        spec = self.spec
        types = tuple(
            CompositeTypeIR(
                name,
                composite.doc,
                tuple(
                    AttributeIR(
                        attr,
                        self.resolve_type(
                            text, ("types", name, "attributes", attr), allow_rows=False
                        ),
                    )
                    for attr, text in composite.attributes.items()
                ),
            )
            for name, composite in spec.types.items()
        )
        for name in spec.types:
            if name in spec.tables:
                self.error(("types", name), f"name clashes with table '{name}'")
        derived: dict[str, list[ConstraintIR]] = {}
        machines: list[StateMachineIR] = []
        for name, machine in spec.state_machines.items():
            ir, checks = self.build_machine(name, machine)
            machines.append(ir)
            derived.setdefault(machine.table, []).extend(checks)
            if (
                sum(
                    1
                    for m in spec.state_machines.values()
                    if (m.table, m.column) == (machine.table, machine.column)
                )
                > 1
            ):
                self.error(
                    ("state_machines", name, "column"),
                    "column is governed by another state machine",
                )
        tables: list[TableIR] = []
        for name, table in spec.tables.items():
            built = self.build_table(name, table)
            tables.append(
                TableIR(
                    built.name,
                    built.doc,
                    built.columns,
                    built.constraints + tuple(derived.get(name, [])),
                    built.indexes,
                    built.references,
                    built.renamed_from,
                )
            )
        self.check_unique_names(tables)
        functions = {name: self.build_function(name, f) for name, f in spec.functions.items()}
        for name, error in spec.errors.items():
            if error.constraint is not None and not any(
                c.name == error.constraint for t in tables for c in t.constraints
            ):
                self.error(
                    ("errors", name, "constraint"), f"unknown constraint '{error.constraint}'"
                )
        roles = tuple(
            self.build_role(name, role, functions, tables) for name, role in spec.roles.items()
        )
        check_text = " ".join(c.definition for t in tables for c in t.constraints)
        check_names = [
            name
            for name in functions
            if re.search(rf"\b{self.schema}\.{re.escape(name)}\s*\(", check_text)
        ]
        check_functions = self.call_order([functions[n] for n in check_names])
        others = self.call_order([f for n, f in functions.items() if n not in check_names])
        ordered_tables = self.table_order(tables)
        if self.issues:
            raise SpecError(self.issues)
        return SchemaIR(
            schema=self.schema,
            min_postgres=spec.settings.min_postgres,
            queue_provider=spec.settings.queue.provider,
            queue_min_version=spec.settings.queue.min_version,
            install_command=spec.settings.install_command,
            types=types,
            check_functions=tuple(check_functions),
            tables=tuple(ordered_tables),
            functions=tuple(others),
            state_machines=tuple(machines),
            errors=tuple(
                ErrorIR(n, e.doc, e.sqlstate, e.message, e.constraint)
                for n, e in spec.errors.items()
            ),
            events=tuple(
                EventIR(n, e.doc, e.event, e.topic, tuple(e.payload))
                for n, e in spec.events.items()
            ),
            roles=roles,
        )

    def check_unique_names(self, tables: Sequence[TableIR]) -> None:
        """Constraint names are unique per table; index-backed names across the schema."""
        owners: dict[str, str] = {t.name: f"table '{t.name}'" for t in tables}
        owners.update({name: f"type '{name}'" for name in self.spec.types})
        for table in tables:
            spec_table = self.spec.tables[table.name]
            path: Path_ = ("tables", table.name)
            seen: set[str] = set()
            for constraint in table.constraints:
                if constraint.name in seen:
                    self.error(path, f"duplicate constraint name '{constraint.name}'")
                seen.add(constraint.name)
            named: list[tuple[str, Path_]] = []
            if spec_table.primary_key is not None:
                named.append((table.constraints[0].name, (*path, "primary_key")))
            unique_names = [c.name for c in table.constraints if c.kind == "unique"]
            named += [(n, (*path, "unique", i)) for i, n in enumerate(unique_names)]
            named += [
                (ix.name, (*path, "indexes", i, "name")) for i, ix in enumerate(table.indexes)
            ]
            for name, name_path in named:
                if name in owners:
                    self.error(name_path, f"index name '{name}' clashes with {owners[name]}")
                owners[name] = f"an index of table '{table.name}'"

    def table_order(self, tables: Sequence[TableIR]) -> list[TableIR]:
        """Tables ordered so that foreign keys point at tables created before them."""
        by_name = {t.name: t for t in tables}
        return [
            by_name[n]
            for n in self._topological(
                [t.name for t in tables],
                {t.name: [r for r in t.references if r in by_name] for t in tables},
                "tables",
                "foreign keys form a cycle",
            )
        ]

    def call_order(self, functions: Sequence[FunctionIR]) -> list[FunctionIR]:
        """Functions ordered callees first (SQL-language bodies are checked at creation)."""
        by_name = {f.name: f for f in functions}
        edges = {
            f.name: [c for c in f.calls if c in by_name] if f.language == "sql" else []
            for f in functions
        }
        return [
            by_name[n]
            for n in self._topological(
                list(by_name), edges, "functions", "SQL functions call each other in a cycle"
            )
        ]

    def _topological(
        self, names: list[str], edges: dict[str, list[str]], section: str, message: str
    ) -> list[str]:
        done: list[str] = []
        placed: set[str] = set()
        remaining = list(names)
        while remaining:
            ready = [n for n in remaining if all(d in placed for d in edges[n])]
            if not ready:
                self.error((section, remaining[0]), message)
                return done + remaining
            for name in ready:
                done.append(name)
                placed.add(name)
            remaining = [n for n in remaining if n not in placed]
        return done


def build_ir(loaded: LoadedSpec) -> SchemaIR:
    """Check cross-references and derive the intermediate model of a loaded spec."""
    return _Builder(loaded).build()


def load_ir(spec_file: Path) -> SchemaIR:
    """Load, validate and build in one step."""
    return build_ir(load_spec(spec_file))
