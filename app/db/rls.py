"""Row-level security DDL used by the migrations (autogenerate does not see policies)."""

from __future__ import annotations

from app.config import get_settings

# The setting is read in a scalar sub-select: PostgreSQL evaluates it once per statement
# (an InitPlan) rather than once per row, and can still use it as an index condition.
TENANT_PREDICATE = "tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid)"
# What migrations before c4a000000002 wrote (that one rewrites them to the above).
TENANT_PREDICATE_V1 = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def app_role() -> str:
    return get_settings().app_role


def tenant_table_ddl(table: str, privileges: str = "SELECT, INSERT, UPDATE, DELETE") -> list[str]:
    """Enable and force RLS on a tenant-owned table and grant the runtime role."""
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} "
        f"USING ({TENANT_PREDICATE}) WITH CHECK ({TENANT_PREDICATE})",
        f'GRANT {privileges} ON {table} TO "{app_role()}"',
    ]


def router_role() -> str:
    return get_settings().router_role


# Routing workers see the rows of the shards they name for the transaction
# (``app.router_shards``, comma separated); a tenant maps to shard (last byte % count).
SHARD_FUNCTIONS = (
    """CREATE OR REPLACE FUNCTION switchboard_shard_of(tenant uuid) RETURNS smallint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (get_byte(uuid_send(tenant), 15) % 64)::smallint $$""",
    """CREATE OR REPLACE FUNCTION switchboard_router_shards() RETURNS smallint[]
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT string_to_array(NULLIF(current_setting('app.router_shards', true), ''), ',')::smallint[]
$$""",
)
DROP_SHARD_FUNCTIONS = (
    "DROP FUNCTION IF EXISTS switchboard_shard_of(uuid)",
    "DROP FUNCTION IF EXISTS switchboard_router_shards()",
)


def router_table_ddl(table: str, privileges: str, *, by: str) -> list[str]:
    """Let the routing workers' role reach ``table`` for the shards it names.

    ``by="shard"``: the table has a ``shard`` column; ``by="tenant"``: the shard is
    computed from ``tenant_id`` (small configuration tables).
    """
    key = "shard" if by == "shard" else "switchboard_shard_of(tenant_id)"
    # The cast keeps the sub-select a scalar (an array), not ANY's row-set form.
    predicate = f"{key} = ANY ((SELECT switchboard_router_shards())::smallint[])"
    return [
        f'CREATE POLICY router_shards ON {table} TO "{router_role()}" '
        f"USING ({predicate}) WITH CHECK ({predicate})",
        f'GRANT {privileges} ON {table} TO "{router_role()}"',
    ]


def platform_table_ddl(table: str, privileges: str) -> list[str]:
    return [f'GRANT {privileges} ON {table} TO "{app_role()}"']


def append_only_ddl(table: str) -> list[str]:
    """Refuse UPDATE and DELETE for everyone, the owner included (ledgers, audit)."""
    return [
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION switchboard_refuse_change()",
    ]


REFUSE_CHANGE_FUNCTION = """
CREATE OR REPLACE FUNCTION switchboard_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
END $$;
"""
