# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation after the copy: does the target hold what the source holds, and is new data
arriving on both sides (runbook post-migration step 2).

How a manifest row is compared (``plan_comparisons``):

- ``table``: the row maps a table to a table (plain tables, keep-child parents and
  children): ``FROM ONLY`` source vs ``FROM ONLY`` target (no ``ONLY`` for a declaratively
  partitioned target fed by a plain source table: its partitions hold the rows).
- ``slice``: a drop-child child was copied INTO its parent, so on the target it is the rows
  of the parent matching the conjunction of the child's own validated CHECK constraints
  (read from the source catalog: the expressions name columns only; for a partition, its
  partition constraint too). The parent's own rows
  (``FROM ONLY parent`` on the source) are compared with the target parent's rows that match
  NONE of its children's predicates.
- ``group``: when a family cannot be sliced (a child without a CHECK of its own, or two
  children with the same CHECK), the parent and all its drop-child children of the manifest
  are summed on the source and compared once with the target parent's total.

A slice is the rows for which the CHECK is TRUE; a source child row for which it is NULL
(e.g. a NULL ``month``) satisfies the CHECK but lands outside every slice on the target, so
it shows as drift of that child and of the parent. Overlapping (but not identical) CHECKs of
siblings are not detected.

Checksums are order independent and additive: the sum, as numeric, of the first 64 bits of
``md5(ROW(common columns)::text)`` of every row. Unlike ``md5(string_agg(... ORDER BY ...))``
it needs no sort, no 1 GB string and Citus pushes it down to the shards; being a sum, a
group's checksum is the sum of its members'. Text output is made identical on both sides
(TimeZone UTC, ISO dates, hex bytea, shortest exact floats; on Citus propagated to the
workers with ``SET LOCAL``); columns of different types on the two sides (json vs jsonb,
numeric scales) can still print differently and then differ in checksum only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover - the module reports the missing library
    psycopg2 = None
    sql = None

from ansible_collections.icds.citus_migration.plugins.module_utils.copy.columns import (
    read_columns_many)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import (
    ConnectionFailed, MigrationError, SelectionError)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import ManifestRow

# Session settings that make ``ROW(...)::text`` the same on both servers.
TEXT_SETTINGS = (('TimeZone', 'UTC'), ('DateStyle', 'ISO, MDY'), ('IntervalStyle', 'postgres'),
                 ('extra_float_digits', '1'), ('bytea_output', 'hex'))

# A child's own validated CHECK constraints and, for a partition, its partition constraint.
SLICE_EXPRESSIONS_SQL = """
SELECT c.relname, pg_get_expr(con.conbin, con.conrelid), 1, con.conname::text
FROM pg_catalog.pg_constraint con
JOIN pg_catalog.pg_class c ON c.oid = con.conrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s) AND con.contype = 'c'
  AND con.conislocal AND con.convalidated
UNION ALL
SELECT c.relname, pg_get_partition_constraintdef(c.oid), 0, ''
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s) AND c.relispartition
ORDER BY 1, 3, 4
"""


# -- what to compare (pure) ----------------------------------------------------------------

@dataclass
class ComparisonPlan:
    """One comparison: ``members`` summed on the source vs a count of ``target_table``."""

    kind: str  # 'table' | 'slice' | 'group'
    source_table: str  # the row's source table; for a group, the target parent's name
    target_table: str
    members: List[str]
    predicate: Optional[str] = None  # SQL condition on the target table, None = all rows
    target_only: bool = True  # FROM ONLY on the target
    note: Optional[str] = None


def check_predicate(expressions: Sequence[str]) -> Optional[str]:
    """The conjunction of CHECK expressions, or None when there are none."""
    exprs = [e.strip() for e in expressions if e and e.strip()]
    if not exprs:
        return None
    return ' AND '.join('(%s)' % e for e in exprs)


def outside_all(predicates: Sequence[str]) -> Optional[str]:
    """Rows for which no predicate is TRUE (NULL counts as not matching)."""
    if not predicates:
        return None
    return 'NOT (%s)' % ' OR '.join('COALESCE((%s), false)' % p for p in predicates)


