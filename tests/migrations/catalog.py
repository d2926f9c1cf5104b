"""A comparable dump of what a schema holds, read from the system catalogs (migra-style).

Two databases hold the same schema when their dumps are equal: tables and their columns
(type, default, nullability, order), constraints (``pg_get_constraintdef``), indexes
(``pg_get_indexdef``), functions (``pg_get_functiondef``), composite types, triggers,
comments, privileges (ACLs exploded and sorted, NULL read as the owner's default) on the
schema, its objects and the external schemas the roles are granted, default privileges,
and the roles themselves.
"""

from __future__ import annotations

from typing import Any

import psycopg

ACL = """
  (select coalesce(array_agg(item order by item), '{{}}') from (
     select format('%%s:%%s%%s', coalesce(g.rolname, 'PUBLIC'), e.privilege_type,
                   case when e.is_grantable then '*' else '' end) as item
     from aclexplode({acl}) as e left join pg_catalog.pg_roles as g on g.oid = e.grantee
   ) as items)
"""


def _acl(expression: str) -> str:
    return ACL.format(acl=expression)


SCHEMA_ACL = _acl("coalesce(n.nspacl, acldefault('n', n.nspowner))")
TABLE_ACL = _acl("coalesce(c.relacl, acldefault('r', c.relowner))")
FUNCTION_ACL = _acl("coalesce(p.proacl, acldefault('f', p.proowner))")


def _frozen(value: Any) -> Any:
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def _rows(conn: psycopg.Connection, query: str, *params: Any) -> list[tuple[Any, ...]]:
    return [tuple(_frozen(v) for v in row) for row in conn.execute(query, params).fetchall()]


def dump_catalog(
    conn: psycopg.Connection, schema: str, roles: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Everything the schema holds, as sorted plain data (see the module docstring)."""
    ns = "(select oid from pg_catalog.pg_namespace where nspname = %s)"
    dump: dict[str, Any] = {}
    dump["schema"] = _rows(
        conn,
        f"select n.nspname, obj_description(n.oid, 'pg_namespace'),"
        f" {SCHEMA_ACL}"
        " from pg_catalog.pg_namespace as n where n.nspname = %s",
        schema,
    )
    dump["tables"] = _rows(
        conn,
        f"select c.relname, c.relkind, obj_description(c.oid, 'pg_class'),"
        f" {TABLE_ACL}"
        f" from pg_catalog.pg_class as c where c.relnamespace = {ns} and c.relkind in ('r', 'p', 'v')"
        " order by 1",
        schema,
    )
    dump["columns"] = _rows(
        conn,
        "select c.relname, c.relkind,"
        " row_number() over (partition by c.oid order by a.attnum), a.attname,"
        " format_type(a.atttypid, a.atttypmod), a.attnotnull,"
        " pg_get_expr(d.adbin, d.adrelid), col_description(c.oid, a.attnum)"
        " from pg_catalog.pg_attribute as a"
        " join pg_catalog.pg_class as c on c.oid = a.attrelid"
        " left join pg_catalog.pg_attrdef as d on d.adrelid = a.attrelid and d.adnum = a.attnum"
        f" where c.relnamespace = {ns} and c.relkind in ('r', 'p', 'v', 'c')"
        " and a.attnum > 0 and not a.attisdropped"
        " order by 1, 3",
        schema,
    )
    dump["constraints"] = _rows(
        conn,
        "select conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid),"
        f" convalidated from pg_catalog.pg_constraint where connamespace = {ns} order by 1, 2",
        schema,
    )
    dump["indexes"] = _rows(
        conn,
        "select c.relname, pg_get_indexdef(c.oid), obj_description(c.oid, 'pg_class')"
        f" from pg_catalog.pg_class as c where c.relnamespace = {ns} and c.relkind = 'i'"
        " order by 1",
        schema,
    )
    dump["functions"] = _rows(
        conn,
        "select p.oid::regprocedure::text, pg_get_functiondef(p.oid),"
        " obj_description(p.oid, 'pg_proc'),"
        f" {FUNCTION_ACL}"
        f" from pg_catalog.pg_proc as p where p.pronamespace = {ns} order by 1",
        schema,
    )
    dump["types"] = _rows(
        conn,
        "select t.typname, t.typtype, obj_description(t.oid, 'pg_type')"
        f" from pg_catalog.pg_type as t where t.typnamespace = {ns}"
        " and (t.typtype <> 'c' or exists (select 1 from pg_catalog.pg_class as c"
        "      where c.oid = t.typrelid and c.relkind = 'c'))"
        " and t.typname not like '\\_%%' order by 1",
        schema,
    )
    dump["triggers"] = _rows(
        conn,
        "select t.tgname, pg_get_triggerdef(t.oid) from pg_catalog.pg_trigger as t"
        " join pg_catalog.pg_class as c on c.oid = t.tgrelid"
        f" where c.relnamespace = {ns} and not t.tgisinternal order by 1",
        schema,
    )
    if roles:
        names = list(roles)
        dump["roles"] = _rows(
            conn,
            "select rolname, rolcanlogin, rolinherit, shobj_description(oid, 'pg_authid')"
            " from pg_catalog.pg_roles where rolname = any(%s) order by 1",
            names,
        )
        dump["external_grants"] = _rows(
            conn,
            "select kind, object, privilege from ("
            "  select 'schema' as kind, n.nspname::text as object, g.rolname || ':' ||"
            "    e.privilege_type as privilege"
            "  from pg_catalog.pg_namespace as n, aclexplode(n.nspacl) as e"
            "  join pg_catalog.pg_roles as g on g.oid = e.grantee"
            "  where g.rolname = any(%s) and n.nspname <> %s"
            "  union all"
            "  select 'relation', c.oid::regclass::text, g.rolname || ':' || e.privilege_type"
            "  from pg_catalog.pg_class as c, aclexplode(c.relacl) as e"
            "  join pg_catalog.pg_roles as g on g.oid = e.grantee"
            "  where g.rolname = any(%s) and c.relnamespace <> "
            f"  {ns}"
            "  union all"
            "  select 'function', p.oid::regprocedure::text, g.rolname || ':' || e.privilege_type"
            "  from pg_catalog.pg_proc as p, aclexplode(p.proacl) as e"
            "  join pg_catalog.pg_roles as g on g.oid = e.grantee"
            "  where g.rolname = any(%s) and p.pronamespace <> "
            f"  {ns}"
            ") as grants order by 1, 2, 3",
            names,
            schema,
            names,
            schema,
            names,
            schema,
        )
        dump["default_privileges"] = _rows(
            conn,
            "select n.nspname, d.defaclobjtype, g.rolname, e.privilege_type"
            " from pg_catalog.pg_default_acl as d"
            " left join pg_catalog.pg_namespace as n on n.oid = d.defaclnamespace,"
            " aclexplode(d.defaclacl) as e join pg_catalog.pg_roles as g on g.oid = e.grantee"
            " where g.rolname = any(%s) order by 1, 2, 3, 4",
            names,
        )
    return dump


def catalog_differences(left: dict[str, Any], right: dict[str, Any]) -> list[str]:
    """Readable differences between two dumps (empty when equal)."""
    problems: list[str] = []
    for section in sorted(set(left) | set(right)):
        a = set(left.get(section, []))
        b = set(right.get(section, []))
        problems.extend(f"{section}: only in upgraded: {row}" for row in sorted(a - b, key=str))
        problems.extend(f"{section}: only in fresh: {row}" for row in sorted(b - a, key=str))
    return problems
