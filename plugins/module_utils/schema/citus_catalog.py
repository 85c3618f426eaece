# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Citus knows about a database: is the extension there, how is each table distributed.

``pg_dist_partition`` holds one row per table Citus manages: ``partmethod`` 'h' (hash, with
the column in ``partkey``) or 'n' (no distribution column: a reference table when
``repmodel`` is 't', a Citus-managed local table otherwise). Tables absent from it are plain
local tables.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from dataclasses import dataclass
from typing import Dict, Iterable, Optional

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - the modules report the missing library
    sql = None


@dataclass(frozen=True)
class Placement:
    """The actual distribution of a table on the target, in the plan's vocabulary.

    ``kind``: 'hash', 'reference', 'local' (not in pg_dist_partition), 'citus_local'
    (managed by Citus without shards: counts as local for the plan), 'append' or 'range'.
    """

    kind: str
    column: Optional[str] = None

    def describe(self) -> str:
        return 'hash(%s)' % self.column if self.kind == 'hash' else self.kind

    def satisfies(self, kind: str, column: Optional[str] = None) -> bool:
        """True when this placement is what the plan wants (kind local/reference/hash)."""
        if kind == 'local':
            return self.kind in ('local', 'citus_local')
        if kind == 'hash':
            return self.kind == 'hash' and self.column == column
        return self.kind == kind


LOCAL = Placement('local')


def citus_version(conn) -> Optional[str]:
    """The citus extension's version in this database, None when it is not created."""
    with conn.cursor() as cur:
        cur.execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'citus'")
        row = cur.fetchone()
    return row[0] if row else None


_PLACEMENTS_SQL = """
SELECT c.relname, p.partmethod, p.repmodel,
       CASE WHEN p.partmethod IN ('h', 'a', 'r')
            THEN column_to_column_name(p.logicalrelid, p.partkey) END
  FROM pg_dist_partition p
  JOIN pg_catalog.pg_class c ON c.oid = p.logicalrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s)
"""

_METHODS = {'h': 'hash', 'a': 'append', 'r': 'range'}


def placements(conn, names: Iterable[str], schema: str = 'public') -> Dict[str, Placement]:
    """Placement of each named table Citus manages (one query); absent names are local.

    Call only when ``citus_version(conn)`` is not None.
    """
    wanted = sorted(set(names))
    if not wanted:
        return {}
    with conn.cursor() as cur:
        cur.execute(_PLACEMENTS_SQL, {'schema': schema, 'names': wanted})
        rows = cur.fetchall()
    result = {}
    for name, method, repmodel, column in rows:
        if method == 'n':
            result[name] = Placement('reference' if repmodel == 't' else 'citus_local')
        else:
            result[name] = Placement(_METHODS.get(method, method), column)
    return result


def distribute_sql(conn, schema: str, table: str, kind: str, column: Optional[str] = None):
    """``SELECT create_distributed_table(...)`` / ``create_reference_table(...)``.

    The regclass argument is the identifier quoted by psycopg2 (``"public"."ucr_x-y"``), passed
    as a literal; the column is passed as a plain name (Citus looks it up verbatim). No
    shard_count argument: Citus uses ``citus.shard_count`` as set on the coordinator.
    """
    regclass = sql.Literal(sql.Identifier(schema, table).as_string(conn))
    if kind == 'hash':
        return sql.SQL('SELECT create_distributed_table({}, {})').format(
            regclass, sql.Literal(column))
    if kind == 'reference':
        return sql.SQL('SELECT create_reference_table({})').format(regclass)
    raise ValueError('no distribution call for kind %r' % kind)
