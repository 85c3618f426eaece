"""Large tables without a usable key copied in parts (ctid ranges under one snapshot):
equal rows, each part exactly once."""

import json
import os
import signal

import psycopg2
import pytest

from tests.integration.segment_helpers import (
    SOURCE_ID, SegmentLocks, held_locks, store_plan, wait_for)
from tests.integration.copy_helpers import (
    cli_conn_args, fingerprint, make_old_manifest, manifest_flags, run_cli, union_fingerprint)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy import ledger
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.table_copy import CopyTask
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.split_plan import plan_split

BIG = 'ucr_icds-cas_static-big_cases_a1b2c3d4'  # hyphenated, as UCR names are
# No primary key anywhere: a part copied twice would show as duplicate rows.
DDL = 'CREATE TABLE "%s" (id bigint, supervisor_id text, payload text, at timestamptz)' % BIG
FILL = ("INSERT INTO \"%s\" SELECT g, 'sup' || (g %% 97), repeat(md5(g::text), %d) "
        "|| E'\\t%s\\n', now() FROM generate_series(%d, %d) g")


def _fill(dbs, first: int, last: int, width: int = 2) -> None:
    dbs.src_sql(FILL % (BIG, width, BIG, first, last))


def _plan(dbs):
    if dbs.tgt_sql("SELECT to_regclass('icds_citus_migration.copy_split_plan')").strip() == '':
        return None
    out = dbs.tgt_sql('SELECT array_to_json(parts) FROM icds_citus_migration.copy_split_plan '
                      "WHERE source_table = '%s'" % BIG).strip()
    return json.loads(out) if out else None


def _ledger_parts(dbs):
    if dbs.tgt_sql("SELECT to_regclass('icds_citus_migration.copy_ledger')").strip() == '':
        return []
    out = dbs.tgt_sql("SELECT part FROM icds_citus_migration.copy_ledger WHERE source_table = '%s' "
                      'ORDER BY part' % BIG)
    return out.splitlines()


def _migrate(dbs, manifest, *extra, **kw):
    return run_cli(['migrate', '--yes', '--json'] + list(extra) + cli_conn_args(dbs) + [manifest], **kw)


@pytest.fixture
def bigdb(dbs, tmp_path):
    dbs.src_sql(DDL)
    dbs.tgt_sql(DDL)
    _fill(dbs, 1, 40000)
    dbs.src_sql('CREATE TABLE small (id int)')
    dbs.tgt_sql('CREATE TABLE small (id int)')
    dbs.src_sql('INSERT INTO small SELECT generate_series(1, 100)')
    dbs.src_sql('ANALYZE')
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), [(BIG, None, None), ('small', None, None)])
    return dbs


def test_big_table_copied_in_parts_equals_source(bigdb, tmp_path):
    res = _migrate(bigdb, bigdb.manifest, '--parallel', '2', '--split-threshold', '1MB',
                   '--split-parts', '3')
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout[res.stdout.index('{'):])
    big = [t for t in report['tables'] if t['source_table'] == BIG][0]
    assert big['status'] == 'copied' and big['parts'] == 3 and big['rows'] == 40000
    assert fingerprint(bigdb.tgt_sql, BIG) == fingerprint(bigdb.src_sql, BIG)
    assert fingerprint(bigdb.tgt_sql, 'small') == fingerprint(bigdb.src_sql, 'small')
    parts = _plan(bigdb)
    assert len(parts) == 3 and parts[-1].endswith('-')  # last range open-ended
    assert sorted(_ledger_parts(bigdb)) == sorted(parts)  # one ledger row per part, no whole row
    assert set(manifest_flags(bigdb.manifest).values()) == {(1, None)}
    # a second manifest against the same target: every part is in the ledger, nothing copied
    again = make_old_manifest(str(tmp_path / 'again.db'), [(BIG, None, None)])
    res = _migrate(bigdb, again, '--parallel', '2')  # default threshold: the stored plan wins
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout[res.stdout.index('{'):])
    assert report['already_copied'] == 1 and report['copied'] == 0, res.stdout
    assert fingerprint(bigdb.tgt_sql, BIG) == fingerprint(bigdb.src_sql, BIG)