def drop_child_families(rows: Sequence[ManifestRow]) -> Dict[str, List[str]]:
    """Target parent -> source children copied into it (rows whose target is another name)."""
    families: Dict[str, List[str]] = {}
    for row in rows:
        if row.target != row.source_table:
            kids = families.setdefault(row.target, [])
            if row.source_table not in kids:
                kids.append(row.source_table)
    return families


def _unsliceable(children: Sequence[str], predicates: Dict[str, Optional[str]]) -> Optional[str]:
    """Why a family cannot be compared slice by slice, or None when it can."""
    bare = [c for c in children if predicates.get(c) is None]
    if bare:
        return 'cannot isolate the slice of %s: no CHECK constraint of its own on the source' % (
            ', '.join(bare[:5]) + (' (and %d more)' % (len(bare) - 5) if len(bare) > 5 else ''))
    seen: Dict[str, str] = {}
    for child in children:
        pred = predicates[child]
        if pred in seen:
            return 'cannot tell %s from %s: same CHECK constraint' % (seen[pred], child)
        seen[pred] = child
    return None


def plan_comparisons(rows: Sequence[ManifestRow], family_rows: Sequence[ManifestRow],
                     predicates: Dict[str, Optional[str]]) -> List[ComparisonPlan]:
    """Comparisons for the selected ``rows``, in their order.

    ``family_rows`` are the manifest rows expected on the target (they say which children
    each drop-child parent holds, and are summed for a group); ``predicates`` maps each
    drop-child child to its slice predicate (None: no CHECK).
    """
    families = drop_child_families(family_rows)
    family_sources = {r.source_table for r in family_rows}
    plans: List[ComparisonPlan] = []
    groups_done = set()
    for row in rows:
        dropped_child = row.target != row.source_table
        parent = row.target
        if not dropped_child and parent not in families:
            plans.append(ComparisonPlan('table', row.source_table, row.target,
                                        [row.source_table]))
            continue
        children = families.get(parent, [])
        if dropped_child and row.source_table not in children:
            children = children + [row.source_table]  # selected but not in family_rows
        reason = _unsliceable(children, predicates)
        if reason is None:
            if dropped_child:
                plans.append(ComparisonPlan('slice', row.source_table, parent,
                                            [row.source_table], predicates[row.source_table],
                                            target_only=False))
            else:
                plans.append(ComparisonPlan(
                    'slice', row.source_table, parent, [row.source_table],
                    outside_all([predicates[c] for c in children]), target_only=False,
                    note="the parent's own rows: target rows outside every child's slice"))
            continue
        if parent in groups_done:
            continue
        groups_done.add(parent)
        members = ([parent] if parent in family_sources else []) + list(children)
        plans.append(ComparisonPlan('group', parent, parent, members, None, target_only=False,
                                    note=reason + '; compared as one group: the parent and '
                                    '%d children summed' % len(children)))
    return plans


def table_pairs(entries: Sequence[Union[str, Sequence[str], Dict[str, str]]]
                ) -> List[Tuple[str, str]]:
    """Normalise table entries: 'name', (source, target) or {'source': .., 'target': ..}."""
    pairs: List[Tuple[str, str]] = []
    for entry in entries:
        if isinstance(entry, str):
            source, target = entry, entry
        elif isinstance(entry, dict):
            unknown = set(entry) - {'source', 'target'}
            if unknown or not entry.get('source'):
                raise SelectionError('a table entry must be a name or a dict with keys source '
                                     'and (optional) target, not %r' % (entry,))
            source, target = entry['source'], entry.get('target') or entry['source']
        elif isinstance(entry, (list, tuple)) and len(entry) == 2:
            source, target = entry
        else:
            raise SelectionError('a table entry must be a name, a (source, target) pair or a '
                                 'dict with keys source and target, not %r' % (entry,))
        if not isinstance(source, str) or not isinstance(target, str) or not source or not target:
            raise SelectionError('table names must be non-empty strings, not %r' % (entry,))
        pairs.append((source, target))
    return pairs


