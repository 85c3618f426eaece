# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read the tables of one schema from a PostgreSQL catalog, in a constant number of queries.

ICDS databases hold tens of thousands of child tables, so nothing here runs one query per
table: ``list_tables`` issues three queries (tables, CHECK constraints, columns) whatever the
table count.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional

_TABLES_SQL = """
SELECT c.oid, c.relname, c.relkind, c.relispartition,
       parent.relname, parent_ns.nspname,
       pg_get_expr(c.relpartbound, c.oid),
       c.reltuples::float8,
       COALESCE(pg_stat_get_live_tuples(c.oid), 0)::bigint,
       CASE WHEN %s THEN pg_relation_size(c.oid) END
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhseqno = 1
LEFT JOIN pg_class parent ON parent.oid = i.inhparent
LEFT JOIN pg_namespace parent_ns ON parent_ns.oid = parent.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p')
ORDER BY c.relname
"""

_CHECKS_SQL = """
SELECT con.conrelid, pg_get_constraintdef(con.oid)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND con.contype = 'c' AND c.relkind IN ('r', 'p')
ORDER BY con.conrelid, con.conname
"""

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

# Columns of the tables that are nobody's child: a few hundred rows where _COLUMNS_SQL reads
# the columns of every one of tens of thousands of children too.
_TOP_LEVEL_COLUMNS_SQL = _COLUMNS_SQL.replace(
    'ORDER BY', 'AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)\nORDER BY')


@dataclass
class TableInfo:
    """One table (relkind 'r') or declaratively partitioned table (relkind 'p')."""

    name: str
    schema: str = 'public'
    oid: int = 0
    is_partitioned: bool = False
    is_partition: bool = False
    parent: Optional[str] = None
    parent_schema: Optional[str] = None
    checks: List[str] = field(default_factory=list)
    partition_bound: Optional[str] = None
    reltuples: float = -1.0
    live_tuples: int = 0
    size_bytes: Optional[int] = None
    columns: List[str] = field(default_factory=list)

    @property
    def estimated_rows(self) -> int:
        """Best row estimate: pg_class.reltuples (-1 = never analysed) or n_live_tup."""
        return int(max(self.reltuples, float(self.live_tuples), 0.0))


def list_tables(conn, schema: str = 'public', with_columns: bool = True,
                with_sizes: bool = True, child_columns: bool = True) -> List[TableInfo]:
    """All tables of ``schema``, sorted by name, with parent, checks, bound, estimates, size.

    ``parent`` is the first pg_inherits parent (inheritance child or partition). A parent in
    another schema is reported in ``parent_schema``. ``with_sizes=False`` skips
    pg_relation_size (a file stat per table: the costliest part on 10,000+ tables) and leaves
    ``size_bytes`` None; ``with_columns=False`` leaves ``columns`` empty, and
    ``child_columns=False`` leaves them empty for tables that have a parent.
    """
    with conn.cursor() as cur:
        cur.execute(_TABLES_SQL, (with_sizes, schema))
        tables = [TableInfo(name=r[1], schema=schema, oid=r[0], is_partitioned=(r[2] == 'p'),
                            is_partition=bool(r[3]), parent=r[4], parent_schema=r[5],
                            partition_bound=r[6], reltuples=float(r[7]),
                            live_tuples=int(r[8]),
                            size_bytes=None if r[9] is None else int(r[9]))
                  for r in cur.fetchall()]
        by_oid: Dict[int, TableInfo] = {t.oid: t for t in tables}
        cur.execute(_CHECKS_SQL, (schema,))
        for oid, definition in cur.fetchall():
            if oid in by_oid:
                by_oid[oid].checks.append(definition)
        if with_columns:
            cur.execute(_COLUMNS_SQL if child_columns else _TOP_LEVEL_COLUMNS_SQL, (schema,))
            for oid, name in cur.fetchall():
                if oid in by_oid:
                    by_oid[oid].columns.append(name)
    if not conn.autocommit:
        conn.rollback()  # end the read-only transaction: never leave a session idle in one
    return tables


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while tens of thousands of catalog objects are built.

    They hold no reference cycles, but each full collection walks every object alive, so
    the collections triggered while a 50,000-table catalog is read made the whole step grow
    faster than the table count (about 12% of it at 50,000 tables, measured).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def children_by_parent(tables: Iterable[TableInfo]) -> Dict[str, List[TableInfo]]:
    """Map parent name -> direct children (same schema), children sorted by name."""
    result: Dict[str, List[TableInfo]] = {}
    for table in tables:
        if table.parent is not None and table.parent_schema in (None, table.schema):
            result.setdefault(table.parent, []).append(table)
    for kids in result.values():
        kids.sort(key=lambda t: t.name)
    return result


def descendants(name: str, children: Dict[str, List[TableInfo]]) -> List[TableInfo]:
    """Every table below ``name`` (children, grandchildren...), depth first, names sorted."""
    result: List[TableInfo] = []
    stack = list(reversed(children.get(name, [])))
    seen = {name}
    while stack:
        table = stack.pop()
        if table.name in seen:
            continue
        seen.add(table.name)
        result.append(table)
        stack.extend(reversed(children.get(table.name, [])))
    return result
