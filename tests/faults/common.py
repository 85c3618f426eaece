"""The fault suite's world: dedicated servers, a shared read-only source, fresh targets,
and the invariants every fault must leave intact (see docs/reliability.md)."""

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import psycopg2

from tests.fixtures.postgres import DbPair
from tests.integration.copy_helpers import (
    MANIFEST_ROWS, load_nasty, make_old_manifest, nasty_schema)
from tests.integration.runner_watch import query

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, 'results')
RESULTS_FILE = os.path.join(RESULTS_DIR, 'faults.jsonl')
LEDGER = 'icds_citus_migration'

BIG = 'ucr_icds-cas_static-big_cases_a1b2c3d4'
BIG_ROWS = int(os.environ.get('FAULT_BIG_ROWS', '300000'))
BIG_DDL = 'CREATE TABLE "%s" (id bigint, supervisor_id text, payload text, at timestamptz)' % BIG
# no primary key anywhere: a table (or part) copied twice shows as duplicate rows
ROWS = [(BIG, None, None)] + list(MANIFEST_ROWS)

# where each manifest row's rows live on each side: (table, WHERE) used by slice_fp
SLICES = {
    'child_health_monthly': ('child_health_monthly', 'WHERE month IS NULL'),
    'child_health_monthly_2020-01-01': ('child_health_monthly', "WHERE month = '2020-01-01'"),
    'child_health_monthly_2020-02-01': ('child_health_monthly', "WHERE month = '2020-02-01'"),
}

# count and an order-independent sum of 64-bit row hashes: no sort, so cheap on the big
# table; a row copied twice or lost changes both
FP_SQL = ("SELECT count(*) || ':' || coalesce(sum(('x' || substr(md5(x::text), 1, 16))"
          "::bit(64)::bigint::numeric), 0) FROM ONLY {t} x {w}")


def qident(name: str) -> str:
    return '"%s"' % name.replace('"', '""')


def fingerprints(params, items: List[Tuple[str, str]]) -> List[str]:
    """Fingerprints (count:md5 of rows) of several (table, where) slices, one connection."""
    conn = psycopg2.connect(**params.libpq_kwargs())
    out = []
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            for table, where in items:
                cur.execute(FP_SQL.format(t=qident(table), w=where))
                out.append(cur.fetchone()[0])
    finally:
        conn.close()
    return out


class FaultWorld:
    """Two dedicated servers (they get restarted and stopped), one loaded source database
    shared by every test of a module (the engine only reads it), a target template."""

    def __init__(self, source_server, target_server):
        self.source_server = source_server
        self.target_server = target_server
        self.source_db = 'fault_src'
        self.template = 'fault_tgt_tpl'
        self._n = 0
        self._source_fp: Optional[Dict[str, str]] = None

    def setup(self) -> None:
        self.source_server.psql('CREATE DATABASE %s' % self.source_db)
        self.target_server.psql('CREATE DATABASE %s' % self.template)
        pair = DbPair(self.source_server, self.target_server, self.source_db, self.template)
        load_nasty(pair, rows=2000)
        pair.src_sql(BIG_DDL)
        pair.tgt_sql(BIG_DDL)
        pair.src_sql("INSERT INTO \"%s\" SELECT g, 'sup' || (g %% 97), repeat(md5(g::text), 2), "
                     "timestamptz '2020-01-01' + g * interval '1 second' "
                     "FROM generate_series(1, %d) g" % (BIG, BIG_ROWS))
        pair.src_sql('VACUUM ANALYZE')

    def fresh(self, tmp_path) -> DbPair:
        """A new empty target database (schema only) and a new old-style manifest."""
        self._n += 1
        name = 'fault_tgt_%d_%d' % (os.getpid(), self._n)
        self.ensure_up()
        self.target_server.psql('CREATE DATABASE %s TEMPLATE %s' % (name, self.template))
        pair = DbPair(self.source_server, self.target_server, self.source_db, name)
        pair.manifest = make_old_manifest(str(tmp_path / 'manifest.db'), ROWS)
        return pair

    def drop(self, pair: DbPair) -> None:
        self.ensure_up()
        self.target_server.psql('DROP DATABASE IF EXISTS %s WITH (FORCE)' % pair.target_db)

    def ensure_up(self) -> None:
        for server in (self.source_server, self.target_server):
            if not server.is_running():
                server.start()
            server.wait_ready()

    def source_fingerprints(self, pair: DbPair) -> Dict[str, str]:
        if self._source_fp is None:
            items = [(r[0], '') for r in ROWS]
            self._source_fp = dict(zip([r[0] for r in ROWS], fingerprints(pair.source, items)))
        return self._source_fp


