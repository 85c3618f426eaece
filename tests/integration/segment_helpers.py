"""Shared pieces of the segment tests: plans, ledger reads, segment locks held by the test,
a writer that keeps changing the source, waiting for a state on the target."""

import json
import os
import random
import signal
import threading
import time
from typing import Callable, Dict, List, Optional

import psycopg2

from tests.integration.copy_helpers import cli_conn_args, run_cli
from ansible_collections.icds.citus_migration.plugins.module_utils.copy import ledger
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.split_plan import plan_split
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.table_copy import CopyTask

SOURCE_ID = 'segment-test-source'
LS = 'icds_citus_migration'


def migrate(dbs, manifest: str, *extra, **kw):
    return run_cli(['migrate', '--yes', '--json', '--source-id', SOURCE_ID] + list(extra)
                   + cli_conn_args(dbs) + [manifest], **kw)


def report(res) -> dict:
    out = res if isinstance(res, str) else res.stdout
    return json.loads(out[out.index('{'):])


def store_plan(dbs, table: str, segments: int) -> List[str]:
    """Store the table's split plan as a runner would (a key table: no shared snapshot)."""
    conn_s = psycopg2.connect(**dbs.source.libpq_kwargs())
    conn_t = psycopg2.connect(**dbs.target.libpq_kwargs())
    try:
        ledger.ensure_ledger(conn_t)
        plan = plan_split(conn_s, conn_t, CopyTask(table, table), SOURCE_ID, 'test', segments,
                          connect_source=lambda: psycopg2.connect(**dbs.source.libpq_kwargs()),
                          connect_target=lambda: psycopg2.connect(**dbs.target.libpq_kwargs()))
    finally:
        conn_s.close()
        conn_t.close()
    if plan.holder is not None:
        plan.holder.close()
    return plan.parts


def ledger_rows(dbs, table: str) -> Dict[str, tuple]:
    """part -> (runner, copied_at, rows) of the table's ledger rows."""
    if dbs.tgt_sql("SELECT to_regclass('%s.copy_ledger')" % LS).strip() == '':
        return {}
    out = dbs.tgt_sql("SELECT json_agg(json_build_array(part, runner, copied_at, rows_copied)) "
                      "FROM %s.copy_ledger WHERE source_table = '%s'" % (LS, table.replace("'", "''")))
    return {p: (r, at, n) for p, r, at, n in json.loads(out.strip() or 'null') or []}


def stored_plan(dbs, table: str) -> Optional[List[str]]:
    out = dbs.tgt_sql("SELECT array_to_json(parts) FROM %s.copy_split_plan WHERE source_table = '%s'"
                      % (LS, table.replace("'", "''"))).strip()
    return json.loads(out) if out else None


