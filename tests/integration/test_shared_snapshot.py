"""A large table without a usable key is copied in ctid parts read under ONE source
snapshot: a writer moving rows between blocks cannot make a row be read twice or missed.
When that snapshot is gone before every part is copied, the table starts again."""

import os
import signal

import pytest

from tests.integration.copy_helpers import fingerprint, make_old_manifest, manifest_flags
from tests.integration.segment_helpers import (
    SegmentLocks, Writer, kill_after_segments, ledger_rows, two_runners_one_part_each, migrate, report, store_plan,
    stored_plan, waiting_locks, wait_for)

NOKEY = 'ucr_icds-cas_static-no_key'
N = 30000
FIRST_NEW = 10 ** 7


def _make(dbs, rows: int = N, distribute: bool = False) -> None:
    dbs.src_sql('CREATE TABLE "%s" (id bigint, payload text)' % NOKEY)
    dbs.tgt_sql('CREATE TABLE "%s" (id bigint, payload text)' % NOKEY)
    if distribute:
        dbs.tgt_sql("SELECT create_distributed_table('\"%s\"', 'id')" % NOKEY)
    dbs.src_sql("INSERT INTO \"%s\" SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, %d) g"
                % (NOKEY, rows))
    dbs.src_sql('CREATE INDEX ON "%s" (id)' % NOKEY)  # not unique: no usable key
    dbs.src_sql('ANALYZE "%s"' % NOKEY)


def _live(dbs, tmp_path) -> None:
    _make(dbs, distribute=getattr(dbs, 'citus', False))
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [(NOKEY, None, None)])
    parts = store_plan(dbs, NOKEY, 8)
    assert all(p.startswith('ctid:') for p in parts)
    middle = parts[4]
    locks = SegmentLocks(dbs, NOKEY)
    locks.hold(middle)
    writer = Writer(dbs, NOKEY, N, FIRST_NEW)
    writer.start()
    try:
        proc = migrate(dbs, manifest, '--parallel', '2', '--split-threshold', '1MB', background=True)
        wait_for(lambda: len(ledger_rows(dbs, NOKEY)) == 7 and waiting_locks(dbs) >= 1,
                 'every part but the held one copied', proc)
        # every row of the held part's blocks moves to the end of the table (copied already)
        first = int(middle.split('(')[1].split(',')[0])
        ids = [int(x) for x in dbs.src_sql(
            "SELECT id FROM \"%s\" WHERE ctid >= '(%d,0)'::tid AND ctid < '(%d,0)'::tid AND id <= %d"
            % (NOKEY, first, first + 40, N)).split()]
        assert ids
        writer.burst(ids)
        locks.release(middle)
        out, err = proc.communicate(timeout=300)
    finally:
        locks.close()
        writer.finish()
    assert proc.returncode == 0, out + err
    assert report(out)['tables'][0]['split'] == 'ctid, 8 parts under one snapshot'
    count, distinct = dbs.tgt_sql('SELECT count(*), count(DISTINCT id) FROM "%s"' % NOKEY).strip().split('|')
    assert count == distinct, 'duplicates on the target'
    present = int(dbs.tgt_sql('SELECT count(DISTINCT id) FROM "%s" WHERE id <= %d AND id %% 10 <> 0'
                              % (NOKEY, N)).strip())
    assert present == N - N // 10, 'rows that existed for the whole run are missing'
    res = migrate(dbs, manifest, '--recopy-drifted')
    assert res.returncode == 0, res.stdout + res.stderr
    assert fingerprint(dbs.tgt_sql, NOKEY) == fingerprint(dbs.src_sql, NOKEY)


def test_ctid_parts_under_one_snapshot_with_a_live_writer(dbs, tmp_path):
    _live(dbs, tmp_path)


@pytest.mark.citus
def test_ctid_parts_under_one_snapshot_into_citus(citus_dbs, tmp_path):
    _live(citus_dbs, tmp_path)


def test_snapshot_gone_after_sigkill_restarts_the_table(dbs, tmp_path):
    _make(dbs, rows=200000)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [(NOKEY, None, None)])
    parts = store_plan(dbs, NOKEY, 10)
    before = kill_after_segments(dbs, NOKEY, manifest, parts, 'three parts committed')
    assert 3 <= len(before) < 10
    # rows already copied change on the source: the old attempt's copies must not survive
    dbs.src_sql('UPDATE "%s" SET payload = \'changed \' || id WHERE id <= 2000' % NOKEY)
    res = migrate(dbs, manifest, '--parallel', '2', '--split-threshold', '1MB')
    assert res.returncode == 0, res.stdout + res.stderr
    after = ledger_rows(dbs, NOKEY)
    assert sorted(after) == sorted(parts) == sorted(stored_plan(dbs, NOKEY))
    old_runner = {r for r, dummy, dummy2 in before.values()}
    assert not old_runner & {r for r, dummy, dummy2 in after.values()}  # every part copied again
    assert fingerprint(dbs.tgt_sql, NOKEY) == fingerprint(dbs.src_sql, NOKEY)
    assert manifest_flags(manifest)[NOKEY] == (1, None)


