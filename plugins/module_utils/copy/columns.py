# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Match a source table's columns to its target table's by name, and pick the COPY format."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import TableMappingError

# Objects with OIDs below this are built into PostgreSQL; their binary format carries no
# database-specific OIDs, so binary COPY between two databases is safe for them.
FIRST_NORMAL_OID = 16384

_COLUMNS_SQL = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid,
       COALESCE(et.oid, 0), c.relkind
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_type et ON et.oid = t.typelem AND t.typlen = -1 AND t.typelem <> 0
WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
ORDER BY c.relname, a.attnum
"""


@dataclass(frozen=True)
class Column:
    name: str
    type_name: str
    type_oid: int
    elem_oid: int
    relkind: str = 'r'  # of the table the column belongs to

    @property
    def builtin(self) -> bool:
        return self.type_oid < FIRST_NORMAL_OID and self.elem_oid < FIRST_NORMAL_OID


@dataclass(frozen=True)
class ColumnMapping:
    columns: Tuple[str, ...]
    binary: bool
    reason: str  # why text format was chosen, '' for binary
    # A declaratively partitioned source holds no rows itself (its partitions have their own
    # manifest rows): copying it is a no-op recorded in the ledger.
    source_partitioned: bool = False


def read_columns_many(cursor, schema: str, tables: Iterable[str]) -> Dict[str, List[Column]]:
    """Copyable columns of many tables in one query; missing tables are absent."""
    cursor.execute(_COLUMNS_SQL, (schema, sorted(set(tables))))
    out: Dict[str, List[Column]] = {}
    for rel, name, type_name, type_oid, elem_oid, relkind in cursor.fetchall():
        out.setdefault(rel, []).append(Column(name, type_name, int(type_oid), int(elem_oid),
                                              relkind))
    return out


def read_columns(cursor, schema: str, table: str) -> Optional[List[Column]]:
    """Copyable columns of schema.table in attnum order, or None if the table is missing."""
    return read_columns_many(cursor, schema, [table]).get(table)


def match_columns(source_table: str, target_table: str, source: Optional[List[Column]],
                  target: Optional[List[Column]]) -> ColumnMapping:
    """Every source column must exist on the target; binary only if all types agree."""
    if source is None:
        raise TableMappingError("source table '%s' does not exist" % source_table)
    if target is None:
        raise TableMappingError("target table '%s' does not exist on the target "
                                "(create it first: citus_bootstrap / citus_child_tables)"
                                % target_table)
    by_name = {c.name: c for c in target}
    missing = [c.name for c in source if c.name not in by_name]
    if missing:
        raise TableMappingError("target table '%s' has no column(s) %s that source table '%s' has"
                                % (target_table, ', '.join("'%s'" % m for m in missing),
                                   source_table))
    reason = ''
    for col in source:
        other = by_name[col.name]
        if col.type_name != other.type_name:
            reason = "column '%s' is %s on the source and %s on the target" % (
                col.name, col.type_name, other.type_name)
            break
        if not (col.builtin and other.builtin):
            reason = "column '%s' has a non built-in type (%s)" % (col.name, col.type_name)
            break
    partitioned = bool(source) and source[0].relkind == 'p'
    return ColumnMapping(tuple(c.name for c in source), reason == '', reason, partitioned)
