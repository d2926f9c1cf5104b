"""Build the intermediate model from a validated spec, checking every cross-reference.

All problems are collected (not just the first) and raised together as a ``SpecError``
whose issues name the offending path and the file/line it came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from pgweave_generator import spec_model as sm
from pgweave_generator.diagnostics import Path_, SpecError, SpecIssue, did_you_mean
from pgweave_generator.events import event_ir, helper_events, helper_functions
from pgweave_generator.ir import (
    ArgumentIR,
    AttributeIR,
    ColumnIR,
    CompositeTypeIR,
    ConstraintIR,
    ConstraintKind,
    ErrorIR,
    ExternalGrantIR,
    ForeignKeyAction,
    ForeignKeyIR,
    FunctionIR,
    ImpliedExecuteIR,
    IndexIR,
    Language,
    Parallel,
    ReturnsIR,
    RoleIR,
    SchemaIR,
    Security,
    StateCheckIR,
    StateIR,
    StateMachineIR,
    StateRule,
    TableIR,
    TransitionIR,
    Volatility,
)
from pgweave_generator.loader import LoadedSpec, SourceMap, load_spec
from pgweave_generator.sql_analysis import (
    BodyFacts,
    SqlSyntaxError,
    body_facts,
    called_functions,
    column_refs,
    compared_literals,
    parse_expression,
)
from pgweave_generator.sql_checks import (
    check_body_names,
    check_emits,
    check_expression,
    check_transitions,
)
from pgweave_generator.sql_types import ALIASES, BASE_TYPES, TypeRef, parse_type

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
        self.facts: dict[str, BodyFacts] = {}  # what each function body does, parsed
        self.helpers: dict[str, FunctionIR] = {}  # generated event helpers, by name
        self.body_offsets: dict[str, int] = {}  # blank lines before each body in its file
        self.constraint_paths: dict[str, list[Path_]] = {}  # per table, as its constraints

    def expression(self, text: str, path: Path_, table: str | None = None) -> None:
        """Parse an SQL fragment of the spec; in a table's context check its columns."""
        columns = (table, list(self.spec.tables[table].columns)) if table is not None else None
        check_expression(
            text,
            path,
            self.error,
            schema=self.schema,
            functions=self.spec.functions,
            table=columns,
        )

    def body_error(self, function: str, line: int, message: str) -> None:
        """A problem in a function body, reported at its file and line."""
        body = self.spec.functions[function].body
        self.issues.append(
            SpecIssue(
                ("functions", function, "body"),
                message,
                self.root / body,
                line + self.body_offsets.get(function, 0),
            )
        )

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
            known = [*BASE_TYPES, *ALIASES, *self.table_names, *self.composite_names]
            self.error(path, f"unknown type '{text}'" + did_you_mean(stripped.lower(), known))
            return TypeRef("text", "base")
        return ref

    def known_columns(self, table: str, columns: Iterable[str], path: Path_) -> None:
        spec_table = self.spec.tables.get(table)
        if spec_table is None:
            return
        for index, column in enumerate(columns):
            if column not in spec_table.columns:
                self.error(
                    (*path, index),
                    f"unknown column '{column}' in table '{table}'"
                    + did_you_mean(column, spec_table.columns),
                )

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
        paths: list[Path_] = []  # where each constraint is declared
        self.constraint_paths[name] = paths
        for column_name, column in table.columns.items():
            column_path = (*path, "columns", column_name)
            ref = self.resolve_type(column.type, (*column_path, "type"), allow_rows=False)
            default = column.default
            governed = self.machine_for(name, column_name)
            machine_name = initial = None
            if governed is not None:
                machine_name, machine = governed
                if default is not None:
                    self.error(
                        (*column_path, "default"),
                        f"status column default is derived from state machine '{machine_name}'"
                        f" (initial state '{machine.initial}'); remove it",
                    )
                default, initial = None, machine.initial
            elif default is not None:
                self.expression(default, (*column_path, "default"))
            columns.append(
                ColumnIR(
                    column_name,
                    ref,
                    column.nullable,
                    default,
                    column.doc,
                    machine_name,
                    column.renamed_from,
                    initial,
                )
            )
            if column.renamed_from is not None and column.renamed_from in table.columns:
                self.error(
                    (*column_path, "renamed_from"),
                    f"'{column.renamed_from}' is still a column of table '{name}'",
                )
            if column.check is not None:
                self.expression(column.check, (*column_path, "check"), name)
                paths.append((*column_path, "check"))
                constraints.append(
                    self.check_constraint(
                        f"{name}_{column_name}_check", column.check, (column_name,)
                    )
                )
        if table.primary_key is not None:
            pk = table.primary_key
            self.known_columns(name, pk.columns, (*path, "primary_key", "columns"))
            paths.insert(0, (*path, "primary_key"))
            constraints.insert(
                0,
                ConstraintIR(
                    pk.name or f"{name}_pkey", ConstraintKind.PRIMARY_KEY, tuple(pk.columns)
                ),
            )
        for index, unique in enumerate(table.unique):
            self.known_columns(name, unique.columns, (*path, "unique", index, "columns"))
            paths.append((*path, "unique", index))
            constraints.append(
                ConstraintIR(
                    unique.name or f"{name}_{'_'.join(unique.columns)}_key",
                    ConstraintKind.UNIQUE,
                    tuple(unique.columns),
                )
            )
        references: list[str] = []
        for index, fk in enumerate(table.foreign_keys):
            constraints.append(self.build_foreign_key(name, fk, (*path, "foreign_keys", index)))
            paths.append((*path, "foreign_keys", index))
            if fk.references != name and fk.references not in references:
                references.append(fk.references)
        for index, check in enumerate(table.checks):
            self.check_state_literals(
                name, check.expression, (*path, "checks", index, "expression")
            )
            self.expression(check.expression, (*path, "checks", index, "expression"), name)
            paths.append((*path, "checks", index, "name"))
            constraints.append(
                self.check_constraint(
                    check.name,
                    check.expression,
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
                self.expression(spec_index.where, (*index_path, "where"), name)
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
            self.error(
                (*path, "references"),
                f"unknown table '{fk.references}'" + did_you_mean(fk.references, self.spec.tables),
            )
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
        return ConstraintIR(
            fk.name or f"{table}_{'_'.join(fk.columns)}_fkey",
            ConstraintKind.FOREIGN_KEY,
            tuple(fk.columns),
            references=ForeignKeyIR(
                fk.references,
                tuple(ref_columns),
                ForeignKeyAction(fk.on_delete),
                ForeignKeyAction(fk.on_update),
            ),
        )

    def check_constraint(
        self,
        name: str,
        expression: str,
        columns: tuple[str, ...],
        doc: str | None = None,
    ) -> ConstraintIR:
        """A CHECK constraint of the spec with the schema's functions its expression calls."""
        called = self.called_in(expression)
        calls = tuple(f for f in self.spec.functions if f in called)
        return ConstraintIR(name, ConstraintKind.CHECK, columns, expression, calls=calls, doc=doc)

    def columns_in(self, table: str, expression: str) -> tuple[str, ...]:
        """The table's columns an expression names, in table order (none if unparsable)."""
        try:
            names = set(column_refs(parse_expression(expression)))
        except SqlSyntaxError:
            return ()
        return tuple(c for c in self.spec.tables[table].columns if c in names)

    def check_state_literals(self, table: str, expression: str, path: Path_) -> None:
        """Status literals in checks/partial indexes must be states of the governing machine."""
        for machine_name, machine in self.spec.state_machines.items():
            if machine.table != table:
                continue
            try:
                literals = compared_literals(parse_expression(expression), machine.column)
            except SqlSyntaxError:
                continue  # reported by the fragment's own check
            for literal in dict.fromkeys(literals):
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
            self.error(
                (*path, "table"),
                f"unknown table '{machine.table}'" + did_you_mean(machine.table, self.spec.tables),
            )
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
                    self.error(
                        (*t_path, "by", f_index),
                        f"unknown function '{function}'"
                        + did_you_mean(function, self.spec.functions),
                    )
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

    @staticmethod
    def derived_checks(ir: StateMachineIR, machine: sm.StateMachine) -> list[ConstraintIR]:
        """The checks a state machine implies, as data (render/sql.py spells them)."""

        def derived(
            name: str,
            rule: StateRule,
            columns: tuple[str, ...],
            doc: str,
            states: tuple[str, ...] = (),
        ) -> ConstraintIR:
            return ConstraintIR(
                name,
                ConstraintKind.CHECK,
                columns,
                origin=f"state machine {ir.name}",
                doc=doc,
                state_check=StateCheckIR(rule, states),
            )

        checks = [
            derived(
                machine.check_name,
                StateRule.IS_STATE,
                (ir.column,),
                f"{ir.column} is a state of state machine {ir.name}",
                tuple(state.name for state in ir.states),
            )
        ]
        if machine.exclusive_timestamps_check is not None:
            stamps = dict.fromkeys(s.timestamp for s in ir.states if s.terminal and s.timestamp)
            checks.append(
                derived(
                    machine.exclusive_timestamps_check,
                    StateRule.ONE_TERMINAL_TIMESTAMP,
                    tuple(stamps),
                    "at most one terminal timestamp is set",
                )
            )
        for state_name, state in machine.states.items():
            for other in state.after:
                other_stamp = machine.states[other].timestamp if other in machine.states else None
                if state.timestamp is None or other_stamp is None:
                    continue
                checks.append(
                    derived(
                        f"{state.timestamp}_is_after_{other_stamp}",
                        StateRule.TIMESTAMP_ORDER,
                        (state.timestamp, other_stamp),
                        f"a row enters '{state_name}' no earlier than '{other}'",
                    )
                )
        return checks

    # -- functions -----------------------------------------------------------------------
    @property
    def queue(self) -> str | None:
        """The queue's schema (``pgmq``), None when the spec declares no queue."""
        queue = self.spec.settings.queue
        return None if queue is None else queue.provider

    @property
    def qualifiers(self) -> tuple[str, ...]:
        """Schemas whose names qualify types in bodies: the spec's and the queue's."""
        return (self.schema,) if self.queue is None else (self.schema, self.queue)

    @staticmethod
    def signature(args: tuple[ArgumentIR, ...], returns: ReturnsIR) -> str:
        """``(args) returns …`` spelled for parsing without a catalog (see body_facts)."""
        arguments = ", ".join(f"{a.name} {a.type.sql('public')}" for a in args)
        if returns.table is not None:
            columns = ", ".join(f"{a.name} {a.type.sql('public')}" for a in returns.table)
            return f"({arguments}) returns table ({columns})"
        result = "void" if returns.type is None else returns.type.sql("public")
        return f"({arguments}) returns {'setof ' if returns.setof else ''}{result}"

    def called_in(self, expression: str) -> set[str]:
        """The schema's functions an SQL expression calls (an unparsable one calls none)."""
        try:
            tree = parse_expression(expression)
        except SqlSyntaxError:
            return set()
        return {name for schema, name in called_functions(tree) if schema == self.schema}

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
            if not function.internal and not (arg.doc or "").strip():
                self.error(
                    (*path, "args", arg_name),
                    "undocumented argument of a public function: give it a 'doc'"
                    " (the client's docstrings and the reference docs show it)",
                )
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
        shape = None
        if returns.json_object is not None:
            shape = tuple(
                AttributeIR(key, self.resolve_type(text, (*path, "returns", "json_object", key)))
                for key, text in returns.json_object.items()
            )
        returns_ir = ReturnsIR(result_type, returns.setof, table, shape)
        body_path = (self.root / function.body).resolve()
        body = ""
        try:
            body_path.relative_to(self.root.resolve())
            raw = body_path.read_text(encoding="utf-8")
            body = raw.strip("\n")
            self.body_offsets[name] = len(raw) - len(raw.lstrip("\n"))
            if not body.strip():
                self.error((*path, "body"), f"body file '{function.body}' is empty")
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
                self.error(
                    (*path, "raises", index),
                    f"unknown error '{error}'" + did_you_mean(error, self.spec.errors),
                )
        for index, event in enumerate(function.emits):
            if event not in self.spec.events:
                self.error(
                    (*path, "emits", index),
                    f"unknown event '{event}'" + did_you_mean(event, self.spec.events),
                )
        facts = body_facts(
            body, function.language, self.qualifiers, self.signature(args, returns_ir)
        )
        if body.strip():
            self.facts[name] = facts
            check_body_names(name, facts, self.spec, self.body_error, self.queue, self.helpers)
        for arg_name, arg in function.args.items():
            if arg.default is not None:
                self.expression(arg.default, (*path, "args", arg_name, "default"))
        called = {c.name for c in facts.calls if c.schema == self.schema}
        known = [*self.spec.functions, *self.helpers]
        calls = tuple(other for other in known if other != name and other in called)
        return FunctionIR(
            name=name,
            doc=function.doc,
            args=args,
            returns=returns_ir,
            language=Language(function.language),
            volatility=Volatility(function.volatility),
            parallel=Parallel(function.parallel),
            security=Security(function.security),
            search_path=function.search_path,
            strict=function.strict,
            body=body,
            body_file=function.body,
            internal=function.internal,
            raises=tuple(function.raises),
            emits=tuple(function.emits),
            calls=calls,
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
                self.error(
                    (*path, "execute", index),
                    f"unknown function '{function}'" + did_you_mean(function, self.spec.functions),
                )
            elif function in role.execute[:index]:
                self.error((*path, "execute", index), f"function '{function}' listed twice")
            elif self.is_internal(function):
                self.error(
                    (*path, "execute", index),
                    f"function '{function}' is internal: no role may be granted it",
                )
        for table in role.tables:
            if table not in self.spec.tables:
                self.error(
                    (*path, "tables", table),
                    f"unknown table '{table}'" + did_you_mean(table, self.spec.tables),
                )
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
            self.implied_execute(path, role, functions, tables),
        )

    def is_internal(self, function: str) -> bool:
        """Engine-internal: marked ``internal`` or named with a leading underscore."""
        return self.spec.functions[function].internal or function.startswith("_")

    def implied_execute(
        self,
        path: Path_,
        role: sm.Role,
        functions: dict[str, FunctionIR],
        tables: Sequence[TableIR],
    ) -> tuple[ImpliedExecuteIR, ...]:
        """Functions a role must be able to execute for the ones it is granted to work.

        PostgreSQL checks EXECUTE as the current user: inside a security invoker function
        that is the caller, so each function it calls needs a grant too (transitively);
        inside a security definer function it is the owner, so the walk stops there.
        Check constraints run as the writing role, so the functions they call are needed
        by every role that may insert into or update their table. An internal function
        needed that way is an error at the grant that needs it.
        """
        implied: dict[str, ImpliedExecuteIR] = {}
        # each function still to walk, with the grant (spec path and fix) it is needed for
        pending: list[tuple[str, Path_, str]] = []

        def need(why: ImpliedExecuteIR, reason: str, grant: Path_, fix: str) -> None:
            function = why.function
            if function not in functions or function in role.execute or function in implied:
                return
            if self.is_internal(function):
                self.error(grant, f"needs internal function '{function}' ({reason}): {fix}")
            implied[function] = why
            pending.append((function, grant, fix))

        for table in tables:
            if not {"insert", "update"} & set(role.tables.get(table.name, [])):
                continue
            grant = (*path, "tables", table.name)
            for constraint in table.constraints:
                for function in constraint.calls:
                    why = ImpliedExecuteIR(function, checks_of=table.name)
                    need(why, f"checks of {table.name}", grant, "grant no writes")
        pending.extend(
            (f, (*path, "execute", i), f"make '{f}' security definer")
            for i, f in enumerate(role.execute)
            if f in functions
        )
        while pending:
            name, grant, fix = pending.pop(0)
            caller = functions[name]
            if caller.security is Security.INVOKER:
                for callee in caller.calls:
                    why = ImpliedExecuteIR(callee, called_by=caller.name)
                    need(why, f"called by {caller.name}", grant, fix)
        return tuple(implied.values())

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
        derived_paths: dict[str, list[Path_]] = {}
        machines: list[StateMachineIR] = []
        for name, machine in spec.state_machines.items():
            ir, checks = self.build_machine(name, machine)
            machines.append(ir)
            derived.setdefault(machine.table, []).extend(checks)
            derived_paths.setdefault(machine.table, []).extend(
                ("state_machines", name) for _ in checks
            )
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
            self.constraint_paths[name].extend(derived_paths.get(name, []))
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
        self.helpers = helper_functions(spec, self.resolve_type, self.error)
        for name in spec.functions:
            if name in self.helpers:
                self.error(("functions", name), "name clashes with a generated event helper")
        functions = {name: self.build_function(name, f) for name, f in spec.functions.items()}
        functions.update(self.helpers)
        check_transitions(spec, self.facts, self.error, self.body_error)
        check_emits(spec, self.facts, helper_events(spec), self.error, self.body_error)
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
        used_by_checks = {f for t in tables for c in t.constraints for f in c.calls}
        check_names = [name for name in functions if name in used_by_checks]
        check_functions = self.call_order([functions[n] for n in check_names])
        others = self.call_order([f for n, f in functions.items() if n not in check_names])
        ordered_tables = self.table_order(tables)
        if self.issues:
            raise SpecError(self.issues)
        return SchemaIR(
            schema=self.schema,
            min_postgres=spec.settings.min_postgres,
            queue_provider=self.queue,
            queue_min_version=None
            if spec.settings.queue is None
            else spec.settings.queue.min_version,
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
            events=tuple(event_ir(n, e) for n, e in spec.events.items()),
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
            declared = self.constraint_paths.get(table.name, [])
            for index, constraint in enumerate(table.constraints):
                if constraint.name in seen:
                    where = declared[index] if index < len(declared) else path
                    self.error(where, f"duplicate constraint name '{constraint.name}'")
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
            f.name: [c for c in f.calls if c in by_name] if f.language is Language.SQL else []
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
