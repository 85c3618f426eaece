# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key-range segments of a large table: the unit of copy, resume and comparison.

A table with a usable key (a primary key, or a unique index whose columns are all NOT
NULL, led by a column of a supported type) is cut into ranges of its leading key column:
``[-inf, b1), [b1, b2), ..., [bn, +inf)``. The first and last ranges are open-ended, so a
row inserted later beyond the planned bounds still falls in exactly one range.

Why key ranges and not ctid ranges on a live source: an UPDATE writes a new row version
that may land on another page, so a row can leave a ctid range that is not copied yet and
enter one that is already copied (read twice) or the other way round (missed). A key
range contains the same row whatever page it lives on; a row whose key itself changes is
a delete plus an insert, which a later comparison sees as drift, never as a duplicate.

A range travels as text (the ledger's ``part`` and the stored split plan): ``key:`` then a
JSON array ``[column, lo, hi]``, the bounds in PostgreSQL's text form of the column's type
(``null`` for open). In SQL a bound is an untyped literal, which PostgreSQL resolves to
the column's own type, so comparisons use the column's type and collation on every run.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - modules report the missing library
    sql = None

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError

KEY_PREFIX = 'key:'
# Leading key column types a range split supports (pg_type.typname of the column, or of
# its base type for a varchar); their text forms round-trip and sort as the type does.
SUPPORTED_TYPES = frozenset({
    'int2', 'int4', 'int8', 'numeric', 'text', 'varchar', 'bpchar', 'uuid', 'date',
    'timestamp', 'timestamptz'})
# Sample about this many blocks per segment when planning bounds (TABLESAMPLE SYSTEM).
SAMPLE_BLOCKS_PER_SEGMENT = 32
MIN_SAMPLE_BLOCKS = 2000


@dataclass(frozen=True)
class KeyRange:
    """Rows whose ``column`` is ``>= lo`` (if lo is set) and ``< hi`` (if hi is set)."""

    column: str
    lo: Optional[str] = None
    hi: Optional[str] = None

    def encode(self) -> str:
        return KEY_PREFIX + json.dumps([self.column, self.lo, self.hi], ensure_ascii=False,
                                       separators=(',', ':'))

    @classmethod
    def decode(cls, part: str) -> 'KeyRange':
        if not is_key_part(part):
            raise MigrationError('not a key-range part: %r' % (part,))
        try:
            column, lo, hi = json.loads(part[len(KEY_PREFIX):])
        except (ValueError, TypeError) as exc:
            raise MigrationError('damaged key-range part %r: %s' % (part, exc))
        if not isinstance(column, str) or not all(b is None or isinstance(b, str) for b in (lo, hi)):
            raise MigrationError('damaged key-range part %r' % (part,))
        return cls(column, lo, hi)

    def predicate(self) -> 'sql.Composable':
        """The WHERE condition selecting this range (TRUE for a range open at both ends)."""
        col = sql.Identifier(self.column)
        terms = []
        if self.lo is not None:
            terms.append(sql.SQL('{} >= {}').format(col, sql.Literal(self.lo)))
        if self.hi is not None:
            terms.append(sql.SQL('{} < {}').format(col, sql.Literal(self.hi)))
        return sql.SQL(' AND ').join(terms) if terms else sql.SQL('TRUE')

    def describe(self) -> str:
        return '%s in [%s, %s)' % (self.column, '-inf' if self.lo is None else self.lo,
                                   '+inf' if self.hi is None else self.hi)


def is_key_part(part: str) -> bool:
    return bool(part) and part.startswith(KEY_PREFIX)


def ranges_from_bounds(column: str, bounds: Sequence[str]) -> List[KeyRange]:
    """Ranges cut at ``bounds`` (sorted, distinct): len(bounds) + 1 ranges, open at both ends."""
    edges: List[Optional[str]] = [None] + list(bounds) + [None]
    return [KeyRange(column, lo, hi) for lo, hi in zip(edges, edges[1:])]


_KEYS_SQL = """
SELECT c.relname, array_agg(a.attname::text ORDER BY k.n) FILTER (WHERE k.n <= i.indnkeyatts),
       array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY k.n) FILTER (WHERE k.n <= i.indnkeyatts),
       bool_and(a.attnotnull), (array_agg(t.typname::text ORDER BY k.n))[1],
       (array_agg(bt.typname::text ORDER BY k.n))[1]
FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype AND t.typtype = 'd'
WHERE ns.nspname = %s AND c.relname = ANY(%s) AND i.indisunique AND i.indisvalid
  AND i.indimmediate AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indkey[0] <> 0
GROUP BY c.relname, i.indexrelid, i.indisprimary, i.indnatts
ORDER BY c.relname, i.indisprimary DESC, i.indnatts, i.indexrelid
"""


@dataclass(frozen=True)
class TableKey:
    """The key a table is split and compared by, with every one of its columns."""

    column: str  # the leading column
    type_name: str  # its pg_type name (of the base type for a domain)
    columns: Tuple[str, ...]
    types: Tuple[str, ...]  # format_type of each column


def usable_keys(cur, schema: str, tables: Sequence[str]) -> Dict[str, TableKey]:
    """The key of each table whose rows can be told apart and split into ranges by it: its
    primary key, else the unique index with the fewest columns; every column NOT NULL, the
    leading one of a type ranges support (SUPPORTED_TYPES, or a domain over one). One query
    for many tables; a table without such a key is absent."""
    cur.execute(_KEYS_SQL, (schema, sorted(set(tables))))
    out: Dict[str, TableKey] = {}
    for table, names, types, not_null, typname, basetype in cur.fetchall():
        if table in out or not not_null:
            continue
        leading = typname if typname in SUPPORTED_TYPES else basetype if basetype in SUPPORTED_TYPES else None
        if leading is not None:
            out[table] = TableKey(names[0], leading, tuple(names), tuple(types))
    return out


def usable_key(cur, schema: str, table: str) -> Optional[Tuple[str, str]]:
    """(leading column, its type name) of the key ``usable_keys`` picks for the table; None
    when the table has no such key."""
    key = usable_keys(cur, schema, [table]).get(table)
    return (key.column, key.type_name) if key is not None else None


def qualified(cur, schema: str, table: str) -> str:
    return sql.SQL('{}.{}').format(sql.Identifier(schema), sql.Identifier(table)).as_string(cur)


def plan_bounds(cur, schema: str, table: str, column: str, segments: int,
                nblocks: int) -> List[str]:
    """At most ``segments - 1`` distinct, sorted cut points of ``column`` that split the
    table's rows into about equal segments, from a block sample of the table (the whole
    table when it is small). Fewer when the column has fewer distinct values."""
    if segments <= 1:
        return []
    sample_blocks = max(MIN_SAMPLE_BLOCKS, SAMPLE_BLOCKS_PER_SEGMENT * segments)
    fractions = [i / segments for i in range(1, segments)]
    rel = sql.SQL('ONLY {}.{}').format(sql.Identifier(schema), sql.Identifier(table))
    if nblocks > sample_blocks:
        percent = max(0.0001, min(100.0, 100.0 * sample_blocks / nblocks))
        rel = sql.SQL('{} TABLESAMPLE SYSTEM ({}) REPEATABLE (0)').format(
            rel, sql.Literal(percent))
    cur.execute(sql.SQL('SELECT (percentile_disc({}::float8[]) WITHIN GROUP (ORDER BY {}))::text[] '
                        'FROM {}').format(sql.Literal(fractions), sql.Identifier(column), rel))
    values = cur.fetchone()[0] or []
    bounds: List[str] = []
    for value in values:  # sorted by the column's own order; drop repeats (and NULLs)
        if value is not None and (not bounds or bounds[-1] != value):
            bounds.append(value)
    return bounds