def test_dry_run_and_status_say_how_the_table_is_split(dbs, tmp_path):
    _make(dbs)
    dbs.src_sql('CREATE TABLE keyed (id int PRIMARY KEY, payload text)')
    dbs.tgt_sql('CREATE TABLE keyed (id int PRIMARY KEY, payload text)')
    dbs.src_sql("INSERT INTO keyed SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 20000) g")
    dbs.src_sql('ANALYZE keyed')
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [(NOKEY, None, None), ('keyed', None, None)])
    res = migrate(dbs, manifest, '--dry-run', '--split-threshold', '1MB', '--split-parts', '4')
    assert res.returncode == 0, res.stderr
    plan = {t['source_table']: t for t in report(res)['tables']}
    assert plan[NOKEY]['split'] == 'ctid, 4 parts under one snapshot' and plan[NOKEY]['segments_done'] == 0
    assert plan['keyed']['split'] == 'key id, 4 segments' and plan['keyed']['segments_done'] == 0
    parts = store_plan(dbs, 'keyed', 4)
    locks = SegmentLocks(dbs, 'keyed')
    locks.hold(parts[2])
    try:
        proc = migrate(dbs, manifest, '--table', 'keyed', background=True)
        wait_for(lambda: len(ledger_rows(dbs, 'keyed')) == 3 and waiting_locks(dbs) == 1,
                 'three segments copied', proc)
        from tests.integration.copy_helpers import run_cli
        listing = run_cli(['status', manifest, 'list'])
        assert listing.returncode == 0, listing.stderr
        line = [ln for ln in listing.stdout.splitlines() if ln.startswith('keyed ')][0]
        assert 'running 3/4 segments' in line, listing.stdout
        dry = migrate(dbs, manifest, '--dry-run', '--table', 'keyed')
        assert report(dry)['tables'][0]['segments_done'] == 3
        locks.release(parts[2])
        out, err = proc.communicate(timeout=300)
    finally:
        locks.close()
    assert proc.returncode == 0, out + err
    assert report(out)['tables'][0]['segments_done'] == 4


def test_two_runners_read_the_parts_under_the_same_snapshot(dbs, tmp_path):
    _make(dbs)
    parts = store_plan(dbs, NOKEY, 6)
    manifests = [make_old_manifest(str(tmp_path / name), [(NOKEY, None, None)]) for name in ('a.db', 'b.db')]
    locks = SegmentLocks(dbs, NOKEY)
    for part in parts:
        locks.hold(part)
    try:
        seen = []
        first, second, ours = two_runners_one_part_each(dbs, NOKEY, parts, manifests, lambda: seen.append(
            dbs.tgt_sql("SELECT snapshot FROM icds_citus_migration.copy_split_plan "
                        "WHERE source_table = '%s'" % NOKEY).strip()))
        snapshot = seen[0]
        assert snapshot
        locks.release(ours)  # only the second runner wants it: read under the first's snapshot
        wait_for(lambda: ours in ledger_rows(dbs, NOKEY), 'that part copied', second)
        for part in parts:
            if part != ours:
                locks.release(part)
        outs = [p.communicate(timeout=300) for p in (first, second)]
    finally:
        locks.close()
    assert [first.returncode, second.returncode] == [0, 0], outs
    done = ledger_rows(dbs, NOKEY)
    assert sorted(done) == sorted(parts)
    assert len({r for r, dummy, dummy2 in done.values()}) == 2
    # the plan still names the first runner's snapshot: nobody started the table again
    assert dbs.tgt_sql("SELECT snapshot FROM icds_citus_migration.copy_split_plan "
                       "WHERE source_table = '%s'" % NOKEY).strip() == snapshot
    assert fingerprint(dbs.tgt_sql, NOKEY) == fingerprint(dbs.src_sql, NOKEY)


def _exporter_alive(dbs) -> bool:
    """A source session still in the transaction that exported a snapshot."""
    return dbs.src_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND state = 'idle in transaction' AND application_name LIKE 'icds.citus_migration%'"
                       ).strip() != '0'


def test_runner_keeping_the_snapshot_killed_while_another_copies(dbs, tmp_path):
    _make(dbs)
    parts = store_plan(dbs, NOKEY, 6)
    manifests = [make_old_manifest(str(tmp_path / name), [(NOKEY, None, None)]) for name in ('a.db', 'b.db')]
    locks = SegmentLocks(dbs, NOKEY)
    for part in parts:
        locks.hold(part)
    try:
        first, second, ours = two_runners_one_part_each(dbs, NOKEY, parts, manifests)
        locks.release(ours)  # the second runner copies it under the first runner's snapshot
        wait_for(lambda: ours in ledger_rows(dbs, NOKEY), 'that part copied', second)
        under_first = ledger_rows(dbs, NOKEY)[ours]
        os.kill(first.pid, signal.SIGKILL)  # the snapshot's keeper dies
        first.wait()
        wait_for(lambda: not _exporter_alive(dbs), 'the exported snapshot to end')
        for part in parts:
            if part != ours:
                locks.release(part)
        out, err = second.communicate(timeout=300)
    finally:
        locks.close()
    # the second runner found the snapshot gone, started the table again under its own
    assert second.returncode == 0, out + err
    done = ledger_rows(dbs, NOKEY)
    assert sorted(done) == sorted(parts)
    assert len({r for r, dummy, dummy2 in done.values()}) == 1  # all by the second, once again
    assert done[ours] != under_first  # the part read under the dead snapshot was copied again
    assert fingerprint(dbs.tgt_sql, NOKEY) == fingerprint(dbs.src_sql, NOKEY)
    assert manifest_flags(manifests[1])[NOKEY] == (1, None)
