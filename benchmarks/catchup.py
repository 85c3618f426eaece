"""Catch-up benchmarks (issue 12), run by benchmarks/run.py (section ``catchup``).

On the ICDS-shaped dataset already built by run.py: copy everything with the engine (the
reference time), then (untimed, ``--settle``, the default) VACUUM ANALYZE the copied target
tables, as autovacuum does within its naptime of a table's copy (at ICDS's size a catch-up
runs hours or days after most tables were copied; here it would start seconds after the copy
and either compete with that autovacuum or pay the first reads' hint bits), then

1. a catch-up with no drift (``migrate --recopy-drifted``): its time against the copy time,
   and that it wrote nothing (no repair, no re-copy, the target's row versions unchanged);
2. on the source, change 0.1% and delete 0.05% of the rows of every table (random rows:
   ``TABLESAMPLE BERNOULLI``, so the drift is spread over every segment), then a catch-up: its
   time against the copy time, and every target table equal to the source afterwards;
3. the comparison alone on the biggest table (one scope of ``segment_checksum``): rows/s.
"""

import json
import os
import subprocess
import sys
import time
from typing import Dict, List, Sequence

from psycopg2 import sql

from ansible_collections.icds.citus_migration.plugins.module_utils.copy.key_ranges import usable_keys
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.source_stats import table_estimates
from ansible_collections.icds.citus_migration.plugins.module_utils.copy import ledger
from ansible_collections.icds.citus_migration.plugins.module_utils.validate import changed_rows
from ansible_collections.icds.citus_migration.plugins.module_utils.validate import segment_checksum as sc

CHANGE_PERCENT = 0.1
DELETE_PERCENT = 0.05
_TEXT = ('text', 'character varying')
_NUMBER = ('integer', 'bigint', 'smallint', 'numeric')


def q(conn, text, args=None):
    """Rows of one statement (None when it returns none), committed."""
    with conn.cursor() as cur:
        cur.execute(text, args)
        rows = cur.fetchall() if cur.description else None
    conn.commit()
    return rows


def _change_column(conn, table: str):
    """A column to change that is in no primary key or unique index: text (append) or number (+1)."""
    rows = q(conn, """
        SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
          AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = a.attrelid
                          AND i.indisunique AND a.attnum = ANY(i.indkey::int2[]))
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = a.attrelid
                          AND c.contype = 'c' AND a.attnum = ANY(c.conkey))
          AND NOT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_inherits h ON h.inhparent = p.partrelid
                          WHERE h.inhrelid = a.attrelid AND a.attnum = ANY(p.partattrs::int2[]))
        ORDER BY a.attnum""", (sql.Identifier(table).as_string(conn),))
    for name, typ in rows:
        if typ in _TEXT:
            return sql.SQL("{c} = COALESCE({c}, '') || ' drift'").format(c=sql.Identifier(name))
    for name, typ in rows:
        if typ in _NUMBER:
            return sql.SQL('{c} = COALESCE({c}, 0) + 1').format(c=sql.Identifier(name))
    return None


def drift_source(conn, tables: Sequence[str]) -> Dict[str, int]:
    """Change CHANGE_PERCENT and delete DELETE_PERCENT of the rows of every table."""
    changed = deleted = 0
    for table in tables:
        rel = sql.SQL('ONLY {}').format(sql.Identifier(table))
        setter = _change_column(conn, table)
        if setter is not None:
            with conn.cursor() as cur:
                cur.execute(sql.SQL('UPDATE {rel} SET {s} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {rel} '
                                    'TABLESAMPLE BERNOULLI ({p})))').format(
                    rel=rel, s=setter, p=sql.Literal(CHANGE_PERCENT)))
                changed += cur.rowcount
        with conn.cursor() as cur:
            cur.execute(sql.SQL('DELETE FROM {rel} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {rel} '
                                'TABLESAMPLE BERNOULLI ({p})))').format(
                rel=rel, p=sql.Literal(DELETE_PERCENT)))
            deleted += cur.rowcount
        conn.commit()
    return {'rows_changed': changed, 'rows_deleted': deleted}


def _catch_up(cli: str, conn_args: List[str], manifest: str, parallel: int) -> Dict:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, cli, 'migrate', '--yes', '--recopy-drifted', '--json',
                          '--parallel', str(parallel), '--progress-interval', '3600'] + conn_args + [manifest],
                         capture_output=True, text=True)
    took = time.monotonic() - t0
    if res.returncode != 0:
        raise RuntimeError('catch-up failed: %s %s' % (res.stdout[-800:], res.stderr[-800:]))
    out = json.loads(res.stdout[res.stdout.index('{'):res.stdout.rindex('}') + 1])
    out['seconds'] = took
    return out


