"""The SQL that ``backup restore`` sends around pg_restore's script, inside its one transaction:
checks before it (server version, an empty target) and the row counts after it.

The outcome comes back on psql's output and stderr as ``dbcli:`` markers, which the pg_restore module reads.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql

# the objects whose presence makes a database "not empty" for a restore without --drop
_NOT_EMPTY = """
    SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
      AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      -- an extension's own tables and views (citus puts citus_tables in public) are not the user's
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
    LIMIT 1"""


def target_has_tables(conn: psycopg.Connection) -> bool:
    return conn.execute(_NOT_EMPTY).fetchone() is not None


def opening_sql(tools_major: int, *, check_empty: bool) -> bytes:
    """``BEGIN``, then refuse a server newer than pg_restore and (``check_empty``) a target that is not empty."""
    # pg_restore's own BEGIN, which follows, only draws a warning inside this transaction
    return sql.SQL("""
BEGIN;
SELECT 'dbcli:target:' || current_database();
DO $dbcli$
BEGIN
  IF current_setting('server_version_num')::int / 10000 > {major} THEN
    RAISE EXCEPTION 'dbcli:server-newer:%', current_setting('server_version_num');
  END IF;
  IF {check_empty} AND EXISTS ({not_empty}) THEN
    RAISE EXCEPTION 'dbcli:not-empty';
  END IF;
END
$dbcli$;
""").format(major=sql.Literal(tools_major), check_empty=sql.Literal(check_empty),
            not_empty=sql.SQL(_NOT_EMPTY)).as_string(None).encode()


def closing_sql(tables: list[dict[str, Any]], own_rows: bool) -> bytes:
    """Count the restored rows as the manifest counted them: with ``own_rows``, each plain table's
    own rows (partitioned tables are their partitions' sum: not counted again); before that, every
    table with its inheritance children and partitions."""
    if own_rows:
        tables = [t for t in tables if t["kind"] == "r"]
    # the script has set the dump's encoding; from here on the client speaks UTF-8 both ways (and
    # the names go as text, not \u escapes, which a non-UTF-8 server before PostgreSQL 13 rejects)
    expected = json.dumps([{"schema": t["schema"], "table": t["table"], "expected": t["rows"]} for t in tables],
                          ensure_ascii=False)
    return sql.SQL("""
SET client_encoding = 'UTF8';
CREATE TEMPORARY TABLE dbcli_restore_counts ON COMMIT DROP AS
  SELECT x.schema, x."table", x.expected, NULL::bigint AS actual
  FROM json_to_recordset({expected}::json) AS x(schema text, "table" text, expected bigint);
DO $dbcli$
DECLARE
  t record;
  n bigint;
BEGIN
  FOR t IN SELECT schema, "table" FROM pg_temp.dbcli_restore_counts LOOP
    IF to_regclass(format('%I.%I', t.schema, t."table")) IS NOT NULL THEN
      EXECUTE format({count}, t.schema, t."table") INTO n;
      UPDATE pg_temp.dbcli_restore_counts SET actual = n WHERE schema = t.schema AND "table" = t."table";
    END IF;
  END LOOP;
END
$dbcli$;
SELECT 'dbcli:counts:' || coalesce(jsonb_agg(c ORDER BY c.schema, c."table"), '[]')::text
  FROM pg_temp.dbcli_restore_counts c;
DO $dbcli$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_temp.dbcli_restore_counts WHERE actual IS DISTINCT FROM expected) THEN
    RAISE EXCEPTION 'dbcli:count-mismatch';
  END IF;
END
$dbcli$;
COMMIT;
""").format(expected=sql.Literal(expected),
            count=sql.Literal("SELECT count(*) FROM ONLY %I.%I" if own_rows else "SELECT count(*) FROM %I.%I"),
            ).as_string(None).encode()