def rows_from_pairs(pairs: Sequence[Tuple[str, str]]) -> List[ManifestRow]:
    """Manifest-like rows for a comparison without a manifest (all taken as migrated)."""
    return [ManifestRow(i + 1, s, None, None if t == s else t, True, False)
            for i, (s, t) in enumerate(pairs)]


# -- results --------------------------------------------------------------------------------

@dataclass
class TableComparison:
    source_table: str
    target_table: str
    kind: str
    source_rows: Optional[int] = None
    target_rows: Optional[int] = None
    source_checksum: Optional[str] = None
    target_checksum: Optional[str] = None
    match: bool = False
    predicate: Optional[str] = None
    error: Optional[str] = None
    members: List[str] = field(default_factory=list)
    note: Optional[str] = None

    def as_dict(self) -> Dict[str, object]:
        return {
            'source_table': self.source_table, 'target_table': self.target_table,
            'kind': self.kind, 'source_rows': self.source_rows, 'target_rows': self.target_rows,
            'source_checksum': self.source_checksum, 'target_checksum': self.target_checksum,
            'match': self.match, 'predicate': self.predicate, 'error': self.error,
            'members': list(self.members), 'note': self.note,
        }

    def describe(self) -> str:
        """One line for a failure message."""
        if self.error:
            return '%s (%s)' % (self.source_table, self.error)
        if self.source_rows != self.target_rows:
            return '%s (source %s rows, target %s rows)' % (
                self.source_table, self.source_rows, self.target_rows)
        return '%s (same %s rows, checksums differ)' % (self.source_table, self.source_rows)


# -- running the comparison -----------------------------------------------------------------

def _has_citus(conn) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus'")
        found = cur.fetchone() is not None
    conn.rollback()
    return found


class _Side:
    """One database: catalog facts and a per-query read-only transaction."""

    def __init__(self, conn, schema: str, label: str, checksums: bool):
        self.conn = conn
        self.schema = schema
        self.label = label
        self.checksums = checksums
        self.citus = False

    def __enter__(self) -> '_Side':
        self._autocommit = self.conn.autocommit
        self.conn.autocommit = False
        self.citus = _has_citus(self.conn)
        return self

    def __exit__(self, *exc) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.autocommit = self._autocommit

    def fetch(self, query, args=None, before: Sequence = ()) -> list:
        """Rows of ``query`` in a transaction of its own, run after the ``before`` statements.

        One execute per statement: Citus refuses a distributed query sent in the same
        query string as a propagated SET LOCAL.
        """
        try:
            with self.conn.cursor() as cur:
                for statement in before:
                    cur.execute(statement)
                cur.execute(query, args)
                return cur.fetchall()
        finally:
            self.conn.rollback()

    def prelude(self):
        """Statements run before each count: read only, and stable text output."""
        parts = [sql.SQL('SET TRANSACTION READ ONLY')]
        if self.checksums:
            if self.citus:
                parts.append(sql.SQL("SET LOCAL citus.propagate_set_commands TO 'local'"))
            parts.extend(sql.SQL('SET LOCAL {} TO {}').format(sql.Identifier(name),
                                                              sql.Literal(value))
                         for name, value in TEXT_SETTINGS)
        return parts

    def count(self, table: str, only: bool, predicate: Optional[str],
              columns: Optional[Sequence[str]]) -> Tuple[int, Optional[int]]:
        """(rows, checksum or None) of one table, optionally filtered; one round trip."""
        select = [sql.SQL('count(*)')]
        if columns is not None:
            row = sql.SQL('ROW({})').format(sql.SQL(', ').join(sql.Identifier(c) for c in columns))
            select.append(sql.SQL("COALESCE(sum(('x' || substr(md5({}::text), 1, 16))"
                                  "::bit(64)::bigint), 0)").format(row))
        query = sql.SQL('SELECT {} FROM {}{}.{}{}').format(
            sql.SQL(', ').join(select), sql.SQL('ONLY ') if only else sql.SQL(''),
            sql.Identifier(self.schema), sql.Identifier(table),
            # the predicate is a CHECK expression from the source catalog: columns only
            sql.SQL(' WHERE {}').format(sql.SQL(predicate)) if predicate else sql.SQL(''))
        try:
            rows = self.fetch(query, before=self.prelude())
        except psycopg2.Error as exc:
            if self.conn.closed:
                raise ConnectionFailed('lost the connection to the %s database: %s'
                                       % (self.label, _pg_message(exc)))
            raise _QueryFailed('%s: %s' % (self.label, _pg_message(exc)))
        count, checksum = rows[0][0], (rows[0][1] if columns is not None else None)
        return int(count), (None if checksum is None else int(checksum))


