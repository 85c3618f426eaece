# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The target-side ledger that makes every table copy happen exactly once.

A row in ``<ledger_schema>.copy_ledger`` is written in the same transaction as the copied
data, so it exists if and only if the data was committed. Before copying, a runner takes a
transaction-scoped advisory lock for the table and reads the ledger: a crash between the
target commit and the manifest update, or a second runner on the same (or a copied)
manifest, therefore never copies a table twice. The SQLite manifest is only a cache of it.
On Citus the ledger is a plain local table on the coordinator, which may share a
transaction with a COPY into a distributed table.

A large table may be copied in parts (key ranges, or ctid block ranges read under one
shared source snapshot). Its split plan is stored in
``<ledger_schema>.copy_split_plan`` before any part is copied, under the same advisory lock
as the whole-table copy: the first planner wins, every later run reuses its plan, and a
table is either copied whole (ledger part '') or in parts, never both.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - modules report the missing library
    sql = None

from ansible_collections.icds.citus_migration.plugins.module_utils.common import defaults
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError

DEFAULT_LEDGER_SCHEMA = defaults.LEDGER_SCHEMA
# First key of the two-key advisory locks; the second is hashtext() of the ledger key.
LOCK_NAMESPACE = 0x1CD5C175 & 0x7FFFFFFF
_SETUP_LOCK = 0


@dataclass(frozen=True)
class LedgerEntry:
    rows_copied: Optional[int]
    bytes_copied: Optional[int]
    copied_at: str
    runner: Optional[str]


def _table(schema: str) -> 'sql.Composed':
    return sql.SQL('{}.{}').format(sql.Identifier(schema), sql.Identifier('copy_ledger'))


def _plan_table(schema: str) -> 'sql.Composed':
    return sql.SQL('{}.{}').format(sql.Identifier(schema), sql.Identifier('copy_split_plan'))


def ensure_ledger(conn, schema: str = DEFAULT_LEDGER_SCHEMA) -> bool:
    """Create the ledger schema and tables if missing (serialised by an advisory lock).

    Returns True when something was created. Commits. A refusal (no CREATE on the
    database, say) becomes a MigrationError saying what to grant.
    """
    try:
        return _ensure_ledger(conn, schema)
    except Exception as exc:
        if getattr(exc, 'pgcode', None) is None:
            raise
        try:
            conn.rollback()
        except Exception:
            pass
        diag = getattr(exc, 'diag', None)
        message = (getattr(diag, 'message_primary', None) if diag else None) or str(exc).strip()
        hint = ''
        if exc.pgcode == '42501':
            hint = (': grant CREATE on the database to the copying role, or create the schema '
                    'beforehand owned by it')
        raise MigrationError('cannot create the ledger schema "%s" on the target: %s%s'
                             % (schema, message, hint))


def _ensure_ledger(conn, schema: str) -> bool:
    with conn.cursor() as cur:
        if ledger_exists(cur, schema) and split_plan_table_exists(cur, schema) \
                and _has_snapshot_column(cur, schema) and _has_column(cur, _table(schema), 'source_xmin'):
            conn.commit()
            return False
        cur.execute('SELECT pg_advisory_xact_lock(%s, %s)', (LOCK_NAMESPACE, _SETUP_LOCK))
        cur.execute(sql.SQL('CREATE SCHEMA IF NOT EXISTS {}').format(sql.Identifier(schema)))
        cur.execute(sql.SQL("""
            CREATE TABLE IF NOT EXISTS {} (
                source_id text NOT NULL,
                source_table text NOT NULL,
                part text NOT NULL DEFAULT '',
                target_table text NOT NULL,
                rows_copied bigint,
                bytes_copied bigint,
                copied_at timestamptz NOT NULL DEFAULT now(),
                runner text,
                PRIMARY KEY (source_id, source_table, part)
            )""").format(_table(schema)))
        cur.execute(sql.SQL("""
            CREATE TABLE IF NOT EXISTS {} (
                source_id text NOT NULL,
                source_table text NOT NULL,
                parts text[] NOT NULL,
                planned_at timestamptz NOT NULL DEFAULT now(),
                runner text,
                PRIMARY KEY (source_id, source_table)
            )""").format(_plan_table(schema)))
        # the source snapshot every ctid part of the table is read under (NULL for key
        # ranges); added in place to a plan table made by an earlier version
        cur.execute(sql.SQL('ALTER TABLE {} ADD COLUMN IF NOT EXISTS snapshot text')
                    .format(_plan_table(schema)))
        # the xmin of the source snapshot a copy read (64-bit, txid_snapshot_xmin): every
        # source row older than it was copied; see validate.changed_rows
        cur.execute(sql.SQL('ALTER TABLE {} ADD COLUMN IF NOT EXISTS source_xmin bigint')
                    .format(_table(schema)))
    conn.commit()
    return True