def _summary(out: Dict) -> Dict:
    tables = out['tables']
    return {'seconds': out['seconds'], 'repaired_tables': out['repaired'],
            'recopied_tables': out['recopied'], 'errored': out['errored'],
            'rows_repaired': out['rows_repaired'],
            'segments': sum(t.get('segments') or 0 for t in tables),
            'differing_ranges': sum(t.get('ranges_differing') or 0 for t in tables),
            'keyless_tables': sum(1 for t in tables if t.get('status') != 'skipped' and not t.get('key'))}


def compare_big_table(src, tgt, table: str, target: str) -> Dict:
    """The comparison alone (segments planned, one grouped scan per side) of one table."""
    with src.cursor() as cur:
        key = usable_keys(cur, 'public', [table]).get(table)
        cur.execute(sql.SQL('SELECT * FROM ONLY {} LIMIT 0').format(sql.Identifier(table)))
        columns = [d[0] for d in cur.description]
    src.rollback()
    if key is None:
        return {'table': table, 'error': 'no usable key'}
    rows, nbytes = table_estimates(src, [table]).get(table, (0, 0))
    scope = sc.Scope(table, target, 'slice' if table != target else 'table', table == target, None,
                     columns, key.column, key.type_name, key.columns, key.types)
    if table != target:  # a drop-child child: its slice of the parent, by its CHECK
        from ansible_collections.icds.citus_migration.plugins.module_utils.copy.recopy import slice_predicates
        scope.predicate = slice_predicates(src, 'public', [table])[table]
    citus = bool(q(tgt, "SELECT 1 FROM pg_extension WHERE extname = 'citus'"))
    side_src, side_tgt = sc.Side(src, 'public', 'source'), sc.Side(tgt, 'public', 'target', citus)
    t0 = time.monotonic()
    bounds = sc.planned_bounds(side_src, scope, rows, nbytes // 8192)
    scope.fine = sc.fine_buckets(rows, len(bounds) + 1)
    scope.hash_mode = 'record'  # as the catch-up hashes it (PostgreSQL 14+, hashable types)
    drift = sc.Comparer(side_src, side_tgt, scope).segments(bounds)
    took = time.monotonic() - t0
    out = {'table': table, 'rows': drift.source_rows, 'heap_mb': nbytes / 1e6, 'segments': drift.segments,
           'seconds': took, 'rows_per_s': drift.source_rows / took if took else None,
           'differing_segments': drift.differing_segments}
    # the same table by changes since its copy (what --recopy-drifted runs), when the ledger
    # recorded the copy's snapshot
    with tgt.cursor() as cur:
        since = ledger.source_xmins(cur, ledger.DEFAULT_LEDGER_SCHEMA, _source_id(tgt), [table]).get(table)
    tgt.rollback()
    if since is not None:
        # as the catch-up sizes them: one segment of key-hash buckets (copy.catchup._bounds)
        scope.fine = changed_rows.changes_fine(rows)
        t0 = time.monotonic()
        by_changes = changed_rows.compare_by_changes(side_src, side_tgt, scope, since, sc.both)
        took = time.monotonic() - t0
        out.update(changes_seconds=took, changes_rows_per_s=by_changes.source_rows / took if took else None)
    return out


def _source_id(tgt) -> str:
    """The source id the ledger rows of the copy carry (one source in the benchmark)."""
    return q(tgt, 'SELECT DISTINCT source_id FROM %s.copy_ledger' % ledger.DEFAULT_LEDGER_SCHEMA)[0][0]


def vacuum_targets(env, tdb: str, tables: Sequence[str]) -> None:
    """VACUUM ANALYZE these target tables (Citus runs it on their shards too)."""
    conn = env.conn('target', tdb)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql.SQL('VACUUM ANALYZE {}').format(
                sql.SQL(', ').join(sql.Identifier('public', t) for t in tables)))
    finally:
        conn.close()