def waiting_locks(dbs) -> int:
    """Advisory lock requests waiting in the target database (a runner blocked on a segment)."""
    return int(dbs.tgt_sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                           "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                           ).strip())


def waiters(dbs, table: str, parts: List[str]) -> Dict[int, str]:
    """Backend pid -> the segment it waits for (advisory lock requests not granted yet)."""
    out = dbs.tgt_sql("SELECT pid, objid::int FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                      "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
    by_hash = {}
    for part in parts:
        key = ledger.lock_key(SOURCE_ID, table, part).replace("'", "''").replace('\x1f', "' || chr(31) || '")
        by_hash[int(dbs.tgt_sql("SELECT hashtext('%s')" % key).strip())] = part
    found = {}
    for line in out.splitlines():
        pid, objid = line.split('|')
        if int(objid) in by_hash:
            found[int(pid)] = by_hash[int(objid)]
    return found


def held_locks(dbs, exclude_pid: Optional[int] = None) -> int:
    return int(dbs.tgt_sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                           "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                           + (' AND pid <> %d' % exclude_pid if exclude_pid else '')).strip())


def wait_for(check: Callable[[], bool], what: str, proc=None, timeout: float = 120) -> None:
    """Poll a state (never a fixed sleep) until it holds; fail early if ``proc`` died."""
    deadline = time.time() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise AssertionError('runner ended before %s: %s' % (what, proc.communicate()))
        if time.time() > deadline:
            raise AssertionError('timed out waiting for %s' % what)
        time.sleep(0.05)


def two_runners_one_part_each(dbs, table: str, parts: List[str], manifests: List[str],
                              after_first: Optional[Callable[[], None]] = None):
    """With every part of ``table`` held (SegmentLocks): start a runner at --parallel 1 and,
    once it waits for a part, a second at --parallel 2, until it waits for two more.
    ``after_first`` runs once the first runner waits. Returns (first process, second process,
    a part only the second runner waits for); every part is still held."""
    first = migrate(dbs, manifests[0], '--parallel', '1', background=True)
    wait_for(lambda: waiting_locks(dbs) == 1, 'the first runner waiting for a part', first)
    first_pid = list(waiters(dbs, table, parts))[0]
    if after_first is not None:
        after_first()
    second = migrate(dbs, manifests[1], '--parallel', '2', background=True)
    wait_for(lambda: waiting_locks(dbs) == 3, 'the second runner waiting too', second)
    wanted = waiters(dbs, table, parts)
    ours = [p for pid, p in wanted.items() if pid != first_pid and p != wanted[first_pid]][0]
    return first, second, ours


def kill_after_segments(dbs, table: str, manifest: str, parts: List[str], what: str,
                        committed: int = 3) -> Dict[str, tuple]:
    """With the last of ``parts`` held (so the run cannot finish): copy ``table`` in segments
    in the background, SIGKILL the runner once ``committed`` segments are in the ledger, and
    wait for its sessions to end; returns the ledger rows then."""
    locks = SegmentLocks(dbs, table)
    locks.hold(parts[-1])
    try:
        proc = migrate(dbs, manifest, '--split-threshold', '1MB', background=True)
        wait_for(lambda: len(ledger_rows(dbs, table)) >= committed, what, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        locks.close()
    wait_for(lambda: held_locks(dbs) == 0, 'the killed runner\'s sessions to end')
    return ledger_rows(dbs, table)


class SegmentLocks:
    """Segment locks the test holds on the target, as a runner copying them would."""

    def __init__(self, dbs, table: str):
        self.conn = psycopg2.connect(**dbs.target.libpq_kwargs())
        self.conn.autocommit = True
        self.table = table
        self.pid = self.conn.get_backend_pid()

    def _call(self, func: str, part: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute('SELECT %s(%%s, hashtext(%%s))' % func,
                        (ledger.LOCK_NAMESPACE, ledger.lock_key(SOURCE_ID, self.table, part)))

    def hold(self, part: str) -> None:
        self._call('pg_advisory_lock', part)

    def release(self, part: str) -> None:
        self._call('pg_advisory_unlock', part)

    def close(self) -> None:
        self.conn.close()


class Writer(threading.Thread):
    """Keeps writing to the source: UPDATEs that lengthen rows (new versions move to other
    pages), INSERTs of new ids above ``first_new`` and DELETEs of ids ``% 10 == 0``.
    Rows with other ids up to ``first_new`` exist for the whole run."""

    def __init__(self, dbs, table: str, max_id: int, first_new: int):
        super().__init__(daemon=True)
        self.conn = psycopg2.connect(**dbs.source.libpq_kwargs())
        self.conn.autocommit = True
        self.table = table
        self.max_id = max_id
        self.next_id = first_new
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ops = 0
        self.error: Optional[BaseException] = None

    def burst(self, ids: List[int]) -> None:
        """Lengthen these rows (moving them), insert and delete a few."""
        t = '"%s"' % self.table
        with self.lock, self.conn.cursor() as cur:
            cur.execute("UPDATE %s SET payload = payload || repeat('x', 400) WHERE id = ANY(%%s)" % t,
                        (ids,))
            cur.execute("INSERT INTO %s (id, payload) SELECT g, 'new ' || g FROM generate_series(%%s, %%s) g"
                        % t, (self.next_id, self.next_id + 9))
            self.next_id += 10
            cur.execute('DELETE FROM %s WHERE id = ANY(%%s)' % t,
                        ([i - i % 10 for i in ids if i - i % 10 > 0],))
        self.ops += 1

    def run(self) -> None:
        rnd = random.Random(11)
        try:
            while not self.stop.is_set():
                self.burst([rnd.randint(1, self.max_id) for dummy in range(50)])
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.join(60)
        self.conn.close()
        if self.error is not None:
            raise self.error
