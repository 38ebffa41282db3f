"""Row-level security DDL used by the migrations (autogenerate does not see policies)."""

from __future__ import annotations

from app.config import get_settings

TENANT_PREDICATE = "tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid"


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
