#!/usr/bin/env python3
"""`make bench`: time the copy engine against the raw COPY limit, the old pg_dump | sed | psql
method and pgcopydb, on the same ICDS-shaped data and machine; then the scale benchmarks.

Everything runs against throwaway servers (tools/testkit/pg_cluster.py): a source PostgreSQL
and a target that is a Citus cluster (coordinator + 2 workers) when citus is installed, else a
plain PostgreSQL. Every method's target is verified against the source (per table: row count
and an order-independent checksum of the rows' text), every figure is the median of --runs
runs with min and max. Results: benchmarks/results/<timestamp>.json, .md and .png.

    .venv/bin/python benchmarks/run.py [--size-mb 300] [--parallel 2] [--runs 3]
        [--target citus|plain] [--engine-parallel 1,2,4] [--scale-sizes 1000,10000,50000]
        [--skip-copy] [--skip-scale] [--keep]
"""

import argparse
import compileall
import datetime
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV = os.path.join(ROOT, '.cache', 'dev_collections')
sys.path.insert(0, ROOT)
os.makedirs(os.path.join(DEV, 'ansible_collections', 'icds'), exist_ok=True)
if not os.path.islink(os.path.join(DEV, 'ansible_collections', 'icds', 'citus_migration')):
    os.symlink(ROOT, os.path.join(DEV, 'ansible_collections', 'icds', 'citus_migration'))
sys.path.insert(0, DEV)

import psycopg2  # noqa: E402
from psycopg2 import sql  # noqa: E402

from tools.testkit.pg_cluster import CitusCluster, PgServer, citus_available  # noqa: E402
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.bootstrap import (  # noqa: E402
    apply_bootstrap, plan_bootstrap)
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.child_tables import (  # noqa: E402
    apply_children, plan_children)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import Manifest  # noqa: E402
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.generator import (  # noqa: E402
    plan_manifest, write_manifest)
from tools.testkit.synthetic_dataset import (  # noqa: E402
    create_dataset, create_many_children)
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_plan import load_plan  # noqa: E402
from benchmarks import catchup as catchup_bench  # noqa: E402
from benchmarks.catchup import q  # noqa: E402

CLI = os.path.join(ROOT, 'bin', 'migrate_tables')
UCR_FOLDER = os.path.join(ROOT, 'tests', 'fixtures', 'ucr_data_sources')
RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
PSQL = None  # set from the server's bindir
PG_DUMP = None
BIG_PARENT = 'child_health_monthly'
LEDGER_SCHEMA = 'icds_citus_migration'
SCALE_RUNS = 3  # scale figures: median of this many runs
SESSION_LIMIT = 'limit, persistent sessions: psql \\copy via FIFO, %d streams'


