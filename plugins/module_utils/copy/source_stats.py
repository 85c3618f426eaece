# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Row estimates and sizes of source tables, for progress and the status report."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from typing import Dict, Iterable, Tuple

_SQL = """
SELECT c.relname,
       GREATEST(COALESCE(s.n_live_tup, 0), c.reltuples::bigint, 0)::bigint,
       pg_relation_size(c.oid)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_stat_user_tables s ON s.relid = c.oid
WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')
"""


def table_estimates(conn, tables: Iterable[str], schema: str = 'public') -> Dict[str, Tuple[int, int]]:
    """name -> (estimated rows, bytes on disk), one query for any number of tables."""
    names = list(set(tables))
    if not names:
        return {}
    with conn.cursor() as cur:
        cur.execute(_SQL, (schema, names))
        out = {r[0]: (int(r[1]), int(r[2])) for r in cur.fetchall()}
    conn.rollback()
    return out