def _has_snapshot_column(cur, schema: str) -> bool:
    return _has_column(cur, _plan_table(schema), 'snapshot')


def has_source_xmin(cur, schema: str = DEFAULT_LEDGER_SCHEMA) -> bool:
    """Does the ledger record copy snapshots (made or upgraded by this version)?"""
    return _has_column(cur, _table(schema), 'source_xmin')


def _has_column(cur, table, column: str) -> bool:
    cur.execute("SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass(%s) "
                "AND attname = %s AND NOT attisdropped", (table.as_string(cur), column))
    return cur.fetchone() is not None


def split_plan_table_exists(cur, schema: str = DEFAULT_LEDGER_SCHEMA) -> bool:
    cur.execute('SELECT to_regclass(%s)', (_plan_table(schema).as_string(cur),))
    return cur.fetchone()[0] is not None


def ledger_exists(cur, schema: str = DEFAULT_LEDGER_SCHEMA) -> bool:
    cur.execute('SELECT to_regclass(%s)', (sql.SQL('{}.{}').format(
        sql.Identifier(schema), sql.Identifier('copy_ledger')).as_string(cur),))
    return cur.fetchone()[0] is not None


def lock_key(source_id: str, source_table: str, part: str = '') -> str:
    return '%s\x1f%s\x1f%s' % (source_id, source_table, part)


def lock(cur, source_id: str, source_table: str, part: str = '') -> None:
    """Transaction-scoped advisory lock for one table (or part), waiting for it."""
    cur.execute('SELECT pg_advisory_xact_lock(%s, hashtext(%s))',
                (LOCK_NAMESPACE, lock_key(source_id, source_table, part)))
    cur.fetchone()


def try_lock(cur, source_id: str, source_table: str, part: str = '') -> bool:
    """Transaction-scoped advisory lock for one table (or part); False if another runner
    holds it."""
    cur.execute('SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))',
                (LOCK_NAMESPACE, lock_key(source_id, source_table, part)))
    return bool(cur.fetchone()[0])


# The lock a runner holds (session-level, on a connection of its own) for as long as the
# source snapshot shared by a table's ctid parts lives: a free lock means nobody can still
# import that snapshot. Not a part name: parts are '' or start with 'ctid:' or 'key:'.
SNAPSHOT_HOLDER = 'snapshot-holder'


def try_hold_snapshot(cur, source_id: str, source_table: str) -> bool:
    """Session-level lock saying "this connection's runner keeps the table's snapshot"."""
    cur.execute('SELECT pg_try_advisory_lock(%s, hashtext(%s))',
                (LOCK_NAMESPACE, lock_key(source_id, source_table, SNAPSHOT_HOLDER)))
    return bool(cur.fetchone()[0])


def lookup(cur, schema: str, source_id: str, source_table: str,
           part: str = '') -> Optional[LedgerEntry]:
    cur.execute(sql.SQL('SELECT rows_copied, bytes_copied, copied_at::text, runner FROM {} '
                        'WHERE source_id = %s AND source_table = %s AND part = %s')
                .format(_table(schema)), (source_id, source_table, part))
    rec = cur.fetchone()
    return LedgerEntry(*rec) if rec else None


def record(cur, schema: str, source_id: str, source_table: str, target_table: str,
           rows: int, nbytes: int, runner: str, part: str = '',
           source_xmin: Optional[int] = None) -> None:
    cur.execute(sql.SQL('INSERT INTO {} (source_id, source_table, part, target_table, '
                        'rows_copied, bytes_copied, runner, source_xmin) '
                        'VALUES (%s, %s, %s, %s, %s, %s, %s, %s)').format(_table(schema)),
                (source_id, source_table, part, target_table, rows, nbytes, runner, source_xmin))


def advance_source_xmin(cur, schema: str, source_id: str, horizons: Dict[str, int]) -> None:
    """Move the tables' recorded source xmin forward (never back) after a catch-up left
    them equal to the source as of these snapshot xmins."""
    tables = sorted(horizons)
    cur.execute(sql.SQL('UPDATE {} AS l SET source_xmin = GREATEST(l.source_xmin, h.xmin) '
                        'FROM unnest(%s::text[], %s::int8[]) AS h(source_table, xmin) '
                        'WHERE l.source_id = %s AND l.source_table = h.source_table').format(_table(schema)),
                (tables, [horizons[t] for t in tables], source_id))