def log(msg: str) -> None:
    print('[bench %s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)


def ident(name: str) -> str:
    return '"%s"' % name.replace('"', '""')


# -- processes with their peak RSS ---------------------------------------------------------
class Proc:
    """A process run under GNU time for its peak RSS. (ru_maxrss of a child forked straight
    from this Python would include this interpreter's pages from before the exec.)"""

    def __init__(self, cmd: List[str], **kw):
        self.cmd = cmd
        fd, self.rss_file = tempfile.mkstemp(prefix='rss-')
        os.close(fd)
        self.popen = subprocess.Popen(['/usr/bin/time', '-f', '%M', '-o', self.rss_file] + cmd, **kw)
        self.maxrss_kb = 0
        self.returncode = None

    def wait(self) -> int:
        self.returncode = self.popen.wait()
        try:
            with open(self.rss_file) as handle:
                nums = [int(x) for x in handle.read().split() if x.isdigit()]
            self.maxrss_kb = nums[-1] if nums else 0
        finally:
            os.remove(self.rss_file)
        return self.returncode


def pipeline(cmds: List[List[str]], env: Optional[dict] = None) -> Tuple[int, int, str]:
    """Run cmd1 | cmd2 | ...; returns (worst return code, max RSS kB of one process, stderr)."""
    procs: List[Proc] = []
    prev = None
    errfile = tempfile.TemporaryFile()
    for i, cmd in enumerate(cmds):
        last = i == len(cmds) - 1
        p = Proc(cmd, stdin=prev, stdout=subprocess.DEVNULL if last else subprocess.PIPE,
                 stderr=errfile, env=env)
        if prev is not None:
            prev.close()
        prev = None if last else p.popen.stdout
        procs.append(p)
    codes = [p.wait() for p in procs]
    errfile.seek(0)
    err = errfile.read().decode('utf-8', 'replace')
    errfile.close()
    return max(codes, key=abs), max(p.maxrss_kb for p in procs), err


# -- environment ------------------------------------------------------------------------------
class Env:
    def __init__(self, target_kind: str):
        self.source = PgServer('bench-src').init().start()
        self.cluster = None
        if target_kind == 'citus':
            self.cluster = CitusCluster(workers=2).start()
            self.target = self.cluster.coordinator
        else:
            self.target = PgServer('bench-tgt').init().start()
        self.target_kind = target_kind
        global PSQL, PG_DUMP
        PSQL = os.path.join(self.source.bindir, 'psql')
        PG_DUMP = os.path.join(self.source.bindir, 'pg_dump')

    def create_dbs(self, src_db: str, tgt_db: str) -> None:
        self.source.psql('CREATE DATABASE %s' % ident(src_db))
        if self.cluster is not None:
            self.cluster.create_database(tgt_db)
        else:
            self.target.psql('CREATE DATABASE %s' % ident(tgt_db))

    def conn(self, side: str, db: str):
        server = self.source if side == 'source' else self.target
        return psycopg2.connect(host='127.0.0.1', port=server.port, user='postgres', dbname=db)

    def destroy(self) -> None:
        self.source.destroy()
        if self.cluster is not None:
            self.cluster.destroy()
        else:
            self.target.destroy()


# -- dataset ----------------------------------------------------------------------------------
def _columns(conn, table: str) -> List[Tuple[str, str]]:
    return [(r[0], r[1]) for r in q(conn, """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum""", (ident(table),))]


def _pk_text_column(conn, table: str) -> Optional[str]:
    rows = q(conn, """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_constraint c
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
        WHERE c.conrelid = %s::regclass AND c.contype = 'p'""", (ident(table),))
    if rows is None:
        return None
    if not rows:
        return ''  # no primary key: plain duplicates are allowed
    texts = [r[0] for r in rows if r[1] == 'text' and r[0] != 'supervisor_id']
    return texts[-1] if texts else None


def amplify(conn, table: str, factor: int) -> None:
    """Multiply a table's rows server-side (keeps the nasty values; unique keys get a suffix)."""
    if factor <= 1:
        return
    key = _pk_text_column(conn, table)
    if key is None:
        return
    cols = _columns(conn, table)
    select = sql.SQL(', ').join(
        sql.SQL("{} || '~' || g").format(sql.Identifier(c)) if c == key else sql.Identifier(c)
        for c, _ in cols)
    q(conn, sql.SQL('INSERT INTO {} ({}) SELECT {} FROM ONLY {} CROSS JOIN '
                    'generate_series(1, %s) g').format(
        sql.Identifier(table), sql.SQL(', ').join(sql.Identifier(c) for c, _ in cols), select,
        sql.Identifier(table)), (factor - 1,))


def leaf_sizes(conn) -> Dict[str, int]:
    rows = q(conn, """SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c
                      JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = 'public' AND c.relkind = 'r'""")
    return {r[0]: r[1] for r in rows}


def build_dataset(env: Env, db: str, tdb: str, size_mb: int, big_share: float,
                  work: str) -> Dict[str, object]:
    """Synthetic ICDS dataset (synthetic_dataset.py), amplified server-side to ~size_mb, with
    one drop-child child holding big_share of the data; target bootstrapped the real way."""
    env.create_dbs(db, tdb)
    src = env.conn('source', db)
    t0 = time.time()
    create_dataset(src, months=6, scale=60, states=2, ucr_folder=UCR_FOLDER)
    sizes = leaf_sizes(src)
    base = sum(sizes.values())
    big = '%s_2020-01-01' % BIG_PARENT
    want = size_mb * 1024 * 1024
    rest_factor = max(1, int(round(want * (1 - big_share) / max(1, base - sizes.get(big, 0)))))
    for table, size in sorted(sizes.items()):
        if table != big and size > 0:
            amplify(src, table, rest_factor)
    big_factor = max(1, int(round(want * big_share / max(1, sizes.get(big, 1)))))
    amplify(src, big, big_factor)
    src.autocommit = True
    with src.cursor() as cur:
        cur.execute('VACUUM ANALYZE')
    src.autocommit = False
    log('dataset built in %.0fs (factors: %d, big table %d)' % (time.time() - t0, rest_factor,
                                                                  big_factor))
    # target: bootstrap (create + distribute) and keep-child children, as the runbook does
    plan = load_plan(ucr_folder=UCR_FOLDER)
    tgt = env.conn('target', tdb)
    apply_bootstrap(tgt, plan_bootstrap(src, tgt, plan))
    apply_children(tgt, plan_children(src, tgt, plan))
    manifest = os.path.join(work, 'manifest.db')
    write_manifest(manifest, plan_manifest(src, plan), unclassified='warn')
    with Manifest.open(manifest, readonly=True) as m:
        rows = [(r.source_table, r.target) for r in m.rows()]
    stats = q(src, """SELECT count(*), sum(pg_relation_size(c.oid)) FROM pg_class c
                      JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = 'public' AND c.relkind = 'r'""")[0]
    total_rows = 0
    copy_bytes = 0
    for source_table, _ in rows:
        total_rows += q(src, sql.SQL('SELECT count(*) FROM ONLY {}').format(
            sql.Identifier(source_table)))[0][0]
    src.close()
    tgt.close()
    return {'manifest': manifest, 'rows': rows, 'total_rows': total_rows,
            'heap_bytes': int(stats[1]), 'tables': len(rows), 'big_table': big,
            'copy_bytes': copy_bytes}


# -- verification ------------------------------------------------------------------------------
CHECKSUM = ('SELECT count(*), COALESCE(sum(hashtextextended(t::text, 0)::numeric), 0) '
            'FROM ONLY {} t')


def source_checksums(conn, rows: Sequence[Tuple[str, str]]) -> Dict[str, Tuple[int, int]]:
    """target table -> (rows, checksum) that the target must hold after the copy."""
    out: Dict[str, List[int]] = {}
    for source_table, target in rows:
        n, s = q(conn, sql.SQL(CHECKSUM).format(sql.Identifier(source_table)))[0]
        acc = out.setdefault(target, [0, 0])
        acc[0] += n
        acc[1] += int(s)
    return {k: (v[0], v[1]) for k, v in out.items()}


def target_checksums(conn, targets: Sequence[str]) -> Dict[str, Tuple[int, int]]:
    parents = {r[0] for r in q(conn, """SELECT DISTINCT inhparent::regclass::text FROM pg_inherits""")}
    out = {}
    for target in targets:
        # ONLY where the target table has children (keep-child, local); distributed tables
        # have none and Citus plans them without it
        text = CHECKSUM if ident(target) in parents or target in parents else \
            CHECKSUM.replace('FROM ONLY', 'FROM')
        n, s = q(conn, sql.SQL(text).format(sql.Identifier(target)))[0]
        out[target] = (n, int(s))
    return out


def verify(env: Env, tdb: str, expected: Dict[str, Tuple[int, int]]) -> Dict[str, object]:
    conn = env.conn('target', tdb)
    try:
        got = target_checksums(conn, list(expected))
    finally:
        conn.close()
    bad_rows = [t for t in expected if got[t][0] != expected[t][0]]
    bad_sum = [t for t in expected if got[t][1] != expected[t][1]]
    return {'ok': not bad_rows and not bad_sum, 'tables_with_wrong_row_count': bad_rows,
            'tables_with_wrong_content': bad_sum}


def reset_target(env: Env, tdb: str, targets: Sequence[str]) -> None:
    conn = env.conn('target', tdb)
    try:
        q(conn, sql.SQL('TRUNCATE {}').format(sql.SQL(', ').join(
            sql.Identifier(t) for t in sorted(set(targets)))))
        q(conn, sql.SQL('DROP SCHEMA IF EXISTS {} CASCADE').format(sql.Identifier(LEDGER_SCHEMA)))
    finally:
        conn.close()
    if env.target_kind == 'citus':
        env.target.psql('CHECKPOINT', tdb)


# -- the methods -------------------------------------------------------------------------------
def _conninfo(server: PgServer, db: str) -> List[str]:
    return ['-X', '-q', '-h', '127.0.0.1', '-p', str(server.port), '-U', 'postgres', '-d', db]


def run_parallel(jobs: Sequence[Callable[[], Tuple[int, int, str]]], parallel: int) -> Dict:
    """Run pipeline jobs, `parallel` at a time, in the given order."""
    errors = []
    peak = [0]
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for code, rss, err in pool.map(lambda j: j(), jobs):
            peak[0] = max(peak[0], rss)
            if code != 0:
                errors.append(err.strip()[:300])
    return {'errors': errors, 'peak_rss_kb': peak[0]}


def partitioned_tables(conn) -> set:
    return {r[0] for r in q(conn, "SELECT relname FROM pg_class WHERE relkind = 'p'")}


def column_list(conn, table: str) -> str:
    return ', '.join(ident(c) for c, _ in _columns(conn, table))


def method_limit(env: Env, db: str, tdb: str, jobs: Sequence[Tuple[str, str]],
                 parallel: int, cols: Dict[str, str], partitioned: set = frozenset()) -> Dict:
    """Native psql | psql, binary COPY, one pipe per table (or per ctid range)."""
    def job(src_query: str, target: str):
        def run():
            return pipeline([
                [PSQL] + _conninfo(env.source, db) + ['-c', 'COPY %s TO STDOUT (FORMAT binary)' % src_query],
                [PSQL] + _conninfo(env.target, tdb) + ['-c', 'COPY public.%s (%s) FROM STDIN (FORMAT binary)'
                                                        % (ident(target), cols[target])]])
        return run
    return run_parallel([job(query, target)
                         for query, target in _limit_queries(jobs, cols, partitioned)], parallel)


def _limit_queries(jobs: Sequence[Tuple[str, str, str]], cols: Dict[str, str],
                   partitioned: set) -> List[Tuple[str, str]]:
    """(COPY TO source expression, target table) per job, columns in the target's order."""
    out = []
    for source_table, target, where in jobs:
        if source_table in partitioned:  # holds no rows itself; COPY TO refuses it
            where = where or 'true'
        if where:
            query = '(SELECT %s FROM ONLY public.%s WHERE %s)' % (cols[target], ident(source_table), where)
        else:
            query = 'public.%s (%s)' % (ident(source_table), cols[target])
        out.append((query, target))
    return out


class PsqlSession:
    """One long-lived psql process fed commands on stdin. Each command is followed by an
    ``\echo`` marker, so the caller knows when psql has finished it."""

    MARK = '__icds_bench_done__'

    def __init__(self, conninfo: List[str]):
        self.proc = Proc([PSQL] + conninfo + ['-v', 'ON_ERROR_STOP=1'], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)

    def send(self, command: str) -> None:
        self.proc.popen.stdin.write('%s\n\\echo %s\n' % (command, self.MARK))
        self.proc.popen.stdin.flush()

    def done(self) -> bool:
        """Wait for the marker of the last command; False if psql ended (an error) first."""
        for line in self.proc.popen.stdout:
            if line.strip() == self.MARK:
                return True
        return False

    def close(self, kill: bool = False) -> Tuple[int, int, str]:
        if kill and self.proc.popen.poll() is None:
            self.proc.popen.kill()
        try:
            self.proc.popen.stdin.close()
        except OSError:
            pass
        self.proc.popen.stdout.read()
        err = self.proc.popen.stderr.read()
        return self.proc.wait(), self.proc.maxrss_kb, err


def _both_done(src: PsqlSession, tgt: PsqlSession) -> bool:
    """Wait for both sessions' markers. If one psql fails, the other may sit forever in
    open() of the FIFO, so the first failure kills both."""
    results: List[bool] = []
    first = threading.Event()

    def wait(session: PsqlSession) -> None:
        results.append(session.done())
        first.set()
    waiters = [threading.Thread(target=wait, args=(s,)) for s in (src, tgt)]
    for waiter in waiters:
        waiter.start()
    first.wait()
    if not results[0]:
        for session in (src, tgt):
            if session.proc.popen.poll() is None:
                session.proc.popen.kill()
    for waiter in waiters:
        waiter.join()
    return all(results)


def method_limit_sessions(env: Env, db: str, tdb: str, jobs: Sequence[Tuple[str, str, str]],
                          parallel: int, cols: Dict[str, str], work: str,
                          partitioned: set = frozenset()) -> Dict:
    """The limit without per-table session set-up: per stream one source and one target psql
    session that live for the whole run; each table is a binary ``\copy ... TO`` a FIFO in
    the source session and ``\copy ... FROM`` that FIFO in the target session (the same
    COPY TO STDOUT / FROM STDIN data path as the per-table pipe)."""
    pending = list(_limit_queries(jobs, cols, partitioned))
    lock = threading.Lock()
    errors: List[str] = []
    peak = [0]

    def stream(i: int) -> None:
        fifo = os.path.join(work, 'limit-fifo-%d' % i)
        if os.path.exists(fifo):
            os.remove(fifo)
        os.mkfifo(fifo, 0o600)
        src = PsqlSession(_conninfo(env.source, db))
        tgt = PsqlSession(_conninfo(env.target, tdb))
        failed = False
        try:
            while not failed:
                with lock:
                    if not pending or errors:
                        break
                    query, target = pending.pop(0)
                tgt.send("\\copy public.%s (%s) FROM '%s' WITH (FORMAT binary)"
                         % (ident(target), cols[target], fifo))
                src.send("\\copy %s TO '%s' WITH (FORMAT binary)" % (query, fifo))
                failed = not _both_done(src, tgt)
        finally:
            for session in (tgt, src):
                code, rss, err = session.close(kill=failed)
                with lock:
                    peak[0] = max(peak[0], rss)
                    if code != 0 or failed:
                        errors.append(err.strip()[:300] or 'psql exited with %d' % code)
            os.remove(fifo)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(parallel)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {'errors': errors, 'peak_rss_kb': peak[0]}


def method_old_tool(env: Env, db: str, tdb: str, jobs: Sequence[Tuple[str, str]],
                    parallel: int) -> Dict:
    """pg_dump --data-only -t table | sed rename (drop-child children) | psql --single-transaction."""
    def job(source_table: str, target: str):
        def run():
            cmds = [[PG_DUMP, '--data-only', '-h', '127.0.0.1', '-p', str(env.source.port), '-U',
                     'postgres', '-t', 'public.%s' % ident(source_table), db]]
            if target != source_table:
                cmds.append(['sed', 's/%s/%s/g' % (re.escape(source_table).replace('/', '\\/'),
                                                   target)])
            cmds.append([PSQL] + _conninfo(env.target, tdb) + [
                '--single-transaction', '-v', 'ON_ERROR_STOP=1', '-o', '/dev/null'])
            return pipeline(cmds)
        return run
    return run_parallel([job(s, t) for s, t, _ in jobs], parallel)


def method_pgcopydb(env: Env, db: str, tdb: str, tables: Sequence[str], parallel: int,
                    work: str) -> Dict:
    """pgcopydb copy table-data restricted (filters) to the same-name tables."""
    filters = os.path.join(work, 'pgcopydb-filters.ini')
    with open(filters, 'w') as handle:
        handle.write('[include-only-table]\n')
        for t in tables:
            handle.write('public.%s\n' % ident(t))
    cdir = os.path.join(work, 'pgcopydb')
    shutil.rmtree(cdir, ignore_errors=True)
    src = 'postgres://postgres@127.0.0.1:%d/%s' % (env.source.port, db)
    tgt = 'postgres://postgres@127.0.0.1:%d/%s' % (env.target.port, tdb)
    code, rss, err = pipeline([['pgcopydb', 'copy', 'table-data', '--source', src, '--target',
                                tgt, '--table-jobs', str(parallel), '--dir', cdir,
                                '--filters', filters, '--not-consistent']])
    return {'errors': [err.strip()[-500:]] if code != 0 else [], 'peak_rss_kb': rss}


def engine_cmd(env: Env, db: str, tdb: str, manifest: str, extra: Sequence[str],
               cli: str = CLI) -> List[str]:
    return [sys.executable, cli, 'migrate', '--yes',
            '-D', db, '-O', '127.0.0.1', '-U', 'postgres', '--source-port', str(env.source.port),
            '-d', tdb, '-o', '127.0.0.1', '-u', 'postgres', '--target-port', str(env.target.port),
            '--progress-interval', '3600'] + list(extra) + [manifest]


def method_engine(env: Env, db: str, tdb: str, manifest: str, parallel: int, work: str,
                  extra: Sequence[str] = (), profile: Optional[str] = None, cli: str = CLI) -> Dict:
    run_manifest = os.path.join(work, 'run-manifest.db')
    shutil.copyfile(manifest, run_manifest)
    for suffix in ('-wal', '-shm', '.errors.jsonl'):
        if os.path.exists(run_manifest + suffix):
            os.remove(run_manifest + suffix)
    cmd = engine_cmd(env, db, tdb, run_manifest, ['--parallel', str(parallel)] + list(extra), cli)
    if profile:
        cmd = [os.path.join(os.path.dirname(sys.executable), 'py-spy'), 'record', '--rate', '200',
               '--subprocesses', '--format', 'raw', '-o', profile, '--'] + cmd
    code, rss, err = pipeline([cmd])
    return {'errors': [err.strip()[-500:]] if code != 0 else [], 'peak_rss_kb': rss}


# -- timing -------------------------------------------------------------------------------------
def timed(name: str, runs: int, env: Env, tdb: str, targets: Sequence[str],
          expected: Dict[str, Tuple[int, int]], fn: Callable[[], Dict], rows: int, nbytes: int,
          expect_corruption: bool = False) -> Dict:
    secs, rss, checks, errors = [], [], [], []
    for i in range(runs):
        reset_target(env, tdb, targets)
        t0 = time.monotonic()
        out = fn()
        secs.append(time.monotonic() - t0)
        rss.append(out['peak_rss_kb'])
        errors.extend(out['errors'])
        checks.append(verify(env, tdb, expected))
        log('%s run %d: %.2fs, rss %.0f MB, verified %s%s' % (
            name, i + 1, secs[-1], rss[-1] / 1024.0, checks[-1]['ok'],
            ', errors: %s' % out['errors'][:1] if out['errors'] else ''))
    med = statistics.median(secs)
    return {'method': name, 'seconds': med, 'min': min(secs), 'max': max(secs), 'runs': secs,
            'rows_per_s': rows / med, 'mb_per_s': nbytes / med / 1e6,
            'peak_rss_mb': max(rss) / 1024.0, 'verified': all(c['ok'] for c in checks),
            'verification': checks[-1], 'errors': errors[:3]}


def timed_alternating(entries: Sequence[Tuple[str, Callable[[], Dict]]], runs: int, env: Env,
                      tdb: str, targets: Sequence[str], expected: Dict[str, Tuple[int, int]],
                      rows: int, nbytes: int) -> List[Dict]:
    """As ``timed`` for several methods whose ratio matters, their runs taking turns
    (A B A B ...): on a shared machine, load that comes and goes hits both alike."""
    per: Dict[str, Dict[str, list]] = {name: {'secs': [], 'rss': [], 'checks': [], 'errors': []}
                                       for name, dummy in entries}
    for i in range(runs):
        for name, fn in entries:
            acc = per[name]
            reset_target(env, tdb, targets)
            t0 = time.monotonic()
            out = fn()
            acc['secs'].append(time.monotonic() - t0)
            acc['rss'].append(out['peak_rss_kb'])
            acc['errors'].extend(out['errors'])
            acc['checks'].append(verify(env, tdb, expected))
            log('%s run %d: %.2fs, rss %.0f MB, verified %s%s' % (
                name, i + 1, acc['secs'][-1], acc['rss'][-1] / 1024.0, acc['checks'][-1]['ok'],
                ', errors: %s' % out['errors'][:1] if out['errors'] else ''))
    results = []
    for name, dummy in entries:
        acc = per[name]
        med = statistics.median(acc['secs'])
        results.append({'method': name, 'seconds': med, 'min': min(acc['secs']),
                        'max': max(acc['secs']), 'runs': acc['secs'], 'rows_per_s': rows / med,
                        'mb_per_s': nbytes / med / 1e6, 'peak_rss_mb': max(acc['rss']) / 1024.0,
                        'verified': all(c['ok'] for c in acc['checks']),
                        'verification': acc['checks'][-1], 'errors': acc['errors'][:3]})
    return results


def corrupted_rows(env: Env, db: str, jobs: Sequence[Tuple[str, str, str]]) -> Tuple[int, int]:
    """Rows the old sed rename rewrites: rows of a drop-child child containing its name."""
    conn = env.conn('source', db)
    rows = tables = 0
    try:
        for source_table, target, _ in jobs:
            if source_table == target:
                continue
            n = q(conn, sql.SQL('SELECT count(*) FROM ONLY {} t WHERE strpos(t::text, %s) > 0')
                  .format(sql.Identifier(source_table)), (source_table,))[0][0]
            rows += n
            tables += 1 if n else 0
    finally:
        conn.close()
    return rows, tables


def copy_benchmarks(env: Env, args, work: str) -> Dict:
    sections = set(args.sections.split(','))
    if not sections & {'all', 'limit', 'old', 'engine', 'pgcopydb', 'single', 'profile', 'catchup'} and not args.profile:
        # only the key-split cases: no ICDS dataset needed
        return {'all_tables': [], 'pgcopydb_subset': [], 'single_table': [],
                'split_table': split_benchmarks(env, args, work) if 'split' in sections else [],
                'profile': None}
    db, tdb = 'icds_bench', 'icds_bench_target'
    ds = build_dataset(env, db, tdb, args.size_mb, args.big_share, work)
    rows = ds['rows']
    targets = sorted({t for _, t in rows})
    src = env.conn('source', db)
    expected = source_checksums(src, rows)
    cols = {t: column_list(src, s) for s, t in rows}
    parts = partitioned_tables(src)
    heap = ds['heap_bytes']
    src.close()
    jobs = [(s, t, '') for s, t in rows]
    log('dataset: %d manifest rows, %d rows, %.0f MB heap; target %s' % (
        len(rows), ds['total_rows'], heap / 1e6, env.target_kind))
    results = []
    P = args.parallel
    sections = set(args.sections.split(','))
    if sections & {'all', 'limit', 'old', 'engine'}:
        _all_tables(env, args, work, db, tdb, ds, jobs, targets, expected, cols, parts, heap, results)
    subset = []
    if 'pgcopydb' in sections:
        subset = _pgcopydb_subset(env, args, work, db, tdb, rows, targets, expected, cols, parts)
    single = _single_table(env, args, work, db, tdb, ds, targets, cols) if 'single' in sections else []
    split = split_benchmarks(env, args, work) if 'split' in sections else []
    caught = None
    if 'catchup' in sections:  # last: it changes the source
        reset_target(env, tdb, targets)
        caught = catchup_bench.catchup_benchmarks(env, db, tdb, ds, work, P, CLI, method_engine, verify,
                                                  expected_for, log, settle=args.settle)
    profile = None
    if args.profile:
        profile = os.path.join(work, 'engine-profile.txt')
        reset_target(env, tdb, targets)
        method_engine(env, db, tdb, ds['manifest'], P, work, profile=profile)
        shutil.copyfile(profile, os.path.join(RESULTS, 'profile-%s.txt' % args.stamp))
    return {'dataset': {k: v for k, v in ds.items() if k not in ('rows', 'manifest')},
            'all_tables': results, 'pgcopydb_subset': subset,
            'pgcopydb_subset_tables': sum(1 for s, t in rows if s == t),
            'pgcopydb_cannot_express': sorted(
                '%s -> %s' % (s, t) for s, t in rows if s != t)[:5] + [
                '... %d drop-child children in all (child copied into its parent)'
                % sum(1 for s, t in rows if s != t)],
            'single_table': single, 'split_table': split, 'catchup': caught, 'profile': profile}


def _all_tables(env, args, work, db, tdb, ds, jobs, targets, expected, cols, parts, heap, results):
    P, R, total = args.parallel, args.runs, ds['total_rows']
    sections = set(args.sections.split(','))
    if sections & {'all', 'limit'}:
        results.append(timed('limit: psql | psql binary COPY, %d streams' % P, R, env, tdb,
                             targets, expected,
                             lambda: method_limit(env, db, tdb, jobs, P, cols, parts), total, heap))
        results.append(timed(SESSION_LIMIT % P, R, env, tdb, targets, expected,
                             lambda: method_limit_sessions(env, db, tdb, jobs, P, cols, work, parts),
                             total, heap))
    if sections & {'all', 'old'}:
        _old(env, args, db, tdb, jobs, targets, expected, total, heap, results)
    if sections & {'all', 'engine'}:
        for n in args.engine_parallel:
            engine = ('engine: migrate_tables --parallel %d' % n,
                      lambda n=n: method_engine(env, db, tdb, ds['manifest'], n, work))
            if not args.baseline:
                results.append(timed(engine[0], R, env, tdb, targets, expected, engine[1], total, heap))
                continue
            # the earlier engine on the same runs, taking turns, for the "no slower" bar
            cli = os.path.join(os.path.abspath(args.baseline), 'bin', 'migrate_tables')
            results.extend(timed_alternating([engine, (
                'baseline engine (%s): migrate_tables --parallel %d' % (args.baseline, n),
                lambda n=n: method_engine(env, db, tdb, ds['manifest'], n, work, cli=cli))],
                R, env, tdb, targets, expected, total, heap))


def _old(env, args, db, tdb, jobs, targets, expected, total, heap, results):
    P, R = args.parallel, args.runs
    old = timed('old tool: pg_dump | sed | psql --single-transaction, %d at once' % P, R, env,
                tdb, targets, expected, lambda: method_old_tool(env, db, tdb, jobs, P), total,
                heap)
    old['corrupted_rows'], old['corrupted_tables'] = corrupted_rows(env, db, jobs)
    results.append(old)


def _pgcopydb_subset(env, args, work, db, tdb, rows, targets, expected, cols, parts):
    P, R = args.parallel, args.runs
    # pgcopydb: only the tables copied into a same-named table (it cannot map child -> parent)
    same = [(s, t, '') for s, t in rows if s == t]
    same_targets = sorted({t for _, t, _ in same})
    same_expected = {t: expected[t] for t in same_targets
                     if all(s == t for s, tt in rows if tt == t)}
    same = [j for j in same if j[1] in same_expected]
    same_rows = sum(v[0] for v in same_expected.values())
    conn = env.conn('source', db)
    same_heap = sum(leaf_sizes(conn).get(s, 0) for s, _, _ in same)
    conn.close()
    sub_manifest = os.path.join(work, 'same-name-manifest.db')
    if os.path.exists(sub_manifest):
        os.remove(sub_manifest)
    with Manifest.create(sub_manifest) as m:
        m.add_rows([(s, None, None) for s, _, _ in same])
    subset = []
    if shutil.which('pgcopydb'):
        subset.append(timed('subset limit: psql | psql binary, %d streams' % P, R, env, tdb,
                            targets, same_expected,
                            lambda: method_limit(env, db, tdb, same, P, cols, parts), same_rows, same_heap))
        subset.append(timed('subset ' + SESSION_LIMIT % P, R, env, tdb, targets, same_expected,
                            lambda: method_limit_sessions(env, db, tdb, same, P, cols, work, parts),
                            same_rows, same_heap))
        subset.append(timed('subset pgcopydb copy table-data --table-jobs %d' % P, R, env, tdb,
                            targets, same_expected,
                            lambda: method_pgcopydb(env, db, tdb, [s for s, _, _ in same], P, work),
                            same_rows, same_heap))
        subset.append(timed('subset engine: migrate_tables --parallel %d' % P, R, env, tdb,
                            targets, same_expected,
                            lambda: method_engine(env, db, tdb, sub_manifest, P, work),
                            same_rows, same_heap))
    return subset


def _single_table(env, args, work, db, tdb, ds, targets, cols):
    R = args.runs
    # one table holding most of the data: two-stream limit (two ctid halves) vs engine split
    big = ds['big_table']
    conn = env.conn('source', db)
    blocks = q(conn, sql.SQL("SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int"),
               (ident(big),))[0][0]
    big_rows, big_heap = q(conn, sql.SQL('SELECT count(*), pg_relation_size(%s::regclass) FROM ONLY {}')
                           .format(sql.Identifier(big)), (ident(big),))[0]
    conn.close()
    big_expected = {BIG_PARENT: expected_for(env, db, [(big, BIG_PARENT)])[BIG_PARENT]}
    halves = [(big, BIG_PARENT, "ctid >= '(0,0)'::tid AND ctid < '(%d,0)'::tid" % (blocks // 2)),
              (big, BIG_PARENT, "ctid >= '(%d,0)'::tid" % (blocks // 2))]
    big_manifest = os.path.join(work, 'big-manifest.db')
    if os.path.exists(big_manifest):
        os.remove(big_manifest)
    with Manifest.create(big_manifest) as m:
        m.add_rows([(big, '2020-01-01', BIG_PARENT)])
    single = [
        timed('single table: limit, 2 psql | psql streams (ctid halves)', R, env, tdb, targets,
              big_expected, lambda: method_limit(env, db, tdb, halves, 2, cols), big_rows, big_heap),
        timed('single table: limit, 1 psql | psql stream', R, env, tdb, targets, big_expected,
              lambda: method_limit(env, db, tdb, [(big, BIG_PARENT, '')], 1, cols), big_rows,
              big_heap),
        timed('single table: engine --parallel 2 (split in 2 segments)', R, env, tdb, targets,
              big_expected, lambda: method_engine(env, db, tdb, big_manifest, 2, work,
                                                  ['--split-threshold', '1MB', '--split-parts', '2']),
              big_rows, big_heap),
        timed('single table: engine --parallel 1 (whole table, one stream)', R, env, tdb, targets,
              big_expected, lambda: method_engine(env, db, tdb, big_manifest, 1, work,
                                                  ['--split-threshold', '100GB']),
              big_rows, big_heap),
    ]
    return single


SPLIT_TABLE = 'split_big-keyed'


def build_split_table(env: Env, db: str, tdb: str, size_mb: int) -> Dict[str, int]:
    """One table of about ``size_mb`` of heap with a bigint primary key (distributed on it on
    Citus), for the key-split case. Rows of ~165 bytes on disk: text, a number, a timestamp."""
    src = env.conn('source', db)
    t = ident(SPLIT_TABLE)
    ddl = 'CREATE TABLE %s (id bigint %s, supervisor_id text, payload text, amount numeric, at timestamptz)'
    q(src, ddl % (t, 'PRIMARY KEY'))
    rows = max(1000, size_mb * 1024 * 1024 // 160)
    t0 = time.time()
    step = 1000000
    for first in range(1, rows + 1, step):
        q(src, 'INSERT INTO %s SELECT g, \'sup\' || (g %% 997), md5(g::text) || md5((g * 7)::text) '
               '|| md5((g * 13)::text), g * 1.25, timestamptz \'2020-01-01\' + g * interval \'1 s\' '
               'FROM generate_series(%d, %d) g' % (t, first, min(rows, first + step - 1)))
    src.autocommit = True
    with src.cursor() as cur:
        cur.execute('VACUUM ANALYZE %s' % t)
    heap = q(src, 'SELECT pg_relation_size(%s::regclass)', (t,))[0][0]
    src.close()
    tgt = env.conn('target', tdb)
    q(tgt, ddl % (t, ''))
    if env.target_kind == 'citus':
        q(tgt, 'SELECT create_distributed_table(%s, %s)', (t, 'id'))
    tgt.close()
    log('split table: %d rows, %.0f MB heap, built in %.0fs' % (rows, heap / 1e6, time.time() - t0))
    return {'rows': rows, 'heap_bytes': heap, 'max_id': rows}


def _ledger_count(env: Env, tdb: str) -> int:
    conn = env.conn('target', tdb)
    try:
        if q(conn, 'SELECT to_regclass(%s)', ('%s.copy_ledger' % LEDGER_SCHEMA,))[0][0] is None:
            return 0
        return q(conn, sql.SQL('SELECT count(*) FROM {}.copy_ledger').format(
            sql.Identifier(LEDGER_SCHEMA)))[0][0]
    finally:
        conn.close()


def method_engine_killed(env: Env, db: str, tdb: str, manifest: str, work: str,
                         extra: Sequence[str], kill_after: int) -> None:
    """Start the engine and SIGKILL it once ``kill_after`` segments are committed."""
    run_manifest = os.path.join(work, 'run-manifest.db')
    shutil.copyfile(manifest, run_manifest)
    cmd = engine_cmd(env, db, tdb, run_manifest, extra)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while _ledger_count(env, tdb) < kill_after:
        if proc.poll() is not None:
            raise RuntimeError('the engine ended before %d segments were committed' % kill_after)
        time.sleep(0.05)
    proc.kill()
    proc.wait()


def _resume_engine(env: Env, db: str, tdb: str, work: str, extra: Sequence[str]) -> Dict:
    """The re-run after a kill: copies only the segments not committed (the run manifest of
    the killed run, as an operator would re-run it)."""
    cmd = engine_cmd(env, db, tdb, os.path.join(work, 'run-manifest.db'), extra)
    code, rss, err = pipeline([cmd])
    return {'errors': [err.strip()[-500:]] if code != 0 else [], 'peak_rss_kb': rss}


def split_benchmarks(env: Env, args, work: str) -> List[Dict]:
    """A >= 2 GB table with a key, split in key-range segments at --parallel 2, against two
    raw psql pipes over the two key halves; then the resume case: SIGKILL at about 60% of
    the split copy, the re-run's time against the whole copy's."""
    db, tdb = 'icds_split', 'icds_split_target'
    env.create_dbs(db, tdb)
    info = build_split_table(env, db, tdb, args.split_mb)
    src = env.conn('source', db)
    cols = {SPLIT_TABLE: column_list(src, SPLIT_TABLE)}
    expected = source_checksums(src, [(SPLIT_TABLE, SPLIT_TABLE)])
    src.close()
    targets = [SPLIT_TABLE]
    manifest = os.path.join(work, 'split-manifest.db')
    if os.path.exists(manifest):
        os.remove(manifest)
    with Manifest.create(manifest) as m:
        m.add_rows([(SPLIT_TABLE, None, None)])
    mid = info['max_id'] // 2
    halves = [(SPLIT_TABLE, SPLIT_TABLE, 'id < %d' % mid), (SPLIT_TABLE, SPLIT_TABLE, 'id >= %d' % mid)]
    rows, heap, R = info['rows'], info['heap_bytes'], args.runs
    split_args = ['--split-threshold', '1MB', '--segment-size', args.segment_size]
    out = timed_alternating([
        ('split table: limit, 2 psql | psql streams (key halves)',
         lambda: method_limit(env, db, tdb, halves, 2, cols)),
        ('split table: engine --parallel 2 (key segments of %s)' % args.segment_size,
         lambda: method_engine(env, db, tdb, manifest, 2, work, split_args)),
    ], R, env, tdb, targets, expected, rows, heap)
    if 'resume' in args.sections.split(','):
        segments = -(-heap // parse_bytes(args.segment_size))
        kill_after = -(-segments * 6 // 10)
        secs, checks, rss = [], [], []
        for i in range(R):
            reset_target(env, tdb, targets)
            method_engine_killed(env, db, tdb, manifest, work, ['--parallel', '2'] + split_args,
                                 kill_after)
            t0 = time.monotonic()
            res = _resume_engine(env, db, tdb, work, ['--parallel', '2'] + split_args)
            secs.append(time.monotonic() - t0)
            rss.append(res['peak_rss_kb'])
            checks.append(verify(env, tdb, expected))
            log('resume run %d: killed after %d of %d segments, re-run %.2fs, verified %s%s' % (
                i + 1, kill_after, segments, secs[-1], checks[-1]['ok'],
                ', errors: %s' % res['errors'][:1] if res['errors'] else ''))
        med = statistics.median(secs)
        out.append({'method': 'split table: re-run after SIGKILL at %d of %d segments' % (kill_after, segments),
                    'seconds': med, 'min': min(secs), 'max': max(secs), 'runs': secs,
                    'rows_per_s': rows / med, 'mb_per_s': heap / med / 1e6,
                    'peak_rss_mb': max(rss) / 1024.0, 'verified': all(c['ok'] for c in checks),
                    'verification': checks[-1], 'errors': []})
    return out


def parse_bytes(text: str) -> int:
    from ansible_collections.icds.citus_migration.plugins.module_utils.copy.runner import parse_size
    return parse_size(text)


def expected_for(env: Env, db: str, rows) -> Dict[str, Tuple[int, int]]:
    conn = env.conn('source', db)
    try:
        return source_checksums(conn, rows)
    finally:
        conn.close()


# -- scale benchmarks ---------------------------------------------------------------------------
def _cli(args: List[str]) -> float:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, CLI] + args, capture_output=True, text=True)
    took = time.monotonic() - t0
    if res.returncode != 0:
        raise RuntimeError('migrate_tables %s failed: %s' % (args[0], res.stderr.strip()[-300:]))
    return took


def _checkpoint(env: Env) -> None:
    """Flush what earlier steps left dirty, so that it is not written during a timing."""
    env.source.psql('CHECKPOINT')
    for node in env.cluster.nodes if env.cluster is not None else [env.target]:
        node.psql('CHECKPOINT')


def _drop_target(env: Env, tdb: str) -> None:
    for node in env.cluster.nodes if env.cluster is not None else [env.target]:
        node.psql('DROP DATABASE IF EXISTS %s WITH (FORCE)' % ident(tdb))


def _median_cli(args: List[str]) -> float:
    return statistics.median(_cli(args) for _ in range(SCALE_RUNS))


def scale_benchmarks(env: Env, sizes: Sequence[int], child_sizes: Sequence[int], work: str) -> Dict:
    """Catalog-size benchmarks: manifest generation, child creation, no-op migrate, status."""
    plan = load_plan(ucr_folder=UCR_FOLDER)
    out = []
    for n in sizes:
        db, tdb = 'scale_%d' % n, 'scale_%d_target' % n
        env.create_dbs(db, tdb)
        src = env.conn('source', db)
        create_dataset(src, months=1, scale=1, states=1, ucr_folder=UCR_FOLDER)
        t0 = time.monotonic()
        create_many_children(src, 'child_health_monthly', n, check_column=None, prefix='chm_b')
        created_s = time.monotonic() - t0
        ntables = q(src, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[0][0]
        manifest = os.path.join(work, 'scale-%d.db' % n)
        _checkpoint(env)
        gen_runs = []
        for _ in range(SCALE_RUNS):  # a fresh manifest each time: the first generation
            for suffix in ('', '-wal', '-shm'):
                if os.path.exists(manifest + suffix):
                    os.remove(manifest + suffix)
            t0 = time.monotonic()
            mplan = plan_manifest(src, plan)
            written = write_manifest(manifest, mplan, unclassified='warn')
            gen_runs.append(time.monotonic() - t0)
        gen_s = statistics.median(gen_runs)
        # everything already copied: mark every row migrated (what a finished run leaves)
        conn = sqlite3.connect(manifest)
        conn.execute('UPDATE tables SET migrated = 1')
        conn.commit()
        conn.close()
        common = ['-D', db, '-O', '127.0.0.1', '-U', 'postgres', '--source-port',
                  str(env.source.port), '-d', tdb, '-o', '127.0.0.1', '-u', 'postgres',
                  '--target-port', str(env.target.port)]
        noop_s = _median_cli(['migrate', '--yes'] + common + [manifest])
        stats_s = _median_cli(['status', manifest, 'stats'])
        list_s = _median_cli(['status', manifest, 'list'])
        src.close()
        row = {'requested': n, 'source_tables': ntables, 'manifest_rows': len(written),
               'create_source_tables_s': created_s, 'manifest_generation_s': gen_s,
               'manifest_generation_runs': gen_runs,
               'noop_migrate_s': noop_s, 'status_stats_s': stats_s, 'status_list_s': list_s}
        log('scale %d: %s' % (n, json.dumps({k: round(v, 2) if isinstance(v, float) else v
                                            for k, v in row.items()})))
        out.append(row)
        env.source.psql('DROP DATABASE %s WITH (FORCE)' % ident(db))
        _drop_target(env, tdb)
        _checkpoint(env)
    children = []
    for n in child_sizes:
        db = 'children_%d' % n
        env.source.psql('CREATE DATABASE %s' % ident(db))
        src = env.conn('source', db)
        create_dataset(src, months=1, scale=1, states=1, ucr_folder=UCR_FOLDER)
        create_many_children(src, 'agg_awc', n, check_column=None, prefix='agg_awc_b')
        runs = []
        for i in range(SCALE_RUNS):  # a fresh target each time: every child is missing
            tdb = 'children_%d_target_%d' % (n, i)
            if env.cluster is not None:
                env.cluster.create_database(tdb)
            else:
                env.target.psql('CREATE DATABASE %s' % ident(tdb))
            tgt = env.conn('target', tdb)
            apply_bootstrap(tgt, plan_bootstrap(src, tgt, plan))
            _checkpoint(env)
            t0 = time.monotonic()
            cplan = plan_children(src, tgt, plan, parents=['agg_awc'])
            plan_s = time.monotonic() - t0
            result = apply_children(tgt, cplan)
            runs.append({'plan_s': plan_s, 'create_children_s': time.monotonic() - t0,
                         'created': len(result.created)})
            tgt.close()
            _drop_target(env, tdb)
        took = statistics.median(r['create_children_s'] for r in runs)
        row = {'children': n, 'created': runs[-1]['created'], 'create_children_s': took,
               'plan_s': statistics.median(r['plan_s'] for r in runs), 'runs': runs}
        log('children %d: %s' % (n, json.dumps(row)))
        children.append(row)
        src.close()
        env.source.psql('DROP DATABASE %s WITH (FORCE)' % ident(db))
        _checkpoint(env)
    return {'catalog': out, 'children': children}


# -- report ------------------------------------------------------------------------------------
def markdown(report: Dict) -> str:
    lines = []
    ds = report.get('copy', {}).get('dataset')
    if ds:
        lines.append('Dataset: %d manifest rows (ICDS-shaped, synthetic_dataset.py amplified), %d rows, '
                     '%.0f MB of heap; target: %s; %d run(s) per figure (median, min-max).'
                     % (ds['tables'], ds['total_rows'], ds['heap_bytes'] / 1e6,
                        report['target'], report['runs']))
        lines.append('')

    def table(title: str, results: List[Dict]) -> None:
        limit = results[0]
        sessions = next((r for r in results if 'persistent sessions' in r['method']), None)
        lines.append('### ' + title)
        lines.append('')
        lines.append('| method | seconds (min-max) | rows/s | MB/s | peak RSS MB | ratio to limit '
                     '| ratio to limit, persistent sessions | verified |')
        lines.append('|---|---|---|---|---|---|---|---|')
        for r in results:
            ver = 'yes' if r['verified'] else 'NO'
            if r.get('corrupted_rows') is not None:
                ver += ' (sed corrupted %d rows in %d tables)' % (r['corrupted_rows'],
                                                                 r['corrupted_tables'])
            lines.append('| %s | %.2f (%.2f-%.2f) | %.0f | %.1f | %.0f | %.2f | %s | %s |' % (
                r['method'].replace('|', '\\|'), r['seconds'], r['min'], r['max'],
                r['rows_per_s'], r['mb_per_s'], r['peak_rss_mb'], r['seconds'] / limit['seconds'],
                '%.2f' % (r['seconds'] / sessions['seconds']) if sessions else '-', ver))
        lines.append('')
    copy = report.get('copy')
    if copy:
        if copy['all_tables']:
            table('All tables, parallelism %d' % report['parallel'], copy['all_tables'])
        if copy['pgcopydb_subset']:
            table('pgcopydb subset: the %d same-name tables (pgcopydb cannot copy a child into '
                  'its parent)' % copy['pgcopydb_subset_tables'], copy['pgcopydb_subset'])
        if copy['single_table']:
            table('One table holding most of the data', copy['single_table'])
        if copy.get('split_table'):
            table('One table with a key, split in key-range segments', copy['split_table'])
        if copy.get('catchup'):
            lines.extend(catchup_bench.markdown(copy['catchup']))
    scale = report.get('scale')
    if scale:
        lines.append('### Scale (catalog size)')
        lines.append('')
        lines.append('| source tables | manifest rows | manifest generation s | no-op migrate s | '
                     'status stats s | status list s |')
        lines.append('|---|---|---|---|---|---|')
        for r in scale['catalog']:
            lines.append('| %d | %d | %.2f | %.2f | %.2f | %.2f |' % (
                r['source_tables'], r['manifest_rows'], r['manifest_generation_s'],
                r['noop_migrate_s'], r['status_stats_s'], r['status_list_s']))
        lines.append('')
        if scale['children']:
            lines.append('| missing child tables created | seconds |')
            lines.append('|---|---|')
            for r in scale['children']:
                lines.append('| %d | %.2f |' % (r['children'], r['create_children_s']))
            lines.append('')
    bars = bar_checks(report)
    if copy and copy.get('catchup'):
        bars = bars + catchup_bench.bars(copy['catchup'])
    if bars:
        lines.append('### Against the bars (issues 6 and 11)')
        lines.append('')
        lines.append('| bar | measured | met |')
        lines.append('|---|---|---|')
        for bar, measured, met in bars:
            lines.append('| %s | %s | %s |' % (bar.replace('|', '\\|'), measured,
                                              'yes' if met else '**no**'))
        lines.append('')
    return '\n'.join(lines)


def _find(results: List[Dict], prefix: str) -> Optional[Dict]:
    return next((r for r in results if r['method'].startswith(prefix)), None)


def _growth(rows: List[Dict], size_key: str, key: str) -> Optional[Tuple[str, bool]]:
    """Time factor against size factor, smallest to largest size (the issue's "from 1,000 to
    50,000 tables"), then each step; met when the whole range grew no faster than the size.
    The steps are shown, not judged: a step near 1:1 is timing noise either way."""
    rows = sorted((r for r in rows if r.get(key) is not None and r.get(size_key)),
                  key=lambda r: r[size_key])
    if len(rows) < 2:
        return None

    def factor(a: Dict, b: Dict) -> Tuple[float, float]:
        return (b[key] / a[key] if a[key] else float('inf')), b[size_key] / float(a[size_key])
    whole, size = factor(rows[0], rows[-1])
    text = '%s -> %s tables: %.1fx time for %.1fx size' % (
        format(rows[0][size_key], ','), format(rows[-1][size_key], ','), whole, size)
    if len(rows) > 2:
        text += ' (steps: %s)' % '; '.join(
            '%s -> %s: %.1fx for %.1fx' % ((format(a[size_key], ','), format(b[size_key], ','))
                                          + factor(a, b)) for a, b in zip(rows, rows[1:]))
    return text, whole <= size


def bar_checks(report: Dict) -> List[Tuple[str, str, bool]]:
    """The issue's bar, checked against this run's medians."""
    out: List[Tuple[str, str, bool]] = []
    copy = report.get('copy') or {}
    P = report.get('parallel')
    every = copy.get('all_tables') or []
    engine = _find(every, 'engine: migrate_tables --parallel %d' % P)
    if engine:
        for prefix, label in (('limit: psql', 'native binary psql pipe, a session per table'),
                              ('limit, persistent', 'native binary psql pipe, persistent sessions')):
            limit = _find(every, prefix)
            if limit:
                ratio = engine['seconds'] / limit['seconds']
                out.append(('engine time <= 1.10 x %s (parallel %d)' % (label, P),
                            '%.2f s / %.2f s = %.2f' % (engine['seconds'], limit['seconds'], ratio),
                            ratio <= 1.10))
        old = _find(every, 'old tool')
        if old:
            ratio = old['seconds'] / engine['seconds']
            out.append(('engine >= 1.25 x faster than pg_dump | sed | psql',
                        '%.2f / %.2f = %.2f x' % (old['seconds'], engine['seconds'], ratio),
                        ratio >= 1.25))
    base = next((r for r in every if r['method'].startswith('baseline engine')
                 and r['method'].endswith('--parallel %d' % P)), None)
    if engine and base:
        ratio = engine['seconds'] / base['seconds']
        out.append(('every table: engine no slower than the earlier engine (<= 1.05)',
                    '%.2f / %.2f = %.2f' % (engine['seconds'], base['seconds'], ratio), ratio <= 1.05))
    subset = copy.get('pgcopydb_subset') or []
    pg, sub_engine = _find(subset, 'subset pgcopydb'), _find(subset, 'subset engine')
    if pg and sub_engine:
        ratio = pg['seconds'] / sub_engine['seconds']
        out.append(('engine >= 1.5 x faster than pgcopydb, same tables',
                    '%.2f / %.2f = %.2f x (%d tables)' % (pg['seconds'], sub_engine['seconds'],
                                                          ratio, copy['pgcopydb_subset_tables']),
                    ratio >= 1.5))
    splits = copy.get('split_table') or []
    engines = [r for r in every + subset + (copy.get('single_table') or []) + splits
               if 'engine' in r['method'] and not r['method'].startswith('baseline')]
    if engines:
        peak = max(r['peak_rss_mb'] for r in engines)
        out.append(('peak RSS of the copying process < 150 MB',
                    '%.0f MB (largest over %d engine figures)' % (peak, len(engines)), peak < 150))
    single = copy.get('single_table') or []
    two, split = _find(single, 'single table: limit, 2'), _find(single, 'single table: engine --parallel 2')
    if two and split:
        ratio = split['seconds'] / two['seconds']
        out.append(('single big table, --parallel 2, <= 1.25 x the two-stream limit',
                    '%.2f / %.2f = %.2f' % (split['seconds'], two['seconds'], ratio), ratio <= 1.25))
    two, split = _find(splits, 'split table: limit, 2'), _find(splits, 'split table: engine')
    if two and split:
        ratio = split['seconds'] / two['seconds']
        out.append(('key-split table (%.1f GB), --parallel 2, <= 1.15 x the two-stream limit'
                    % (split['mb_per_s'] * split['seconds'] / 1e3),
                    '%.2f / %.2f = %.2f' % (split['seconds'], two['seconds'], ratio), ratio <= 1.15))
    resume = _find(splits, 'split table: re-run after SIGKILL')
    if split and resume:
        ratio = resume['seconds'] / split['seconds']
        out.append(('re-run after a SIGKILL at ~60% of a split copy <= 0.5 x the whole copy',
                    '%.2f / %.2f = %.2f' % (resume['seconds'], split['seconds'], ratio), ratio <= 0.5))
    scale = report.get('scale') or {}
    catalog = scale.get('catalog') or []
    at10k = next((r for r in catalog if r.get('requested') == 10000), None)
    if at10k:
        for key, label, limit in (('noop_migrate_s', 'no-op re-run over 10,000 copied tables', 2.0),
                                  ('status_stats_s', '`status stats` on 10,000 tables', 2.0),
                                  ('status_list_s', '`status list` on 10,000 tables', 2.0),
                                  ('manifest_generation_s', 'manifest generation over 10,000 tables', 5.0)):
            out.append(('%s < %g s' % (label, limit), '%.2f s' % at10k[key], at10k[key] < limit))
    for key, label in (('manifest_generation_s', 'manifest generation'),
                       ('noop_migrate_s', 'no-op migrate'), ('status_stats_s', 'status stats'),
                       ('status_list_s', 'status list')):
        grown = _growth(catalog, 'requested', key)
        if grown:
            out.append(('%s grows linearly or better' % label, grown[0], grown[1]))
    children = scale.get('children') or []
    at10k = next((r for r in children if r['children'] == 10000), None)
    if at10k:
        out.append(('10,000 child tables created < 60 s', '%.2f s' % at10k['create_children_s'],
                    at10k['create_children_s'] < 60))
    grown = _growth(children, 'children', 'create_children_s')
    if grown:
        out.append(('child table creation grows linearly or better', grown[0], grown[1]))
    return out


def chart(report: Dict, path: str) -> Optional[str]:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        log('matplotlib not installed: no chart (pip install -r benchmarks/requirements.txt)')
        return None
    copy = report['copy']
    groups = [('all tables', copy['all_tables']), ('pgcopydb subset', copy['pgcopydb_subset']),
              ('single big table', copy['single_table']),
              ('key-split table', copy.get('split_table') or [])]
    groups = [(g, r) for g, r in groups if r]
    if not groups:  # e.g. only the catch-up section: nothing to chart
        return None
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 3 + 1.2 * sum(len(r) for _, r in groups) / 2))
    if len(groups) == 1:
        axes = [axes]
    for ax, (title, results) in zip(axes, groups):
        names = [r['method'] for r in results][::-1]
        med = [r['seconds'] for r in results][::-1]
        lo = [r['seconds'] - r['min'] for r in results][::-1]
        hi = [r['max'] - r['seconds'] for r in results][::-1]
        colors = ['tab:green' if n.startswith(('engine', 'subset engine', 'single table: engine'))
                  else 'tab:gray' for n in names]
        ax.barh(names, med, xerr=[lo, hi], color=colors)
        ax.set_title('%s (median of %d runs, min-max bars)' % (title, report['runs']))
        ax.set_xlabel('seconds')
        ax.tick_params(axis='y', labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def precompile(roots: Sequence[str]) -> None:
    """Byte-compile the timed collections' modules once, as an installed collection has them
    after its first run. Without it, where PYTHONDONTWRITEBYTECODE is set (or after an edit)
    every timed CLI run compiled about 50 modules again: about 0.07 s of CPU before its
    first statement, which production does not pay."""
    for root in roots:
        compileall.compile_dir(os.path.join(root, 'plugins'), quiet=1)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size-mb', type=int, default=300, help='approximate heap size of the dataset')
    parser.add_argument('--big-share', type=float, default=0.4,
                        help='share of the data in the one big table (default 0.4)')
    parser.add_argument('--parallel', type=int, default=2, help='parallelism of the comparison')
    parser.add_argument('--engine-parallel', default='1,2,4',
                        help='engine --parallel values (comma separated)')
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--target', choices=['citus', 'plain'],
                        default='citus' if citus_available() else 'plain')
    parser.add_argument('--scale-sizes', default='1000,10000,50000',
                        help='source catalog sizes for the scale benchmarks')
    parser.add_argument('--child-sizes', default='1000,10000',
                        help='missing child tables to create in the scale benchmarks')
    parser.add_argument('--skip-copy', action='store_true')
    parser.add_argument('--skip-scale', action='store_true')
    parser.add_argument('--sections', default='all,pgcopydb,single,split,resume,catchup',
                        help='copy sections to run: all (every table: limit, old, engine), pgcopydb (same-name '
                             'subset), single (one big table), split (a --split-mb table with a key, '
                             'key-split at --parallel 2 against two psql pipes), resume (SIGKILL at ~60%% '
                             'of that split copy, then the re-run), catchup (issue 12: copy, catch-up without and '
                             'with 0.1%% drift; changes the source, so it runs last)')
    parser.add_argument('--split-mb', type=int, default=2048,
                        help='heap size of the key-split table (default 2048: the issue asks >= 2 GB)')
    parser.add_argument('--segment-size', default='256MB', help='engine --segment-size in the split cases')
    parser.add_argument('--baseline', metavar='DIR',
                        help='a checkout of an earlier engine (e.g. git archive of the previous commit): '
                             'its bin/migrate_tables is timed next to this one in the all-tables section')
    parser.add_argument('--profile', action='store_true',
                        help='also record a py-spy profile of one engine run')
    parser.add_argument('--keep', action='store_true', help='keep the servers and work files')
    parser.add_argument('--no-settle', dest='settle', action='store_false',
                        help='catch-up section: time the catch-ups right after the copy, without the '
                             'untimed VACUUM ANALYZE of the copied target tables first')
    parser.add_argument('--render', metavar='JSON',
                        help='only re-write the .md and .png of an earlier results JSON')
    args = parser.parse_args(argv)
    if args.render:
        with open(args.render) as handle:
            report = json.load(handle)
        base = args.render[:-len('.json')]
        md = markdown(report)
        with open(base + '.md', 'w') as handle:
            handle.write('# Benchmark %s\n\nCommand: `%s`\n\n%s\n' % (
                report['timestamp'], report['command'], md))
        if 'copy' in report:
            chart(report, base + '.png')
        print(md)
        return 0
    args.engine_parallel = [int(x) for x in args.engine_parallel.split(',') if x]
    if args.target == 'citus' and not citus_available():
        parser.error('--target citus: the citus extension is not installed')
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    args.stamp = stamp
    precompile([ROOT] + ([os.path.abspath(args.baseline)] if args.baseline else []))
    work = tempfile.mkdtemp(prefix='icds-bench-')
    os.chmod(work, 0o755)
    started = time.monotonic()
    env = Env(args.target)
    report = {'timestamp': stamp, 'target': args.target, 'parallel': args.parallel,
              'runs': args.runs, 'command': 'benchmarks/run.py ' + ' '.join(argv or sys.argv[1:]),
              'options': {k: v for k, v in vars(args).items() if k != 'stamp'},
              'machine': {'cpus': os.cpu_count(), 'python': platform.python_version(),
                          'platform': platform.platform(),
                          'postgres': env.source.psql('SHOW server_version').strip()}}
    try:
        if not args.skip_copy:
            report['copy'] = copy_benchmarks(env, args, work)
        if not args.skip_scale:
            report['scale'] = scale_benchmarks(
                env, [int(x) for x in args.scale_sizes.split(',') if x],
                [int(x) for x in args.child_sizes.split(',') if x], work)
    finally:
        report['elapsed_s'] = time.monotonic() - started
        if not args.keep:
            env.destroy()
            shutil.rmtree(work, ignore_errors=True)
        else:
            log('kept: work dir %s' % work)
    os.makedirs(RESULTS, exist_ok=True)
    base = os.path.join(RESULTS, stamp)
    md = markdown(report)
    with open(base + '.json', 'w') as handle:
        json.dump(report, handle, indent=2, default=str)
    with open(base + '.md', 'w') as handle:
        handle.write('# Benchmark %s\n\nCommand: `%s`\n\n%s\n' % (stamp, report['command'], md))
    if 'copy' in report:
        chart(report, base + '.png')
    print(md)
    log('done in %.0fs; results in %s.{json,md,png}' % (report['elapsed_s'], base))
    return 0


if __name__ == '__main__':
    sys.exit(main())