class _QueryFailed(MigrationError):
    pass


def _pg_message(exc: BaseException) -> str:
    diag = getattr(exc, 'diag', None)
    primary = getattr(diag, 'message_primary', None) if diag else None
    return primary or ' '.join(str(exc).split()) or exc.__class__.__name__


def _common_columns(source_lists: Sequence[Optional[list]], target: Optional[list]
                    ) -> List[str]:
    """Columns of the first source table present in every source table and the target."""
    names = [c.name for c in (source_lists[0] or [])]
    keep = set(names)
    for cols in list(source_lists[1:]) + [target]:
        keep &= {c.name for c in (cols or [])}
    return [n for n in names if n in keep]


def compare_manifest(src_conn, tgt_conn, rows: Sequence[ManifestRow], checksums: bool = False,
                     schema_source: str = 'public', schema_target: str = 'public',
                     family_rows: Optional[Sequence[ManifestRow]] = None
                     ) -> List[TableComparison]:
    """Compare each selected manifest row between source and target (see the module doc).

    ``family_rows`` (default ``rows``) are the rows expected to be on the target: they name
    each drop-child parent's children, for the parent's own slice and for group sums. Pass
    the whole manifest (or its migrated rows) when ``rows`` is a filtered subset.
    Connections must be idle; each query runs in its own read-only transaction, rolled back.
    A missing table or a failing query gives an entry with ``error``, not an exception.
    """
    family_rows = list(rows) if family_rows is None else list(family_rows)
    families = drop_child_families(list(family_rows) + list(rows))
    children = sorted({c for kids in families.values() for c in kids})
    with _Side(src_conn, schema_source, 'source', checksums) as src, \
            _Side(tgt_conn, schema_target, 'target', checksums) as tgt:
        exprs: Dict[str, List[str]] = {}
        if children:
            for rel, expr, _kind, _name in src.fetch(SLICE_EXPRESSIONS_SQL, {
                    'schema': schema_source, 'names': children}):
                if expr:
                    exprs.setdefault(rel, []).append(expr)
        predicates = {c: check_predicate(exprs.get(c, [])) for c in children}
        plans = plan_comparisons(rows, family_rows, predicates)
        with src.conn.cursor() as cur:
            src_cols = read_columns_many(cur, schema_source,
                                         [m for p in plans for m in p.members])
        src.conn.rollback()
        with tgt.conn.cursor() as cur:
            tgt_cols = read_columns_many(cur, schema_target, [p.target_table for p in plans])
        tgt.conn.rollback()
        return [_run_plan(plan, src, tgt, src_cols, tgt_cols, checksums) for plan in plans]


def compare_settled(src_conn, tgt_conn, rows: Sequence[ManifestRow], rechecks: int = 0,
                    interval: float = 2.0, sleep: Callable[[float], None] = time.sleep,
                    **kwargs) -> List[TableComparison]:
    """``compare_manifest``, then the tables that differed compared again, up to ``rechecks``
    more times ``interval`` seconds apart. With the mirrors on, the application writes a row
    to the source and then to the target: a live pair may differ for the moment between the
    two writes. A table that matches on any pass matches; one that differs on every pass (or
    fails) is reported as its last pass saw it."""
    family_rows = kwargs.pop('family_rows', None)
    family_rows = list(rows) if family_rows is None else list(family_rows)
    results = compare_manifest(src_conn, tgt_conn, rows, family_rows=family_rows, **kwargs)
    for dummy in range(max(0, rechecks)):
        differing = {c.source_table for c in results if not c.match and not c.error}
        if not differing:
            break
        sleep(interval)
        again = compare_manifest(src_conn, tgt_conn, [r for r in rows if r.source_table in differing],
                                 family_rows=family_rows, **kwargs)
        latest = {(c.source_table, c.target_table, c.kind): c for c in again}
        results = [latest.get((c.source_table, c.target_table, c.kind), c) for c in results]
    return results


