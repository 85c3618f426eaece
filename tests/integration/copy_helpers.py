"""Shared pieces for the copy-engine tests: nasty data, old-style manifests, the CLI."""

import os
import sqlite3
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, 'bin', 'migrate_tables')

OLD_TOOL_SCHEMA = ('CREATE TABLE tables (id integer primary key, source_table text not null, '
                   'date text, target_table text, migrated integer, errored integer)')

WEIRD = 'we"ird-table; drop'
# Tables whose rows contain their own names, tabs, newlines, backslashes, NULLs, unicode,
# jsonb, arrays, numeric and timestamptz. No primary keys: duplicates would show.
COLUMNS = ('id int, label text, note text, doc jsonb, tags text[], nums int[], '
           'amount numeric(20,6), at timestamptz, raw bytea')


def _fill(table: str, n: int, month: str = '2020-01-01') -> str:
    lit = table.replace("'", "''")
    return ("INSERT INTO \"{t}\" (id, label, note, doc, tags, nums, amount, at, raw{mcol}) "
            "SELECT g, '{lit}' || ' row ' || g, "
            "CASE WHEN g % 7 = 0 THEN NULL ELSE E'tab\\there\\nnew line \\\\ back\\\\slash ' "
            "|| 'ünïcødé ✓ ' || '{lit}' END, "
            "jsonb_build_object('t', '{lit}', 'g', g, 'q', E'\"quoted\"\\n'), "
            "ARRAY['{lit}', E'a\\tb', NULL, 'c,d'], ARRAY[g, NULL, -g], "
            "(g * 1234.567891)::numeric(20,6), "
            "timestamptz '2020-01-01 00:00:00+05:30' + g * interval '1 minute', "
            "decode(md5(g::text), 'hex'){mval} FROM generate_series(1, {n}) g"
            ).format(t=table.replace('"', '""'), lit=lit, n=n,
                     mcol=', month' if month else '', mval=", date '%s'" % month if month else '')


def nasty_schema() -> List[str]:
    """DDL for source and target (same on both, but the target drops drop-child children)."""
    w = WEIRD.replace('"', '""')
    return [
        'CREATE TABLE "%s" (%s, month date)' % (w, COLUMNS),
        'CREATE TABLE "child_health_monthly" (%s, month date)' % COLUMNS,
        'CREATE TABLE "agg_awc" (%s, month date)' % COLUMNS,
        'CREATE TABLE "agg_awc_2020-01-01_1" (CHECK (month = DATE \'2020-01-01\')) INHERITS ("agg_awc")',
        'CREATE TABLE "agg_awc_2020-02-01_1" (CHECK (month = DATE \'2020-02-01\')) INHERITS ("agg_awc")',
    ]


SOURCE_ONLY = [
    'CREATE TABLE "child_health_monthly_2020-01-01" (CHECK (month = DATE \'2020-01-01\')) INHERITS ("child_health_monthly")',
    'CREATE TABLE "child_health_monthly_2020-02-01" (CHECK (month = DATE \'2020-02-01\')) INHERITS ("child_health_monthly")',
]

# (source_table, date, target_table) as the old generator wrote them
MANIFEST_ROWS = [
    (WEIRD, None, None),
    ('child_health_monthly', None, None),
    ('child_health_monthly_2020-01-01', '2020-01-01', 'child_health_monthly'),
    ('child_health_monthly_2020-02-01', '2020-02-01', 'child_health_monthly'),
    ('agg_awc', None, None),
    ('agg_awc_2020-01-01_1', '2020-01-01', 'agg_awc_2020-01-01_1'),
    ('agg_awc_2020-02-01_1', '2020-02-01', 'agg_awc_2020-02-01_1'),
]


def load_nasty(dbs, rows: int = 300) -> None:
    for ddl in nasty_schema():
        dbs.src_sql(ddl)
        dbs.tgt_sql(ddl)
    for ddl in SOURCE_ONLY:
        dbs.src_sql(ddl)
    dbs.src_sql(_fill(WEIRD, rows, None))
    dbs.src_sql(_fill('child_health_monthly', 5, None))
    dbs.src_sql(_fill('child_health_monthly_2020-01-01', rows, '2020-01-01'))
    dbs.src_sql(_fill('child_health_monthly_2020-02-01', rows + 11, '2020-02-01'))
    dbs.src_sql(_fill('agg_awc', 3, None))
    dbs.src_sql(_fill('agg_awc_2020-01-01_1', rows, '2020-01-01'))
    dbs.src_sql(_fill('agg_awc_2020-02-01_1', rows + 7, '2020-02-01'))
    dbs.src_sql('ANALYZE')


def make_old_manifest(path: str, rows: Sequence[Tuple[str, Optional[str], Optional[str]]]) -> str:
    """A manifest file with exactly the old tool's schema and nothing else."""
    conn = sqlite3.connect(path)
    conn.execute(OLD_TOOL_SCHEMA)
    conn.executemany('INSERT INTO tables (source_table, date, target_table) VALUES (?, ?, ?)', rows)
    conn.commit()
    conn.close()
    return path


def manifest_flags(path: str) -> Dict[str, Tuple[Optional[int], Optional[int]]]:
    conn = sqlite3.connect(path)
    out = {r[0]: (r[1], r[2]) for r in conn.execute('SELECT source_table, migrated, errored FROM tables')}
    conn.close()
    return out


def last_error(path: str, table: str) -> Optional[Tuple[Optional[str], Optional[str]]]:
    """(last error message, SQLSTATE) the manifest records for ``table``."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute('SELECT f.last_error, f.last_sqlstate FROM tables t JOIN table_facts f '
                            'ON f.table_id = t.id WHERE t.source_table = ?', (table,)).fetchone()
    finally:
        conn.close()


def fingerprint(sql_fn, table: str, where: str = '', columns: str = '') -> str:
    """count and md5 of the rows in a stable order: equal fingerprints mean equal rows.
    ``columns``: only these columns (a target with extra columns against its source)."""
    t = '"%s"' % table.replace('"', '""')
    rows = '(SELECT %s FROM ONLY %s) x' % (columns, t) if columns else 'ONLY %s x' % t
    return sql_fn("SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') "
                  "FROM %s %s" % (rows, where)).strip()


def union_fingerprint(sql_fn, tables: Sequence[str]) -> str:
    parts = ' UNION ALL '.join('SELECT * FROM ONLY "%s"' % t.replace('"', '""') for t in tables)
    return sql_fn("SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') "
                  "FROM (%s) x" % parts).strip()


def cli_conn_args(dbs) -> List[str]:
    return ['-D', dbs.source_db, '-O', '127.0.0.1', '-U', 'postgres', '--source-port', str(dbs.source_server.port),
            '-d', dbs.target_db, '-o', '127.0.0.1', '-u', 'postgres', '--target-port', str(dbs.target_server.port)]


def run_cli(args: List[str], env: Optional[Dict[str, str]] = None, stdin: Optional[str] = None,
            timeout: float = 300, background: bool = False):
    full_env = dict(os.environ)
    full_env.update(env or {})
    cmd = [sys.executable, CLI] + args
    if background:
        return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True)
    return subprocess.run(cmd, env=full_env, input=stdin, capture_output=True, text=True,
                          timeout=timeout)