# -- what the run left behind ----------------------------------------------------------------

def manifest_state(path: str) -> Dict[str, Tuple[Optional[int], Optional[int]]]:
    conn = sqlite3.connect(path)
    try:
        return {r[0]: (r[1], r[2]) for r in
                conn.execute('SELECT source_table, migrated, errored FROM tables')}
    finally:
        conn.close()


def ledger_state(pair: DbPair) -> Tuple[Dict[str, List[str]], Dict[str, List[str]]]:
    """(source_table -> ledger parts, source_table -> stored split plan)."""
    if not query(pair.target, 'SELECT to_regclass(%s)', ('%s.copy_ledger' % LEDGER,))[0][0]:
        return {}, {}
    entries: Dict[str, List[str]] = {}
    for table, part in query(pair.target, 'SELECT source_table, part FROM %s.copy_ledger' % LEDGER):
        entries.setdefault(table, []).append(part)
    plans = {}
    if query(pair.target, 'SELECT to_regclass(%s)', ('%s.copy_split_plan' % LEDGER,))[0][0]:
        plans = {t: list(p) for t, p in query(
            pair.target, 'SELECT source_table, parts FROM %s.copy_split_plan' % LEDGER)}
    return entries, plans


def complete_in_ledger(table: str, entries, plans) -> bool:
    parts = entries.get(table, [])
    if '' in parts:
        return True
    return table in plans and sorted(parts) == sorted(plans[table])


def target_fingerprints(pair: DbPair) -> Dict[str, str]:
    items = [SLICES.get(r[0], (r[0], '')) for r in ROWS]
    return dict(zip([r[0] for r in ROWS], fingerprints(pair.target, items)))


def check_truthful(world: FaultWorld, pair: DbPair) -> Dict[str, object]:
    """After a fault, before any re-run: the manifest never claims more than the target
    holds, and every table is on the target entirely or not at all (parts: per part)."""
    src = world.source_fingerprints(pair)
    tgt = target_fingerprints(pair)
    entries, plans = ledger_state(pair)
    flags = manifest_state(pair.manifest)
    for table, (migrated, _errored) in flags.items():
        complete = complete_in_ledger(table, entries, plans)
        if migrated:
            assert complete, 'manifest says %s is migrated but the ledger lacks it' % table
            assert tgt[table] == src[table], 'manifest says %s is migrated: target differs' % table
        if complete:
            assert tgt[table] == src[table], 'ledger says %s is copied: target differs' % table
        elif table not in plans:  # copied whole or not at all
            assert tgt[table] == '0:0', '%s is not in the ledger but has rows on the target' % table
    for table, parts in entries.items():
        assert len(parts) == len(set(parts)), 'ledger rows repeated for %s' % table
    return {'migrated_before_rerun': sorted(t for t, f in flags.items() if f[0]),
            'in_ledger_before_rerun': sorted(entries)}


def check_final(world: FaultWorld, pair: DbPair) -> None:
    """After the re-run(s): target equals source slice by slice (no loss, no duplicate),
    every manifest row migrated, ledger rows == tables (or parts)."""
    src = world.source_fingerprints(pair)
    tgt = target_fingerprints(pair)
    diff = {t: (src[t], tgt[t]) for t in src if src[t] != tgt[t]}
    assert not diff, 'target differs from source (source, target): %s' % diff
    flags = manifest_state(pair.manifest)
    assert set(flags.values()) == {(1, None)}, flags
    entries, plans = ledger_state(pair)
    assert sorted(entries) == sorted(r[0] for r in ROWS)
    for table, parts in entries.items():
        assert complete_in_ledger(table, entries, plans), (table, parts, plans.get(table))
        expected = plans[table] if table in plans and '' not in parts else ['']
        assert sorted(parts) == sorted(expected), (table, parts)


# -- keeping the copy of BIG in progress while a fault is injected -----------------------------

THROTTLE_SCHEMA = 'fault_throttle'
THROTTLE_PAUSE_S = 0.01   # one short sleep ...
THROTTLE_EVERY = 500      # ... every this many rows at most (so <= 50,000 rows/s) ...
THROTTLE_SLEEPS = 600     # ... and at least this many sleeps over BIG (so >= 6 s)