def catchup_benchmarks(env, db: str, tdb: str, ds: Dict, work: str, parallel: int,
                       cli: str, method_engine, verify, expected_for, log, settle: bool = True) -> Dict:
    """Copy, catch-up without drift, drift, catch-up with drift, the big table's comparison."""
    manifest = os.path.join(work, 'run-manifest.db')
    t0 = time.monotonic()
    out = method_engine(env, db, tdb, ds['manifest'], parallel, work)
    copy_s = time.monotonic() - t0
    if out['errors']:
        raise RuntimeError('copy failed: %s' % out['errors'])
    log('catch-up bench: copy %.2fs' % copy_s)
    if settle:
        t0 = time.monotonic()
        vacuum_targets(env, tdb, sorted({t for _s, t in ds['rows']}))
        log('catch-up bench: target tables vacuumed (untimed) in %.1fs' % (time.monotonic() - t0))
    conn_args = ['-D', db, '-O', '127.0.0.1', '-U', 'postgres', '--source-port', str(env.source.port),
                 '-d', tdb, '-o', '127.0.0.1', '-u', 'postgres', '--target-port', str(env.target.port)]
    no_drift = _summary(_catch_up(cli, conn_args, manifest, parallel))
    log('catch-up bench: no drift %.2fs (%s)' % (no_drift['seconds'], no_drift))
    src = env.conn('source', db)
    leaves = sorted({s for s, _ in ds['rows']} - {r[0] for r in q(
        src, "SELECT relname FROM pg_class WHERE relkind = 'p'")})
    drifted = drift_source(src, leaves)
    q(src, 'ANALYZE')
    expected = expected_for(env, db, ds['rows'])
    with_drift = _summary(_catch_up(cli, conn_args, manifest, parallel))
    with_drift.update(drifted)
    with_drift['verification'] = verify(env, tdb, expected)
    log('catch-up bench: 0.1%% drift %.2fs (%s)' % (with_drift['seconds'], with_drift))
    tgt = env.conn('target', tdb)
    try:
        big = compare_big_table(src, tgt, ds['big_table'], dict(ds['rows'])[ds['big_table']])
    finally:
        src.close()
        tgt.close()
    log('catch-up bench: comparison of %s: %s' % (ds['big_table'], big))
    return {'copy_s': copy_s, 'no_drift': no_drift, 'drift': with_drift, 'big_table': big,
            'parallel': parallel, 'settled': settle,
            'no_drift_ratio': no_drift['seconds'] / copy_s, 'drift_ratio': with_drift['seconds'] / copy_s}


def markdown(c: Dict) -> List[str]:
    settled = ('target tables vacuumed after the copy (untimed)' if c.get('settled')
               else 'catch-ups right after the copy (--no-settle)')
    lines = ['### Catch-up (issue 12), --parallel %d, %s' % (c['parallel'], settled), '',
             '| step | seconds | ratio to the copy | segments | differing ranges | rows repaired | tables repaired / re-copied | verified |',
             '|---|---|---|---|---|---|---|---|',
             '| copy (engine) | %.2f | 1.00 | | | | | |' % c['copy_s']]
    for label, r in (('catch-up, no drift', c['no_drift']),
                     ('catch-up after %d changed + %d deleted rows' % (c['drift'].get('rows_changed', 0),
                                                                      c['drift'].get('rows_deleted', 0)), c['drift'])):
        ver = r.get('verification')
        lines.append('| %s | %.2f | %.2f | %d | %d | %d | %d / %d | %s |' % (
            label, r['seconds'], r['seconds'] / c['copy_s'], r['segments'], r['differing_ranges'],
            r['rows_repaired'], r['repaired_tables'], r['recopied_tables'],
            '-' if ver is None else ('yes' if ver['ok'] else 'NO')))
    b = c['big_table']
    if 'error' not in b:
        lines += ['', 'Comparison alone of %s (%d rows, %.0f MB heap, %d segments): every row %.2f s, %.0f rows/s'
                  % (b['table'], b['rows'], b['heap_mb'], b['segments'], b['seconds'], b['rows_per_s'])
                  + ('; by changes since the copy %.2f s, %.0f rows/s.' % (b['changes_seconds'], b['changes_rows_per_s'])
                     if b.get('changes_seconds') else '.')]
    lines.append('')
    return lines


def bars(c: Dict) -> List:
    ver = c['drift'].get('verification') or {}
    nd = c['no_drift']
    return [
        ('catch-up after 0.1%% change + 0.05%% delete <= 0.30 x copy, target equal to the source',
         '%.2f / %.2f = %.2f, verified %s' % (c['drift']['seconds'], c['copy_s'], c['drift_ratio'], ver.get('ok')),
         c['drift_ratio'] <= 0.30 and bool(ver.get('ok'))),
        ('catch-up without drift <= 0.25 x copy and writes nothing',
         '%.2f / %.2f = %.2f, %d rows repaired, %d re-copied' % (nd['seconds'], c['copy_s'], c['no_drift_ratio'],
                                                                 nd['rows_repaired'], nd['recopied_tables']),
         c['no_drift_ratio'] <= 0.25 and nd['rows_repaired'] == 0 and nd['recopied_tables'] == 0),
    ]