def _target_only(plan: ComparisonPlan, src_cols: Dict[str, list], tgt_cols: Dict[str, list]
                 ) -> bool:
    """FROM ONLY on the target? Not for a partitioned target fed by a plain source table:
    its partitions hold the rows. A partitioned source holds none itself, nor its twin."""
    if not plan.target_only:
        return False
    if tgt_cols[plan.target_table][0].relkind != 'p':
        return True
    return all(src_cols[m][0].relkind == 'p' for m in plan.members)


def _run_plan(plan: ComparisonPlan, src: _Side, tgt: _Side, src_cols: Dict[str, list],
              tgt_cols: Dict[str, list], checksums: bool) -> TableComparison:
    result = TableComparison(plan.source_table, plan.target_table, plan.kind,
                             predicate=plan.predicate, members=list(plan.members),
                             note=plan.note)
    missing = [m for m in plan.members if m not in src_cols]
    if missing:
        result.error = "source table(s) %s do not exist" % ', '.join("'%s'" % m for m in missing)
        return result
    if plan.target_table not in tgt_cols:
        result.error = "target table '%s' does not exist" % plan.target_table
        return result
    columns = None
    if checksums:
        columns = _common_columns([src_cols[m] for m in plan.members], tgt_cols[plan.target_table])
    try:
        total, summed = 0, 0
        for member in plan.members:
            count, checksum = src.count(member, True, None, columns)
            total += count
            summed += checksum or 0
        result.source_rows = total
        result.source_checksum = str(summed) if checksums else None
        count, checksum = tgt.count(plan.target_table, _target_only(plan, src_cols, tgt_cols),
                                    plan.predicate, columns)
        result.target_rows = count
        result.target_checksum = None if checksum is None else str(checksum)
    except _QueryFailed as exc:
        result.error = str(exc)
        return result
    result.match = (result.source_rows == result.target_rows
                    and result.source_checksum == result.target_checksum)
    return result


# -- new rows on both sides -------------------------------------------------------------------

@dataclass
class NewRowsResult:
    source_table: str
    target_table: str
    seen_in_source: bool = False
    seen_in_target: bool = False
    source_rows: Optional[int] = None
    target_rows: Optional[int] = None
    source_first_row: Optional[str] = None  # smallest value of the column since the start
    target_first_row: Optional[str] = None
    source_seen_after_s: Optional[float] = None  # seconds of waiting until first seen
    target_seen_after_s: Optional[float] = None
    timed_out: bool = False
    error: Optional[str] = None

    @property
    def done(self) -> bool:
        return self.error is not None or (self.seen_in_source and self.seen_in_target)

    def missing_sides(self) -> List[str]:
        return [side for side, seen in (('source', self.seen_in_source),
                                        ('target', self.seen_in_target)) if not seen]

    def as_dict(self) -> Dict[str, object]:
        out = dict(self.__dict__)
        out['missing_on'] = self.missing_sides()
        return out


def parse_since(value: Union[str, datetime]) -> str:
    """Validate an ISO timestamp (``2024-05-01T10:00:00+00:00``, ``Z`` accepted)."""
    if isinstance(value, datetime):
        return value.isoformat()
    try:
        datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise SelectionError("since must be an ISO timestamp such as 2024-05-01T10:00:00+00:00, "
                             "not %r" % (value,))
    return str(value).strip()


def _iso(value) -> Optional[str]:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, 'isoformat') else str(value)