def test_dry_run_lists_the_part_statements(bigdb):
    res = run_cli(['migrate', '--dry-run', '--split-threshold', '1MB', '--split-parts', '2']
                  + cli_conn_args(bigdb) + [bigdb.manifest])
    assert res.returncode == 0, res.stderr
    assert "ctid >= '(0,0)'::tid AND ctid < '(" in res.stdout
    assert 'FROM ONLY "public"."%s"' % BIG in res.stdout
    assert bigdb.tgt_sql("SELECT to_regclass('icds_citus_migration.copy_split_plan')").strip() == ''
    assert bigdb.tgt_sql('SELECT count(*) FROM "%s"' % BIG).strip() == '0'


def test_whole_copy_and_split_plan_exclude_each_other(bigdb, tmp_path):
    # copied whole first (under the threshold): a later run with a low threshold makes no plan
    res = _migrate(bigdb, bigdb.manifest, '--split-threshold', '10GB')
    assert res.returncode == 0, res.stderr
    again = make_old_manifest(str(tmp_path / 'again.db'), [(BIG, None, None)])
    res = _migrate(bigdb, again, '--parallel', '2', '--split-threshold', '1MB')
    assert res.returncode == 0, res.stderr
    assert '"already_copied": 1' in res.stdout
    assert _plan(bigdb) is None and _ledger_parts(bigdb) == ['']
    assert fingerprint(bigdb.tgt_sql, BIG) == fingerprint(bigdb.src_sql, BIG)


def test_stored_plan_is_used_even_under_the_threshold(bigdb):
    res = _migrate(bigdb, bigdb.manifest, '--split-threshold', '1MB', '--split-parts', '4',
                   '--table', 'small')
    assert res.returncode == 0
    source_id = _source_id(bigdb)
    conn_s = psycopg2.connect(**bigdb.source.libpq_kwargs())
    conn_t = psycopg2.connect(**bigdb.target.libpq_kwargs())
    try:
        plan = _plan_now(bigdb, conn_s, conn_t, source_id, 4)
        parts = plan.parts
    finally:
        conn_s.close()
        conn_t.close()
    assert len(parts) == 4
    res = _migrate(bigdb, bigdb.manifest)  # default 1GB threshold, parallel 1
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout[res.stdout.index('{'):])['tables'][0]['parts'] == 4
    assert sorted(_ledger_parts(bigdb)) == sorted(parts)
    assert fingerprint(bigdb.tgt_sql, BIG) == fingerprint(bigdb.src_sql, BIG)


def _plan_now(dbs, conn_s, conn_t, source_id: str, segments: int):
    """Store a split plan as a runner would; its shared snapshot (no key) is let go."""
    plan = plan_split(conn_s, conn_t, CopyTask(BIG, BIG), source_id, 'test', segments,
                      connect_source=lambda: psycopg2.connect(**dbs.source.libpq_kwargs()),
                      connect_target=lambda: psycopg2.connect(**dbs.target.libpq_kwargs()))
    assert plan.snapshot is not None and plan.holder is not None  # no key: ctid, one snapshot
    plan.holder.close()
    return plan


def _source_id(dbs) -> str:
    return dbs.tgt_sql('SELECT DISTINCT source_id FROM icds_citus_migration.copy_ledger').strip()


def test_rows_beyond_the_last_boundary_are_copied(bigdb):
    nblocks = int(bigdb.src_sql("SELECT pg_relation_size('\"%s\"') / 8192" % BIG).strip())
    conn_s = psycopg2.connect(**bigdb.source.libpq_kwargs())
    conn_t = psycopg2.connect(**bigdb.target.libpq_kwargs())
    try:
        ledger.ensure_ledger(conn_t)
        plan = _plan_now(bigdb, conn_s, conn_t, 'fixed-source', 3)
        parts = plan.parts
    finally:
        conn_s.close()
        conn_t.close()
    assert parts[-1].endswith('-')
    _fill(bigdb, 40001, 60000)  # appended: lands in blocks the table did not have when planned
    beyond = bigdb.src_sql("SELECT count(*), min(id) FROM \"%s\" WHERE ctid >= '(%d,0)'::tid"
                           % (BIG, nblocks)).strip().split('|')
    assert int(beyond[0]) > 0 and int(beyond[1]) > 40000
    res = _migrate(bigdb, bigdb.manifest, '--parallel', '2', '--source-id', 'fixed-source')
    assert res.returncode == 0, res.stdout + res.stderr
    assert bigdb.tgt_sql('SELECT count(*) FROM "%s"' % BIG).strip() == '60000'
    assert fingerprint(bigdb.tgt_sql, BIG) == fingerprint(bigdb.src_sql, BIG)


