#!/usr/bin/env python3
"""An oracle of the copy that shares no code with the engine or compare_tables: every target
table of a manifest holds exactly the rows of the source tables the manifest copies into it,
judged by count and md5 of the rows' text in a stable order, each side rendered by its own
server (FROM ONLY: a child's rows are its own, as the copy sees them).

As a script (molecule's verify): one JSON object on stdin, so no password reaches a process
list, ``{"manifest": path, "source": conn, "target": conn}`` where conn holds login_host,
login_port, login_db, login_user, login_password, ssl_mode (the collection's option names);
prints ``{"tables": n, "rows": n, "mismatches": [...]}`` and exits 1 on any mismatch (a
mismatching table is read again up to ``"rechecks"``, default 3, times first: see check).
"""

import json
import sqlite3
import sys
import time
from typing import Dict, List, Tuple

import psycopg2
from psycopg2 import sql

FINGERPRINT = sql.SQL("SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') "
                      "FROM ({}) x")


def fingerprint(conn, tables: List[str]) -> str:
    """'count:md5' of the rows of ``tables`` (public schema) together."""
    rows = sql.SQL(' UNION ALL ').join(sql.SQL('SELECT * FROM ONLY {}').format(sql.Identifier(t))
                                       for t in tables)
    with conn.cursor() as cur:
        cur.execute(FINGERPRINT.format(rows))
        out = cur.fetchone()[0]
    conn.rollback()
    return out


def rows_by_target(manifest: str) -> Dict[str, List[str]]:
    """Target table -> the source tables the manifest copies into it (the old tool's columns)."""
    conn = sqlite3.connect('file:%s?mode=ro' % manifest, uri=True)
    try:
        pairs = conn.execute('SELECT source_table, target_table FROM tables').fetchall()
    finally:
        conn.close()
    out: Dict[str, List[str]] = {}
    for source, target in pairs:
        out.setdefault(target or source, []).append(source)
    return out


def check(src_conn, tgt_conn, manifest: str, rechecks: int = 0,
          pause_s: float = 0.5) -> Tuple[int, int, List[dict]]:
    """(source tables checked, rows checked, mismatches) over the whole manifest.

    ``rechecks``: read a mismatching table again up to this many times, ``pause_s`` apart,
    before calling it a mismatch. For a live system (the demo's application writes each new
    row to the source, then to the target, a few ms apart) where a read can fall in between;
    a table copied wrong stays wrong."""
    tables = rows = 0
    mismatches = []
    for target, sources in sorted(rows_by_target(manifest).items()):
        expected = fingerprint(src_conn, sources)
        found = fingerprint(tgt_conn, [target])
        for dummy in range(rechecks):
            if found == expected:
                break
            time.sleep(pause_s)
            expected = fingerprint(src_conn, sources)
            found = fingerprint(tgt_conn, [target])
        if found != expected:
            mismatches.append({'target_table': target, 'source_tables': sources,
                               'source': expected, 'target': found})
        tables += len(sources)
        rows += int(expected.split(':', 1)[0])
    return tables, rows, mismatches


def libpq_kwargs(conn: dict) -> dict:
    """The collection's connection options as psycopg2 keywords (unset ones left out)."""
    names = {'login_host': 'host', 'login_port': 'port', 'login_db': 'dbname',
             'login_user': 'user', 'login_password': 'password', 'ssl_mode': 'sslmode'}
    return {names[k]: v for k, v in conn.items() if k in names and v not in (None, '')}


def main() -> int:
    args = json.load(sys.stdin)
    src = psycopg2.connect(**libpq_kwargs(args['source']))
    tgt = psycopg2.connect(**libpq_kwargs(args['target']))
    try:
        tables, rows, mismatches = check(src, tgt, args['manifest'], rechecks=args.get('rechecks', 3))
    finally:
        src.close()
        tgt.close()
    print(json.dumps({'tables': tables, 'rows': rows, 'mismatches': mismatches}))
    return 1 if mismatches or not tables else 0


if __name__ == '__main__':
    sys.exit(main())