def source_xmins(cur, schema: str, source_id: str, source_tables: Sequence[str]) -> Dict[str, int]:
    """Per table, the oldest source snapshot xmin its copies read (every part's); absent
    when a part was copied by a version that did not record it."""
    cur.execute(sql.SQL('SELECT source_table, min(source_xmin) FROM {} WHERE source_id = %s '
                        'AND source_table = ANY(%s) GROUP BY 1 HAVING bool_and(source_xmin IS NOT NULL)')
                .format(_table(schema)), (source_id, list(source_tables)))
    return {t: int(x) for t, x in cur.fetchall()}


def split_plan(cur, schema: str, source_id: str, source_table: str) -> Optional[List[str]]:
    """The stored parts of a table copied in parts, or None when it has no split plan."""
    cur.execute(sql.SQL('SELECT parts FROM {} WHERE source_id = %s AND source_table = %s')
                .format(_plan_table(schema)), (source_id, source_table))
    rec = cur.fetchone()
    return list(rec[0]) if rec else None


def split_plans(cur, schema: str, source_id: str,
                source_tables: Sequence[str]) -> Dict[str, List[str]]:
    """Stored split plans of many tables in one query (absent: no plan)."""
    cur.execute(sql.SQL('SELECT source_table, parts FROM {} WHERE source_id = %s '
                        'AND source_table = ANY(%s)').format(_plan_table(schema)),
                (source_id, list(source_tables)))
    return {t: list(p) for t, p in cur.fetchall()}


def record_split_plan(cur, schema: str, source_id: str, source_table: str,
                      parts: Sequence[str], runner: str, snapshot: Optional[str] = None) -> None:
    """Store a split plan. The caller holds the table's lock (``lock`` part '')."""
    cur.execute(sql.SQL('INSERT INTO {} (source_id, source_table, parts, runner, snapshot) '
                        'VALUES (%s, %s, %s, %s, %s)').format(_plan_table(schema)),
                (source_id, source_table, list(parts), runner, snapshot))


def plan_snapshot(cur, schema: str, source_id: str, source_table: str,
                  for_share: bool = False) -> Tuple[bool, Optional[str]]:
    """(the table has a split plan, the snapshot its ctid parts are read under). With
    ``for_share`` the plan row stays locked until the transaction ends: a restart of the
    table (which updates it) waits for the part copies that read it."""
    cur.execute(sql.SQL('SELECT snapshot FROM {} WHERE source_id = %s AND source_table = %s{}')
                .format(_plan_table(schema), sql.SQL(' FOR SHARE' if for_share else '')),
                (source_id, source_table))
    rec = cur.fetchone()
    return (True, rec[0]) if rec else (False, None)


def set_plan_snapshot(cur, schema: str, source_id: str, source_table: str,
                      snapshot: Optional[str], runner: str) -> None:
    cur.execute(sql.SQL('UPDATE {} SET snapshot = %s, runner = %s, planned_at = now() '
                        'WHERE source_id = %s AND source_table = %s').format(_plan_table(schema)),
                (snapshot, runner, source_id, source_table))


def done_parts(cur, schema: str, source_id: str, source_table: str) -> Dict[str, LedgerEntry]:
    """Every ledger row of one table: part -> entry."""
    cur.execute(sql.SQL('SELECT part, rows_copied, bytes_copied, copied_at::text, runner FROM {} '
                        'WHERE source_id = %s AND source_table = %s').format(_table(schema)),
                (source_id, source_table))
    return {part: LedgerEntry(*rest) for part, *rest in cur.fetchall()}


def done_counts(cur, schema: str, source_id: str,
                source_tables: Sequence[str]) -> Dict[str, int]:
    """Ledger rows per table (parts copied), for many tables in one query."""
    cur.execute(sql.SQL('SELECT source_table, count(*) FROM {} WHERE source_id = %s '
                        'AND source_table = ANY(%s) GROUP BY 1').format(_table(schema)),
                (source_id, list(source_tables)))
    return {t: int(n) for t, n in cur.fetchall()}


def forget_parts(cur, schema: str, source_id: str, source_table: str) -> None:
    """Remove the ledger rows of a table's parts, keeping its split plan (a restart)."""
    cur.execute(sql.SQL('DELETE FROM {} WHERE source_id = %s AND source_table = %s')
                .format(_table(schema)), (source_id, source_table))


def forget_table(cur, schema: str, source_id: str, source_table: str) -> None:
    """Remove every ledger row (all parts) and the split plan of a table, before a re-copy."""
    cur.execute(sql.SQL('DELETE FROM {} WHERE source_id = %s AND source_table = %s')
                .format(_table(schema)), (source_id, source_table))
    cur.execute(sql.SQL('DELETE FROM {} WHERE source_id = %s AND source_table = %s')
                .format(_plan_table(schema)), (source_id, source_table))
