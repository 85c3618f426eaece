# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Find the rows that differ between a source table and its target rows, in proportion to
the drift: segment checksums, bisection, then the rows themselves.

A table with a usable key (``copy.key_ranges.usable_key``) is cut into key-range segments:
the table's stored key-range split plan when it has one, else bounds planned from a block
sample (about ``SEGMENT_ROWS`` rows per segment; a small table is one segment). Each side
computes, per segment, ``count(*)`` and the sum of ``hashtextextended(ROW(columns)::text, 0)``
(order independent, a duplicate counts twice) in ONE grouped scan: ``GROUP BY
width_bucket(key, bounds)``. Source and target are queried at the same time, each in its own
read-only transaction with the text settings of ``compare`` (so values print alike).

A segment whose count or sum differs is narrowed: when it holds more than ``ROW_LEVEL_ROWS``
rows it is split into ``BISECT_PARTS`` sub-ranges at percentiles of the source keys in it and
each sub-range is compared the same way (recursively); otherwise the rows themselves are
compared: ``(key, row hash)`` of every row of the range on both sides, diffed here. The result
is, per differing range, the keys whose target row must be replaced (or deleted): see
``copy.range_repair``.

Which rows are "the target rows" of a manifest row follows ``compare.plan_comparisons`` (same
name, keep-child child, drop-child slice by the child's CHECK, partitions).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import threading
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover - modules report the missing library
    psycopg2 = None
    sql = None

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.key_ranges import (
    KeyRange, SUPPORTED_TYPES, is_key_part, plan_bounds, ranges_from_bounds)
from ansible_collections.icds.citus_migration.plugins.module_utils.validate.compare import (
    TEXT_SETTINGS)
from ansible_collections.icds.citus_migration.plugins.module_utils.validate.sql_arrays import array_literal

SEGMENT_ROWS = 10000       # rows per planned segment of a table without a stored plan
MAX_SEGMENTS = 4096        # bounds in one width_bucket array
ROW_LEVEL_ROWS = 20000     # a differing range at most this big is compared row by row
BISECT_PARTS = 16          # sub-ranges of a bigger differing range
ROW_BATCH_ROWS = 200000    # rows fetched per row-level query (contiguous differing segments)
FINE = 256                 # sub-buckets per segment when the rows are not known
FINE_ROWS = 32             # rows per sub-bucket aimed at (see fine_buckets)
MAX_FINE = 1 << 16         # sub-buckets per segment at most
MAX_CHANGES_FINE = 1 << 22  # buckets of a table compared by changes at most (one segment)


@dataclass
class Scope:
    """The rows of one manifest row on each side, and how they are keyed and hashed."""

    source_table: str
    target_table: str
    kind: str  # 'table' | 'slice'
    target_only: bool
    predicate: Optional[str]  # the target rows (a CHECK expression of the source catalog)
    columns: List[str]  # compared columns, in the source's order
    key: Optional[str] = None  # the leading key column: segments are ranges of it
    key_type: Optional[str] = None
    # every column of the key (a row's identity) and their types (format_type): the leading
    # column alone need not be unique, e.g. PRIMARY KEY (supervisor_id, doc_id)
    key_columns: Tuple[str, ...] = ()
    key_types: Tuple[str, ...] = ()
    # 'record': hash_record_extended(ROW(...)), the types' own hash functions (PostgreSQL 14+,
    # every compared column of a hashable type, the same type on both sides: no text output,
    # about 2.5 times faster); 'text': hashtextextended(ROW(...)::text), any type
    hash_mode: str = 'text'
    # sub-buckets per segment in the first pass (a power of two): see fine_buckets
    fine: int = FINE
    rows: int = 0  # the source's estimate of its rows (orders the branches of a family scan)

    def __post_init__(self) -> None:
        if self.key and not self.key_columns:
            self.key_columns, self.key_types = (self.key,), (self.key_type,)


@dataclass
class Segment:
    """One key range and what each side holds in it."""

    range: KeyRange
    source_rows: int = 0
    target_rows: int = 0
    source_sum: int = 0
    target_sum: int = 0

    @property
    def differs(self) -> bool:
        return (self.source_rows, self.source_sum) != (self.target_rows, self.target_sum)


@dataclass
class RangeDiff:
    """A differing range narrowed to its rows: keys to copy again from the source (changed
    or missing on the target) and keys to delete from the target (gone from the source)."""

    range: KeyRange
    changed: List[Tuple[str, ...]] = field(default_factory=list)  # key column values, as text
    missing: List[Tuple[str, ...]] = field(default_factory=list)
    extra: List[Tuple[str, ...]] = field(default_factory=list)

    @property
    def keys(self) -> List[Tuple[str, ...]]:
        return self.changed + self.missing + self.extra

    @property
    def rows(self) -> int:
        return len(self.changed) + len(self.missing) + len(self.extra)


@dataclass
class TableDrift:
    """The outcome of comparing one scope."""

    segments: int = 0
    differing_segments: int = 0
    ranges: List[RangeDiff] = field(default_factory=list)
    source_rows: int = 0
    target_rows: int = 0
    whole: Optional[bool] = None  # keyless: compared as a whole; True/False = differs

    @property
    def differs(self) -> bool:
        return bool(self.whole) or any(r.rows for r in self.ranges)

    @property
    def rows_to_repair(self) -> int:
        return sum(r.rows for r in self.ranges)


class SideQueryFailed(MigrationError):
    pass


# -- one side ---------------------------------------------------------------------------------

# Every comparison query: a grouped scan (one group per FINE_ROWS rows) must be a hash
# aggregate. The planner cannot estimate the groups of a hash expression, guesses one per
# row and sorts instead, carrying whole rows to the aggregate through an on-disk sort: 3 to
# 4 times slower than hashing. The other queries of a comparison do not sort, or sort a few
# rows; but a plan that must sort is costed as disabled, which would set off JIT compiling
# (about 100 ms a query, to save nothing: the hash functions are not compiled).
QUERY_SETTINGS = (('work_mem', '64MB'), ('enable_sort', 'off'), ('jit', 'off'))


class Side:
    """One database seen through one connection: statements run in read-only transactions
    with stable text output (``compare.TEXT_SETTINGS``), rolled back after each query."""

    def __init__(self, conn, schema: str, label: str, citus: bool = False,
                 settings: Sequence[Tuple[str, str]] = ()):
        self.conn = conn
        self.schema = schema
        self.label = label
        self.citus = citus
        self.settings = tuple(settings)  # e.g. one connection per worker for a small table

    def _prelude(self, text: bool):
        statements = [sql.SQL('SET TRANSACTION READ ONLY')]
        if self.citus:
            statements.append(sql.SQL("SET LOCAL citus.propagate_set_commands TO 'local'"))
        settings = (tuple(TEXT_SETTINGS) if text else ()) + QUERY_SETTINGS + self.settings
        statements.extend(sql.SQL('SET LOCAL {} TO {}').format(sql.Identifier(name), sql.Literal(value))
                          for name, value in settings)
        return sql.SQL('; ').join(statements)

    def fetch(self, query, args=None, text: bool = True) -> list:
        """Rows of ``query`` in a read-only transaction of its own; ``text``: with the text
        settings (a hash or key of the rows is printed as text).

        One round trip (statements of one query string run in one implicit transaction),
        except on Citus: Citus propagates SET LOCAL to the workers with
        propagate_set_commands = 'local' and refuses a distributed query in the same string
        as a propagated SET, so those go first, then the query, then the rollback."""
        prelude = self._prelude(text)
        try:
            if self.citus:
                try:
                    with self.conn.cursor() as cur:
                        cur.execute(prelude)
                        cur.execute(query, args)
                        return cur.fetchall()
                finally:
                    if not self.conn.closed:
                        self.conn.rollback()
            autocommit = self.conn.autocommit
            self.conn.autocommit = True
            try:
                with self.conn.cursor() as cur:
                    cur.execute(sql.SQL('; ').join([prelude, query]), args)
                    return cur.fetchall()
            finally:
                if not self.conn.closed:
                    self.conn.autocommit = autocommit
        except psycopg2.Error as exc:
            diag = getattr(exc, 'diag', None)
            message = (getattr(diag, 'message_primary', None) if diag else None) or ' '.join(str(exc).split())
            raise SideQueryFailed('%s: %s' % (self.label, message))


_TEMPORAL = ('date', 'time', 'interval')  # format_type prefixes: their text depends on settings


def needs_text(scope: Scope) -> bool:
    """Do the queries of this scope print values as text (so need the text settings)?"""
    return scope.hash_mode != 'record' or any(t.startswith(_TEMPORAL) for t in scope.key_types)


def both(source_fn: Callable[[], object], target_fn: Callable[[], object]) -> Tuple[object, object]:
    """Run the source query in a helper thread and the target query here, at the same time."""
    out: Dict[str, object] = {}

    def run() -> None:
        try:
            out['value'] = source_fn()
        except BaseException as exc:  # re-raised in the caller's thread
            out['error'] = exc

    thread = threading.Thread(target=run, name='compare-source', daemon=True)
    thread.start()
    try:
        target_value = target_fn()
    finally:
        thread.join()
    if 'error' in out:
        raise out['error']
    return out['value'], target_value


# -- SQL pieces ---------------------------------------------------------------------------------

def relation(schema: str, table: str, only: bool):
    return sql.SQL('{}{}.{}').format(sql.SQL('ONLY ') if only else sql.SQL(''),
                                     sql.Identifier(schema), sql.Identifier(table))


def row_hash(columns: Sequence[str], mode: str = 'text'):
    row = sql.SQL('ROW({})').format(sql.SQL(', ').join(sql.Identifier(c) for c in columns))
    if mode == 'record':
        return sql.SQL('hash_record_extended({}, 0)').format(row)
    return sql.SQL('hashtextextended({}::text, 0)').format(row)


# The type's own extended hash function (its hash operator class's, taking a seed) of a key
# column type, by format_type name without its type modifier
_SEEDED_HASH = {
    'text': 'hashtextextended', 'character varying': 'hashtextextended', 'character': 'hashbpcharextended',
    'smallint': 'hashint2extended', 'integer': 'hashint4extended', 'bigint': 'hashint8extended',
    'uuid': 'uuid_hash_extended', 'numeric': 'hash_numeric_extended',
    'timestamp without time zone': 'timestamp_hash_extended'}
_TYPMOD = re.compile(r'\([0-9, ]*\)')


def _seeded_hash(column: str, type_name: str, seed):
    base = _TYPMOD.sub('', type_name or '').strip()
    if base in _SEEDED_HASH:
        return sql.SQL('{}({}, {})').format(sql.SQL(_SEEDED_HASH[base]), sql.Identifier(column), seed)
    if base == 'date':  # a date is the timestamp of its midnight (infinity included)
        return sql.SQL('timestamp_hash_extended({}::timestamp, {})').format(sql.Identifier(column), seed)
    return sql.SQL('hash_record_extended(ROW({}), {})').format(sql.Identifier(column), seed)


def key_hash(scope: Scope):
    """The hash of a row's key. In 'record' mode each key column's own hash function, each
    seeded with the hash of the columns before it: about 40% of the cost of
    ``hash_record_extended(ROW(...))``, which forms a record of the columns and takes it
    apart again for every row (a three-column text and date key: 42 against 100 ns a row
    over a plain scan). Key columns are NOT NULL (``key_ranges.usable_keys``), so no
    function of the chain sees a NULL."""
    if scope.hash_mode != 'record' or len(scope.key_types) != len(scope.key_columns):
        return row_hash(scope.key_columns, scope.hash_mode)
    out = sql.Literal(0)
    for column, type_name in zip(scope.key_columns, scope.key_types):
        out = _seeded_hash(column, type_name, out)
    return out


def value_hash(scope: Scope, value: str = 'row'):
    """The hash summed per bucket and read per row: of the compared columns ('row'), or of
    the key columns alone ('key': only the key sets are compared, see changed_rows)."""
    return row_hash(scope.columns, scope.hash_mode) if value == 'row' else key_hash(scope)


def where_clause(conditions: Sequence[object]):
    parts = [c for c in conditions if c is not None]
    if not parts:
        return sql.SQL('')
    return sql.SQL(' WHERE ') + sql.SQL(' AND ').join(sql.SQL('({})').format(c) for c in parts)


def key_cast(scope: Scope):
    if scope.key_type not in SUPPORTED_TYPES:  # the type name is spliced into SQL
        raise MigrationError('key column %s of %s has an unsupported type %r'
                             % (scope.key, scope.source_table, scope.key_type))
    return sql.SQL(scope.key_type)


def side_args(scope: Scope, side: str):
    """(table, FROM ONLY?, fixed condition) of the scope's rows on one side."""
    if side == 'source':
        return scope.source_table, True, None
    # the predicate is a CHECK expression from the source catalog (columns only), as in compare
    return scope.target_table, scope.target_only, (sql.SQL(scope.predicate) if scope.predicate else None)


def fine_buckets(rows: int, segments: int, per_bucket: int = FINE_ROWS, limit: int = MAX_FINE) -> int:
    """Sub-buckets per segment: a power of two giving about ``per_bucket`` rows each.

    Drift spread over a table (0.1% of random rows) touches nearly every group of a few
    thousand rows, so the first pass must tell apart groups small enough that most of them
    are equal: with 32 rows a group, 0.15% drift leaves about 95% of the groups equal, and
    only the rows of the other 5% are read again. The groups cost little: one hash
    aggregate entry per 32 rows."""
    per_segment = max(1, int(rows)) // max(1, segments)
    fine = 1
    while fine * per_bucket < per_segment and fine < limit:
        fine *= 2
    return fine


def bucket_expr(scope: Scope, bounds: Sequence[str], fine: bool = False, hashed=None):
    """The segment number of a row (0 without bounds); ``fine``: segment * scope.fine + a
    hash of the row's key modulo scope.fine, so that a segment's few changed rows are found
    by fetching the rows of the few sub-buckets that differ, not the whole segment."""
    segment = sql.SQL('0') if not bounds else sql.SQL('width_bucket({}, {})').format(
        sql.Identifier(scope.key), array_literal(bounds, key_cast(scope)))
    if not fine:
        return segment
    return sql.SQL('({} * {} + ({} & {}))').format(segment, sql.Literal(scope.fine),
                                                   hashed if hashed is not None else key_hash(scope),
                                                   sql.Literal(scope.fine - 1))


KEY_HASH = sql.Identifier('icds_h') if sql else None  # the key hash column of hashed_rows


def hashed_rows(rel, where, scope: Scope, extra=None):
    """A FROM item: the rows of ``rel`` with their key hash computed once, as KEY_HASH
    (``extra``: more columns computed there, SQL ending in their names).

    Without it a grouped key-hash sum computes the hash twice per row (for the bucket and
    for the sum: PostgreSQL does not share equal expressions), about a third of such a
    scan. The hash is written as a volatile expression, ``COALESCE(hash, random()::int8)``
    (the hash of a ROW is never NULL, so random() is never called), which keeps the planner,
    and the worker queries of Citus, from merging the subquery into the outer query (that
    would copy the hash back into every place that uses it) and from pushing an outer
    condition on it down into the scan (where ``hashed_rows``'s own hash would again be
    computed once per test: four times per row for a key hash test OR'd with three bucket
    tests, measured 115 ms against 65 on a shard of 182,000 rows). A Citus query pushes the
    subquery down to the shards like the plain scan."""
    return sql.SQL('(SELECT *, COALESCE({kh}, random()::int8) AS {name}{extra} FROM {rel}{where}) AS icds_k').format(
        kh=key_hash(scope), name=KEY_HASH, rel=rel, where=where,
        extra=sql.SQL(', {}').format(extra) if extra is not None else sql.SQL(''))


def bucket_query(side: Side, scope: Scope, which: str, bounds: Sequence[str],
                 within: Optional[KeyRange], fine: bool = False, value: str = 'row'):
    """count and hash sum per width_bucket of the key (0 when there are no bounds)."""
    table, only, fixed = side_args(scope, which)
    rel = relation(side.schema, table, only)
    where = where_clause([fixed, within.predicate() if within is not None else None])
    if value == 'key':  # the key hash is both the sum and the bucket's fine part: once per row
        return _grouped_sums(bucket_expr(scope, bounds, fine, KEY_HASH), KEY_HASH, hashed_rows(rel, where, scope))
    return _grouped_sums(bucket_expr(scope, bounds, fine), value_hash(scope, value), sql.SQL('{}{}').format(rel, where))


def _grouped_sums(bucket, hashed, rows):
    """SQL: count and hash sum per bucket of ``rows`` (a FROM item and its conditions)."""
    return sql.SQL('SELECT {}, count(*), COALESCE(sum({}), 0)::text FROM {} GROUP BY 1').format(bucket, hashed, rows)


def bucket_sums(side: Side, scope: Scope, which: str, bounds: Sequence[str],
                within: Optional[KeyRange] = None, fine: bool = False,
                value: str = 'row') -> Dict[Optional[int], Tuple[int, int]]:
    rows = side.fetch(bucket_query(side, scope, which, bounds, within, fine, value), text=needs_text(scope))
    return {b: (int(n), int(s)) for b, n, s in rows}


def row_hashes(side: Side, scope: Scope, which: str, span: KeyRange,
               bounds: Sequence[str] = (), only_buckets: Optional[Sequence[int]] = None,
               fine: bool = False, value: str = 'row') -> Dict[int, Dict[Tuple[str, ...], int]]:
    """width bucket -> key (every key column as text) -> row hash (``value``: see
    value_hash), for the rows in ``span`` (bucket 0 without bounds); only the rows of
    ``only_buckets`` when given."""
    table, only, fixed = side_args(scope, which)
    conditions = [fixed, span.predicate()]
    if only_buckets is not None:
        # int8[]: bigint = ANY(int4[]) is a cross-type operator, which PostgreSQL does not
        # hash: every row would be compared with each wanted bucket in turn
        conditions.append(sql.SQL('{} = ANY({})').format(
            bucket_expr(scope, bounds, fine), array_literal(only_buckets, 'int8')))
    keys = sql.SQL(', ').join(sql.SQL('{}::text').format(sql.Identifier(c)) for c in scope.key_columns)
    query = sql.SQL('SELECT {b}, {h}, {k} FROM {rel}{where}').format(
        b=bucket_expr(scope, bounds, fine), k=keys, h=value_hash(scope, value),
        rel=relation(side.schema, table, only), where=where_clause(conditions))
    out: Dict[int, Dict[Tuple[str, ...], int]] = {}
    for rec in side.fetch(query, text=needs_text(scope)):
        key = tuple(rec[2:])
        if any(v is None for v in key):
            raise SideQueryFailed('%s: rows of %s have no value in a key column (%s)'
                                  % (side.label, table, ', '.join(scope.key_columns)))
        _put(out.setdefault(rec[0], {}), key, int(rec[1]))
    return out


# The "hash" of a key a side holds more than once (a target without the source's unique
# key): outside the 64-bit range of real hashes, so the key always differs and is repaired.
DUPLICATE = 1 << 64


def _put(rows: Dict[Tuple[str, ...], int], key: Tuple[str, ...], value: int) -> None:
    rows[key] = DUPLICATE if key in rows else value


def hashable_types(cur, type_names: Sequence[str]) -> set:
    """Which of these types (format_type text) hash_record_extended can hash."""
    ok = set()
    for typ in sorted(set(type_names)):
        if ';' in typ or '--' in typ:
            continue
        try:
            cur.execute(sql.SQL('SELECT hash_record_extended(ROW(NULL::{}), 0)').format(sql.SQL(typ)))
            ok.add(typ)
        except psycopg2.Error:
            pass
        cur.connection.rollback()
    return ok


def key_match(scope: Scope, keys: Sequence[Tuple[str, ...]]):
    """The condition selecting the rows of these keys (every key column compared, typed)."""
    for typ in scope.key_types:  # from format_type(): spliced into SQL as a type name
        if not typ or ';' in typ or '--' in typ:
            raise MigrationError('unexpected key column type %r of %s' % (typ, scope.source_table))
    arrays = [array_literal([k[i] for k in keys], typ) for i, typ in enumerate(scope.key_types)]
    if len(scope.key_columns) == 1:
        return sql.SQL('{} = ANY({})').format(sql.Identifier(scope.key_columns[0]), arrays[0])
    # the leading column's own = ANY lets Citus prune the shards when it is the distribution
    # column. Its DISTINCT values: repeated ones (a few supervisors for many keys) make the
    # planner count each again and expect most of the table, and scan it instead of looking
    # the keys up by the index (100 ms instead of 11 for 1,200 keys of 6 supervisors)
    lead = array_literal(sorted({k[0] for k in keys}), scope.key_types[0])
    return sql.SQL('{} = ANY({}) AND ({}) IN (SELECT * FROM unnest({}))').format(
        sql.Identifier(scope.key_columns[0]), lead,
        sql.SQL(', ').join(sql.Identifier(c) for c in scope.key_columns), sql.SQL(', ').join(arrays))


def sub_bounds(side: Side, scope: Scope, within: KeyRange, parts: int) -> List[str]:
    """Cut points splitting the source rows of ``within`` into ``parts`` about equal ranges."""
    fractions = [i / parts for i in range(1, parts)]
    query = sql.SQL('SELECT (percentile_disc({}::float8[]) WITHIN GROUP (ORDER BY {}))::text[] '
                    'FROM ONLY {}.{}{}').format(
        sql.Literal(fractions), sql.Identifier(scope.key), sql.Identifier(side.schema),
        sql.Identifier(scope.source_table), where_clause([within.predicate()]))
    values = side.fetch(query, text=True)[0][0] or []
    out: List[str] = []
    for value in values:
        if value is not None and (not out or out[-1] != value):
            out.append(value)
    # a cut equal to the range's own lower bound would make an empty first range
    return [v for v in out if v != within.lo]


def diff_rows(span: KeyRange, source: Dict[Tuple[str, ...], int],
              target: Dict[Tuple[str, ...], int]) -> RangeDiff:
    diff = RangeDiff(span)
    for key, value in source.items():
        other = target.get(key)
        if other is None:
            diff.missing.append(key)
        elif other != value:
            diff.changed.append(key)
    diff.extra = [k for k in target if k not in source]
    return diff


# -- segments of a table ----------------------------------------------------------------------

def stored_bounds(parts: Optional[Sequence[str]], key: str) -> Optional[List[str]]:
    """The cut points of a stored key-range split plan of ``key``; None when the table has
    none (or a ctid plan, or a plan of another column, or one whose ranges do not chain)."""
    if not parts or not all(is_key_part(p) for p in parts):
        return None
    ranges = [KeyRange.decode(p) for p in parts]
    if any(r.column != key for r in ranges) or ranges[0].lo is not None or ranges[-1].hi is not None:
        return None
    if any(a.hi != b.lo for a, b in zip(ranges, ranges[1:])):
        return None
    return [r.lo for r in ranges[1:]]


def planned_bounds(src: Side, scope: Scope, est_rows: int, nblocks: int) -> List[str]:
    segments = min(MAX_SEGMENTS, max(1, -(-int(est_rows) // SEGMENT_ROWS)))
    if segments <= 1:
        return []
    with src.conn.cursor() as cur:
        try:
            return plan_bounds(cur, src.schema, scope.source_table, scope.key, segments, nblocks)
        finally:
            src.conn.rollback()


FAMILY_STRIDE = 1 << 40  # bucket numbers of member i of a family scan: i * FAMILY_STRIDE + fine bucket


def family_sums(side: Side, scopes: Sequence[Scope], bounds: Sequence[Sequence[str]],
                value: str = 'row') -> List[Dict[Optional[int], Tuple[int, int]]]:
    """Per scope, its target sums per bucket, from ONE grouped scan of the shared target table:
    the drop-child children of one parent (and the parent's own rows) are slices of the same
    target table, told apart by their predicates (the slices do not overlap, as in compare).
    All scopes share the target table, ``target_only`` and the compared columns."""
    first = scopes[0]
    rel = relation(side.schema, first.target_table, first.target_only)
    if value == 'key':  # the key hash once per row (see hashed_rows)
        query = _grouped_sums(family_bucket_expr(scopes, bounds, KEY_HASH), KEY_HASH, hashed_rows(rel, sql.SQL(''), first))
    else:
        query = _grouped_sums(family_bucket_expr(scopes, bounds), value_hash(first, value), rel)
    out: List[Dict[Optional[int], Tuple[int, int]]] = [{} for dummy in scopes]
    for bucket, n, total in side.fetch(query, text=needs_text(first)):
        if bucket is not None:  # rows of no compared slice (a sibling not compared now)
            out[bucket // FAMILY_STRIDE][bucket % FAMILY_STRIDE] = (int(n), int(total))
    return out


def family_bucket_expr(scopes: Sequence[Scope], bounds: Sequence[Sequence[str]], hashed=None):
    """CASE giving each row its member's global fine bucket (NULL: no compared slice).

    The branches are tried per row in order (the slices do not overlap, so any order gives
    the same bucket): the members with more rows first (``Scope.rows``), so that the average
    row tests few predicates; the parent's own rows, whose predicate negates all the others,
    usually hold none and come last."""
    branches = []
    for i in sorted(range(len(scopes)), key=lambda k: -scopes[k].rows):
        scope, cuts = scopes[i], bounds[i]
        bucket = bucket_expr(scope, cuts, fine=True, hashed=hashed) if scope.key else sql.SQL('0')
        # the predicate is a CHECK expression from the source catalog (columns only), as in compare
        branches.append(sql.SQL('WHEN ({}) THEN {} + {}').format(
            sql.SQL(scope.predicate), sql.Literal(i * FAMILY_STRIDE), bucket))
    return sql.SQL('CASE {} END').format(sql.SQL(' ').join(branches))


def family_rows(side: Side, scopes: Sequence[Scope], bounds: Sequence[Sequence[str]],
                wanted: Sequence[int], value: str = 'row') -> List[Dict[int, Dict[Tuple[str, ...], int]]]:
    """Per scope, fine bucket -> key -> row hash of its target rows in the ``wanted`` global
    fine buckets, from ONE scan of the shared target table. The scopes share their key columns."""
    first = scopes[0]
    bucket = family_bucket_expr(scopes, bounds)
    keys = sql.SQL(', ').join(sql.SQL('{}::text').format(sql.Identifier(c)) for c in first.key_columns)
    where = sql.SQL('{} = ANY({})').format(bucket, array_literal(wanted, 'int8'))
    query = sql.SQL('SELECT {b}, {h}, {k} FROM {rel} WHERE {w}').format(
        b=bucket, h=value_hash(first, value), k=keys,
        rel=relation(side.schema, first.target_table, first.target_only), w=where)
    out: List[Dict[int, Dict[Tuple[str, ...], int]]] = [{} for dummy in scopes]
    for rec in side.fetch(query, text=needs_text(first)):
        key = tuple(rec[2:])
        if any(v is None for v in key):
            raise SideQueryFailed('target: rows of %s have no value in a key column (%s)'
                                  % (first.target_table, ', '.join(first.key_columns)))
        _put(out[rec[0] // FAMILY_STRIDE].setdefault(rec[0] % FAMILY_STRIDE, {}), key, int(rec[1]))
    return out


def differing_buckets(source: Dict[Optional[int], Tuple[int, int]],
                      target: Dict[Optional[int], Tuple[int, int]]) -> List[int]:
    return sorted(b for b in set(source) | set(target)
                  if b is not None and source.get(b, (0, 0)) != target.get(b, (0, 0)))


def physical_rows(side: Side, scope: Scope, which: str) -> List[Tuple[int, str, int]]:
    """(tableoid, ctid, row hash) of every row of a keyless scope on one side."""
    table, only, fixed = side_args(scope, which)
    query = sql.SQL('SELECT tableoid::int8, ctid::text, {h} FROM {rel}{where}').format(
        h=row_hash(scope.columns, scope.hash_mode), rel=relation(side.schema, table, only),
        where=where_clause([fixed]))
    return [(int(o), c, int(h)) for o, c, h in side.fetch(query, text=needs_text(scope))]


def multiset_diff(source: Sequence[Tuple[int, str, int]], target: Sequence[Tuple[int, str, int]]
                  ) -> Tuple[List[Tuple[int, str, int]], List[Tuple[int, str, int]]]:
    """Rows of a keyless table to copy (source rows a target twin lacks) and to delete
    (target rows in excess), matched by row hash with their multiplicity."""
    by_hash: Dict[int, List[Tuple[int, str, int]]] = {}
    for rec in target:
        by_hash.setdefault(rec[2], []).append(rec)
    copy: List[Tuple[int, str, int]] = []
    for rec in source:
        twins = by_hash.get(rec[2])
        if twins:
            twins.pop()
        else:
            copy.append(rec)
    delete = [rec for recs in by_hash.values() for rec in recs]
    return copy, delete


class Comparer:
    """Compares one scope between ``src`` and ``tgt`` and narrows the drift to rows.

    ``prefetched``: (source, target) row hashes per bucket already read (a small table read
    row by row at once, or a family's rows read with one target scan): the row-level diff
    of those buckets then needs no query."""

    def __init__(self, src: Side, tgt: Side, scope: Scope,
                 on_segment: Optional[Callable[[int], None]] = None,
                 prefetched: Optional[Tuple[dict, dict]] = None):
        self.src, self.tgt, self.scope = src, tgt, scope
        self.on_segment = on_segment
        self.prefetched = prefetched

    def whole(self, first: Optional[Tuple[dict, dict]] = None) -> TableDrift:
        """A keyless table: count and hash of all its rows on each side."""
        s, t = first or both(lambda: bucket_sums(self.src, self.scope, 'source', []),
                             lambda: bucket_sums(self.tgt, self.scope, 'target', []))
        sn, ss = s.get(0, (0, 0))
        tn, ts = t.get(0, (0, 0))
        return TableDrift(segments=1, differing_segments=int((sn, ss) != (tn, ts)),
                          source_rows=sn, target_rows=tn, whole=(sn, ss) != (tn, ts))

    def segments(self, bounds: Sequence[str], first: Optional[Tuple[dict, dict]] = None) -> TableDrift:
        """Compare every segment (one grouped scan per side; ``first``: the sums already
        computed, by ``family_sums``), then narrow the differing ones."""
        scope = self.scope
        s, t = first or both(lambda: bucket_sums(self.src, scope, 'source', bounds, fine=True),
                             lambda: bucket_sums(self.tgt, scope, 'target', bounds, fine=True))
        if None in t:
            raise SideQueryFailed('target: %s rows of %s have no value in the key column %s'
                                  % (t[None][0], scope.target_table, scope.key))
        ranges = ranges_from_bounds(scope.key, bounds)
        fine_n = scope.fine
        per_segment = [[0, 0, 0, 0] for dummy in ranges]
        for sums, offset in ((s, 0), (t, 2)):
            for b, (n, total) in sums.items():
                if b is not None:
                    per_segment[b // fine_n][offset] += n
                    per_segment[b // fine_n][offset + 1] += total
        segs = [Segment(rng, v[0], v[2], v[1], v[3]) for rng, v in zip(ranges, per_segment)]
        drift = TableDrift(segments=len(segs), source_rows=sum(x.source_rows for x in segs),
                           target_rows=sum(x.target_rows for x in segs))
        fine = differing_buckets(s, t)
        differing = sorted({b // fine_n for b in fine})
        drift.differing_segments = len(differing)
        if self.on_segment:
            self.on_segment(len(segs))
        # rows each side holds in a segment's differing sub-buckets: a segment is narrowed by
        # fetching only those rows when they are few, however big the segment (e.g. a segment
        # of one leading key value); else it is bisected
        in_fine: Dict[int, int] = {}
        for b in fine:
            in_fine[b // fine_n] = in_fine.get(b // fine_n, 0) + max(s.get(b, (0, 0))[0], t.get(b, (0, 0))[0])
        small = [i for i in differing if max(segs[i].source_rows, segs[i].target_rows) <= ROW_LEVEL_ROWS
                 or in_fine[i] <= ROW_LEVEL_ROWS]
        for batch in _contiguous_batches(small, [in_fine.get(i, 0) for i in range(len(segs))]):
            wanted = [b for b in fine if b // fine_n in set(batch)]
            drift.ranges.extend(self._rows_of_buckets(bounds, ranges, batch, wanted))
        small_set = set(small)
        for i in differing:
            if i not in small_set:
                drift.ranges.extend(self.narrow(segs[i]))
        return drift

    def _rows_of_buckets(self, bounds: Sequence[str], ranges: List[KeyRange],
                         batch: List[int], wanted: List[int]) -> List[RangeDiff]:
        """Row-level diff of the differing sub-buckets of several segments, one query per side."""
        if self.prefetched is not None:
            s, t = self.prefetched
        else:
            span = KeyRange(self.scope.key, ranges[batch[0]].lo, ranges[batch[-1]].hi)
            s, t = both(lambda: row_hashes(self.src, self.scope, 'source', span, bounds, wanted, True),
                        lambda: row_hashes(self.tgt, self.scope, 'target', span, bounds, wanted, True))
        out = []
        for i in batch:
            src_rows: Dict[Tuple[str, ...], int] = {}
            tgt_rows: Dict[Tuple[str, ...], int] = {}
            for b in wanted:
                if b // self.scope.fine == i:
                    src_rows.update(s.get(b, {}))
                    tgt_rows.update(t.get(b, {}))
            diff = diff_rows(ranges[i], src_rows, tgt_rows)
            if diff.rows:
                out.append(diff)
        return out

    def narrow(self, seg: Segment) -> List[RangeDiff]:
        """A big differing range: split it at source percentiles, recurse into the parts
        that differ; a range small enough is diffed row by row."""
        scope = self.scope
        if max(seg.source_rows, seg.target_rows) <= ROW_LEVEL_ROWS:
            s, t = both(lambda: row_hashes(self.src, scope, 'source', seg.range),
                        lambda: row_hashes(self.tgt, scope, 'target', seg.range))
            diff = diff_rows(seg.range, s.get(0, {}), t.get(0, {}))
            return [diff] if diff.rows else []
        cuts = sub_bounds(self.src, scope, seg.range, BISECT_PARTS)
        if not cuts:  # the source has (almost) no rows here: the target's are all extra
            s, t = both(lambda: row_hashes(self.src, scope, 'source', seg.range),
                        lambda: row_hashes(self.tgt, scope, 'target', seg.range))
            diff = diff_rows(seg.range, s.get(0, {}), t.get(0, {}))
            return [diff] if diff.rows else []
        s, t = both(lambda: bucket_sums(self.src, scope, 'source', cuts, seg.range),
                    lambda: bucket_sums(self.tgt, scope, 'target', cuts, seg.range))
        edges = [seg.range.lo] + cuts + [seg.range.hi]
        out: List[RangeDiff] = []
        for i in range(len(cuts) + 1):
            sn, ss = s.get(i, (0, 0))
            tn, ts = t.get(i, (0, 0))
            sub = Segment(KeyRange(scope.key, edges[i], edges[i + 1]), sn, tn, ss, ts)
            if sub.differs:
                out.extend(self.narrow(sub))
        return out


def _contiguous_batches(indexes: Sequence[int], rows_of: Sequence[int]) -> List[List[int]]:
    """Differing segment indexes grouped so that one query fetches at most ROW_BATCH_ROWS rows
    per side (``rows_of``: the rows of a segment's differing sub-buckets) over one contiguous
    key span."""
    batches: List[List[int]] = []
    rows = 0
    for i in indexes:
        n = rows_of[i]
        if batches and rows + n <= ROW_BATCH_ROWS:
            batches[-1].append(i)
            rows += n
        else:
            batches.append([i])
            rows = n
    return batches
