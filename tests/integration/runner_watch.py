"""Watching runners from outside: which runner process owns which target backend, table locks
held on purpose so copies wait where a test can see them, and the target's ledger by runner.

A runner's target connections are told apart by TCP port: pg_stat_activity.client_port is the
local port of a socket the runner process holds (/proc/<pid>/fd and /proc/net/tcp*). All the
waiting here is for a state, with a deadline, never for a fixed time.
"""

import os
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, List, Sequence, Set

import psycopg2
from psycopg2 import sql

from ansible_collections.icds.citus_migration.plugins.module_utils.copy import ledger

LEDGER = ledger.DEFAULT_LEDGER_SCHEMA


def _socket_inodes(pid: int) -> Set[str]:
    fd_dir = '/proc/%d/fd' % pid
    out = set()
    for name in os.listdir(fd_dir):
        try:
            link = os.readlink(os.path.join(fd_dir, name))
        except OSError:  # closed meanwhile
            continue
        if link.startswith('socket:['):
            out.add(link[8:-1])
    return out


def local_ports(pid: int) -> Set[int]:
    """Local TCP ports of the sockets process ``pid`` holds."""
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        if not os.path.exists(table):
            continue
        with open(table) as handle:
            next(handle)
            for line in handle:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(':', 1)[1], 16))
    return ports


def query(params, statement, args=None) -> list:
    """Rows of one statement on its own autocommit connection ([] when it returns none)."""
    conn = psycopg2.connect(**params.libpq_kwargs())
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def copies_in_flight(dbs, procs: Sequence) -> Dict[int, List[str]]:
    """Runner index -> the COPY ... FROM STDIN statements its backends run on the target now
    (active, or waiting for a lock)."""
    rows = query(dbs.target, "SELECT client_port, query FROM pg_stat_activity WHERE datname = %s "
                 "AND query LIKE 'COPY %%FROM STDIN%%' AND state = 'active'", (dbs.target_db,))
    ports = {i: local_ports(p.pid) for i, p in enumerate(procs) if p.poll() is None}
    out: Dict[int, List[str]] = {}
    for port, statement in rows:
        for i, mine in ports.items():
            if port in mine:
                out.setdefault(i, []).append(statement)
    return out


def wait_for(what: str, check: Callable[[], bool], procs: Sequence = (), timeout: float = 60.0) -> None:
    """Until ``check()`` is true; fails early, with their output, if a runner ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError('a runner ended before %s: %r' % (what, proc.communicate()))
        time.sleep(0.05)
    raise AssertionError('timed out waiting for %s' % what)


def waiting_on(dbs, wait_event: str) -> int:
    """How many runner backends on the target wait for a heavyweight lock of this kind
    ('relation', 'advisory')."""
    return query(dbs.target, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                 "AND application_name LIKE 'icds.citus_migration (%%' AND wait_event_type = 'Lock' "
                 "AND wait_event = %s", (dbs.target_db, wait_event))[0][0]


@contextmanager
def tables_locked(dbs, tables: Sequence[str]) -> Iterator[None]:
    """SHARE locks on target tables (reads go on, COPY into them waits) until the block ends."""
    conn = psycopg2.connect(**dbs.target.libpq_kwargs())
    try:
        with conn.cursor() as cur:
            for table in tables:
                cur.execute(sql.SQL('LOCK TABLE {} IN SHARE MODE').format(sql.Identifier(table)))
        yield
    finally:
        conn.rollback()
        conn.close()


@contextmanager
def table_lock_held(dbs, source_id: str, source_table: str, part: str = '') -> Iterator[object]:
    """Hold a runner's advisory lock for one table (or part) from a separate session, as a
    runner copying it would; yields the session's connection (autocommit)."""
    conn = psycopg2.connect(**dbs.target.libpq_kwargs())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT pg_advisory_lock(%s, hashtext(%s))',
                        (ledger.LOCK_NAMESPACE, ledger.lock_key(source_id, source_table, part)))
        yield conn
    finally:
        conn.close()


def source_id(dbs) -> str:
    """The ledger's name of the source database, as a runner computes it."""
    dbname, sysid = query(dbs.source, 'SELECT current_database(), system_identifier::text '
                          'FROM pg_control_system()')[0]
    return '%s@%s' % (dbname, sysid)


def ledger_rows(dbs) -> List[tuple]:
    """(source_table, part, runner) of every ledger row on the target (none yet: [])."""
    if query(dbs.target, 'SELECT to_regclass(%s)', ('%s.copy_ledger' % LEDGER,))[0][0] is None:
        return []
    return query(dbs.target, sql.SQL('SELECT source_table, part, runner FROM {}.copy_ledger '
                                      'ORDER BY 1, 2').format(sql.Identifier(LEDGER)))


def tables_by_runner(dbs, procs: Sequence) -> Dict[int, Set[str]]:
    """Runner index -> the tables whose ledger rows it wrote (runner label 'host:pid')."""
    by_pid = {p.pid: i for i, p in enumerate(procs)}
    out: Dict[int, Set[str]] = {}
    for table, dummy, runner in ledger_rows(dbs):
        pid = int(runner.rsplit(':', 1)[1])
        out.setdefault(by_pid.get(pid, -1), set()).add(table)
    return out