class _Poller:
    """Polls one side; reconnects on the next round after a lost connection."""

    # Errors that will not go away by waiting: missing table or column, bad since value.
    FATAL = ('42P01', '42703', '22007', '22008', '42883', '3F000')

    def __init__(self, factory: Callable[[], object], schema: str, column: str, since: str,
                 label: str):
        self.factory = factory
        self.schema, self.column, self.since, self.label = schema, column, since, label
        self.conn = None
        self.connected_once = False

    def query(self, table: str):
        """(count, min value) of rows with column >= since; raises _QueryFailed if fatal."""
        if self.conn is None or self.conn.closed:
            try:
                self.conn = self.factory()
            except MigrationError:
                if not self.connected_once:
                    raise  # wrong address or credentials: fail now, not at the timeout
                return None  # was reachable before: try again next round
            self.connected_once = True
            self.conn.autocommit = True
        statement = sql.SQL('SELECT count(*), min({col}) FROM {schema}.{table} '
                            'WHERE {col} >= %s').format(
            col=sql.Identifier(self.column), schema=sql.Identifier(self.schema),
            table=sql.Identifier(table))
        try:
            with self.conn.cursor() as cur:
                cur.execute(statement, (self.since,))
                return cur.fetchone()
        except psycopg2.Error as exc:
            if getattr(exc, 'pgcode', None) in self.FATAL:
                raise _QueryFailed('%s: %s' % (self.label, _pg_message(exc)))
            self.close()
            return None  # transient (connection lost...): try again next round

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()
        self.conn = None


def wait_for_new_rows(src_conn_factory: Callable[[], object],
                      tgt_conn_factory: Callable[[], object],
                      tables: Sequence[Union[str, Sequence[str], Dict[str, str]]], column: str,
                      since: Union[str, datetime], timeout_s: float, interval_s: float,
                      schema_source: str = 'public', schema_target: str = 'public',
                      clock: Callable[[], float] = time.monotonic,
                      sleep: Callable[[float], None] = time.sleep) -> List[NewRowsResult]:
    """Poll until every table has rows with ``column >= since`` in BOTH databases.

    ``tables``: names (same on both sides), (source, target) pairs or dicts. Tables are
    queried without ONLY: new rows of a parent land in its children. A side is no longer
    queried for a table once rows were seen there. Stops at ``timeout_s``; tables still
    missing a side get ``timed_out``. A missing table or column ends that table with
    ``error``. The factories open connections this function closes.
    """
    since = parse_since(since)
    if not column:
        raise SelectionError('wait_for_new_rows needs the timestamp column to watch')
    if timeout_s < 0 or interval_s <= 0:
        raise SelectionError('timeout must be >= 0 and interval > 0')
    results = [NewRowsResult(s, t) for s, t in table_pairs(tables)]
    pollers = {'source': _Poller(src_conn_factory, schema_source, column, since, 'source'),
               'target': _Poller(tgt_conn_factory, schema_target, column, since, 'target')}
    start = clock()
    deadline = start + timeout_s
    try:
        while True:
            for res in results:
                for side, poller in pollers.items():
                    if res.done or getattr(res, 'seen_in_' + side):
                        continue
                    table = res.source_table if side == 'source' else res.target_table
                    try:
                        found = poller.query(table)
                    except _QueryFailed as exc:
                        res.error = str(exc)
                        continue
                    if found is None:
                        continue
                    count, first = found
                    setattr(res, side + '_rows', int(count))
                    if count:
                        setattr(res, 'seen_in_' + side, True)
                        setattr(res, side + '_first_row', _iso(first))
                        setattr(res, side + '_seen_after_s', round(clock() - start, 3))
            now = clock()
            if all(r.done for r in results) or now >= deadline:
                break
            sleep(min(interval_s, deadline - now))
    finally:
        for poller in pollers.values():
            poller.close()
    for res in results:
        res.timed_out = not res.done
    return results


def describe_waiting(results: Sequence[NewRowsResult]) -> Optional[str]:
    """A failure message naming each table that saw no new rows and where, or None."""
    bad = []
    for res in results:
        if res.error:
            bad.append('%s (%s)' % (res.source_table, res.error))
        elif res.timed_out:
            sides = res.missing_sides()
            where = ' and the '.join(sides)
            name = res.source_table if res.source_table == res.target_table else '%s -> %s' % (
                res.source_table, res.target_table)
            bad.append('%s (no new rows in the %s)' % (name, where))
    if not bad:
        return None
    return '%d of %d tables: %s' % (len(bad), len(results), '; '.join(bad))