def test_failed_part_marks_the_table_errored_and_a_rerun_completes_it(bigdb):
    # (no key: the re-run starts the table again under a new snapshot, as the first run's
    # snapshot ended with it; a keyed table's re-run copies only the missing segments, see
    # test_key_segments)
    # a target constraint that rejects rows of the middle part only
    bigdb.tgt_sql('ALTER TABLE "%s" ADD CONSTRAINT no_middle CHECK (id < 15000 OR id > 25000)' % BIG)
    res = _migrate(bigdb, bigdb.manifest, '--parallel', '2', '--split-threshold', '1MB',
                   '--split-parts', '3', '--no-stop-on-error')
    assert res.returncode == 1, res.stdout + res.stderr
    big = [t for t in json.loads(res.stdout[res.stdout.index('{'):])['tables']
           if t['source_table'] == BIG][0]
    assert big['status'] == 'errored' and '1 of 3 parts not copied' in big['error'], big
    assert 'no_middle' in big['error']
    assert manifest_flags(bigdb.manifest)[BIG] == (None, 1)
    done = _ledger_parts(bigdb)
    assert len(done) == 2
    copied_before = int(bigdb.tgt_sql('SELECT count(*) FROM "%s"' % BIG).strip())
    bigdb.tgt_sql('ALTER TABLE "%s" DROP CONSTRAINT no_middle' % BIG)
    res = _migrate(bigdb, bigdb.manifest, '--parallel', '2', '--retry-errors')
    assert res.returncode == 0, res.stdout + res.stderr
    assert int(bigdb.tgt_sql('SELECT count(*) FROM "%s"' % BIG).strip()) > copied_before
    assert fingerprint(bigdb.tgt_sql, BIG) == fingerprint(bigdb.src_sql, BIG)
    assert len(_ledger_parts(bigdb)) == 3
    assert manifest_flags(bigdb.manifest)[BIG] == (1, None)


@pytest.fixture
def hugedb(dbs, tmp_path):
    """Large enough that a part is still streaming when the runner is killed."""
    dbs.src_sql(DDL)
    dbs.tgt_sql(DDL)
    _fill(dbs, 1, 1200000, width=3)
    dbs.src_sql('ANALYZE')
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), [(BIG, None, None)])
    return dbs


def test_sigkill_mid_way_then_rerun_copies_each_part_once(hugedb):
    parts = store_plan(hugedb, BIG, 6)
    args = ['--split-threshold', '1MB', '--source-id', SOURCE_ID]
    locks = SegmentLocks(hugedb, BIG)
    locks.hold(parts[-1])  # the run cannot finish before it is killed
    try:
        proc = _migrate(hugedb, hugedb.manifest, *args, background=True)
        # one part committed and the next one streaming
        wait_for(lambda: len(_ledger_parts(hugedb)) >= 1 and hugedb.tgt_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
            "query LIKE 'COPY %%FROM STDIN%%' AND state = 'active'").strip() != '0',
            'a part committed and the next one streaming', proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        locks.close()
    wait_for(lambda: held_locks(hugedb) == 0, 'the killed runner\'s sessions to end')
    done = _ledger_parts(hugedb)
    assert 1 <= len(done) < 6
    assert manifest_flags(hugedb.manifest)[BIG] == (None, None)
    # what is on the target is exactly the committed parts
    committed = int(hugedb.tgt_sql('SELECT sum(rows_copied) FROM icds_citus_migration.copy_ledger').strip())
    assert int(hugedb.tgt_sql('SELECT count(*) FROM "%s"' % BIG).strip()) == committed
    # no key: its parts' snapshot died with the runner, so the table is copied again from scratch
    res = _migrate(hugedb, hugedb.manifest, '--parallel', '2', '--source-id', SOURCE_ID)
    assert res.returncode == 0, res.stdout + res.stderr
    assert fingerprint(hugedb.tgt_sql, BIG) == fingerprint(hugedb.src_sql, BIG)
    assert sorted(_ledger_parts(hugedb)) == sorted(_plan(hugedb)) and len(_plan(hugedb)) == 6
    assert manifest_flags(hugedb.manifest)[BIG] == (1, None)