def throttle_big(pair: DbPair) -> None:
    """Make the copy of BIG into this pair's target take at least 6 s, at no more than
    50,000 rows/s (an 8MB part of it, as the split tests copy, still takes over 1 s).

    Unthrottled, an idle machine copies BIG in well under a second, so a fault injected
    "while BIG is being copied" may land after the copy ended. A BEFORE INSERT row trigger
    on the target BIG (COPY FROM fires it, text and binary alike; the engine does not touch
    session_replication_role) sleeps every few hundred rows and returns the row unchanged,
    so the data stays identical. The source COPY stays active too: the pipe and the socket
    to the target back up. The pause is read from a table at each sleep, so
    ``release_throttle`` speeds up a copy already in flight; calling this again re-arms it;
    ``unthrottle`` removes it all. Needs no runner on the target (they lock BIG)."""
    every = max(1, min(THROTTLE_EVERY, BIG_ROWS // THROTTLE_SLEEPS))
    pause = THROTTLE_PAUSE_S
    pair.tgt_sql(
        'CREATE SCHEMA IF NOT EXISTS {s};'
        'CREATE TABLE IF NOT EXISTS {s}.settings (pause float8 NOT NULL);'
        'DELETE FROM {s}.settings;'
        'INSERT INTO {s}.settings VALUES ({p:.4f});'
        'CREATE OR REPLACE FUNCTION {s}.sleep_a_little() RETURNS trigger LANGUAGE plpgsql AS '
        '$$BEGIN PERFORM pg_sleep(pause) FROM {s}.settings; RETURN NEW; END$$;'
        'CREATE OR REPLACE TRIGGER fault_throttle BEFORE INSERT ON {t} FOR EACH ROW '
        'WHEN (NEW.id % {n} = 0) EXECUTE FUNCTION {s}.sleep_a_little()'
        .format(s=THROTTLE_SCHEMA, p=pause, t=qident(BIG), n=every))


def release_throttle(pair: DbPair) -> None:
    """No more sleeping, from the next row on, even in a copy in flight. Once the fault has
    landed, the target then drains what is still buffered towards it (several MB over a
    local TCP socket) at full speed instead of at the throttled rate."""
    pair.tgt_sql('UPDATE %s.settings SET pause = 0' % THROTTLE_SCHEMA)


def unthrottle(pair: DbPair) -> None:
    """Remove ``throttle_big`` (trigger, function, settings): re-runs copy BIG at full
    speed, with COPY's multi-row inserts (any row trigger turns those off)."""
    pair.tgt_sql('DROP SCHEMA IF EXISTS %s CASCADE' % THROTTLE_SCHEMA)


# -- waiting for a moment during a copy --------------------------------------------------------

def wait_for_target_copy(pair: DbPair, proc, table: str = BIG, timeout: float = 60.0) -> None:
    """Until the target is receiving COPY data for ``table``."""
    deadline = time.time() + timeout
    pattern = 'COPY %%%s%% FROM STDIN%%' % table
    while time.time() < deadline:
        busy = query(pair.target, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                     "AND query LIKE %s AND state = 'active'", (pair.target_db, pattern))[0][0]
        if busy:
            return
        if proc.poll() is not None:
            raise AssertionError('the run ended before the copy of %s started: %s'
                                 % (table, proc.communicate()))
        time.sleep(0.03)
    raise AssertionError('the copy of %s never started' % table)


def wait_for_backends_gone(pair: DbPair, timeout: float = 30.0) -> None:
    """Until the server noticed the killed runner (its transactions are rolled back)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        left = query(pair.target, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                     "AND application_name LIKE 'icds.citus_migration (%%' "
                     "AND pid <> pg_backend_pid()", (pair.target_db,))[0][0]
        if not left:
            return
        time.sleep(0.05)


# -- results ------------------------------------------------------------------------------

@contextmanager
def recorded(test: str, seed: Optional[int], fault: str, **params):
    """Append one JSON line per run to tests/faults/results/faults.jsonl, pass or fail."""
    entry = {'time': time.strftime('%Y-%m-%dT%H:%M:%S'), 'test': test, 'seed': seed,
             'fault': fault, 'params': params}
    started = time.monotonic()
    try:
        yield entry
        entry['result'] = 'pass'
    except BaseException as exc:
        entry['result'] = 'fail'
        entry['error'] = ('%s: %s' % (exc.__class__.__name__, exc))[:2000]
        raise
    finally:
        entry['duration_s'] = round(time.monotonic() - started, 2)
        os.makedirs(RESULTS_DIR, exist_ok=True)
        with open(RESULTS_FILE, 'a') as handle:
            handle.write(json.dumps(entry, sort_keys=True, default=str) + '\n')