@pytest.mark.parametrize('shared_manifest', [True, False])
def test_two_runners_on_the_same_big_table(bigdb, tmp_path, shared_manifest):
    _fill(bigdb, 40001, 200000)
    bigdb.src_sql('ANALYZE')
    second = bigdb.manifest if shared_manifest else make_old_manifest(
        str(tmp_path / 'b.db'), [(BIG, None, None), ('small', None, None)])
    args = ['--parallel', '2', '--split-threshold', '1MB', '--split-parts', '5']
    procs = [_migrate(bigdb, path, *args, background=True) for path in (bigdb.manifest, second)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert fingerprint(bigdb.tgt_sql, BIG) == fingerprint(bigdb.src_sql, BIG)
    assert len(_plan(bigdb)) == 5
    assert sorted(_ledger_parts(bigdb)) == sorted(_plan(bigdb))
    for path in {bigdb.manifest, second}:
        assert set(manifest_flags(path).values()) == {(1, None)}


@pytest.mark.citus
def test_parts_into_a_distributed_table(citus_dbs, tmp_path):
    dbs = citus_dbs
    dbs.src_sql(DDL)
    dbs.tgt_sql(DDL)
    dbs.tgt_sql("SELECT create_distributed_table('\"%s\"', 'supervisor_id')" % BIG)
    _fill(dbs, 1, 30000)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [(BIG, None, None)])
    res = _migrate(dbs, manifest, '--parallel', '2', '--split-threshold', '1MB', '--segment-size', '2MB')
    assert res.returncode == 0, res.stdout + res.stderr
    size = int(dbs.src_sql('SELECT pg_relation_size(\'"%s"\')' % BIG).strip())
    assert json.loads(res.stdout[res.stdout.index('{'):])['tables'][0]['parts'] == -(-size // (2 << 20))
    assert fingerprint(dbs.tgt_sql, BIG) == fingerprint(dbs.src_sql, BIG)


def test_partitioned_parent_row_copies_only_its_partitions_rows_once(dbs, tmp_path):
    """A declaratively partitioned parent in the manifest holds no rows itself: COPY TO
    refuses it, so it is copied FROM ONLY (empty); each partition is its own row."""
    for run in (dbs.src_sql, dbs.tgt_sql):
        run('CREATE TABLE "agg_awc_daily" (id int, date date NOT NULL, note text) '
            'PARTITION BY RANGE (date)')
        run('CREATE TABLE "agg_awc_daily_m202001" PARTITION OF "agg_awc_daily" '
            "FOR VALUES FROM ('2020-01-01') TO ('2020-02-01')")
    dbs.src_sql("INSERT INTO agg_awc_daily SELECT g, date '2020-01-01' + g % 31, 'n' || g "
                'FROM generate_series(1, 500) g')
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [
        ('agg_awc_daily', None, None), ('agg_awc_daily_m202001', '2020-01-01', None)])
    res = _migrate(dbs, manifest, '--parallel', '2')
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(manifest_flags(manifest).values()) == {(1, None)}
    assert dbs.tgt_sql('SELECT count(*) FROM agg_awc_daily').strip() == '500'
    assert fingerprint(dbs.tgt_sql, 'agg_awc_daily_m202001') == fingerprint(
        dbs.src_sql, 'agg_awc_daily_m202001')


@pytest.mark.parametrize('nblocks,parts', [(0, 2), (1, 4), (10, 3), (12345, 7)])
def test_split_ranges_cover_every_block_once(nblocks, parts):
    from ansible_collections.icds.citus_migration.plugins.module_utils.copy.table_copy import (
        part_range, split_ranges)
    ranges = [part_range(p) for p in split_ranges(nblocks, parts)]
    assert ranges[0][0] == 0 and ranges[-1][1] is None  # starts at 0, last one open-ended
    for (a, b), (c, _) in zip(ranges, ranges[1:]):
        assert a < b == c  # contiguous, no gap, no overlap, never empty
    assert len(ranges) == max(1, min(parts, nblocks))


@pytest.mark.parametrize('text,expected', [('1GB', 1 << 30), ('500MB', 500 << 20), ('1.5g', 3 << 29),
                                           ('2048', 2048), (4096, 4096)])
def test_split_threshold_sizes(text, expected):
    from ansible_collections.icds.citus_migration.plugins.module_utils.copy.runner import parse_size
    assert parse_size(text) == expected


def test_bad_split_threshold_is_one_readable_line(bigdb):
    res = _migrate(bigdb, bigdb.manifest, '--split-threshold', 'lots')
    assert res.returncode == 2
    assert res.stderr.strip() == ("migrate_tables: error: --split-threshold must be a size such as "
                                  "1GB or 500MB (bytes if no unit), got 'lots'")
    assert manifest_flags(bigdb.manifest)[BIG] == (None, None)
