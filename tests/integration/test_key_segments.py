"""A large table with a usable key is copied in key-range segments: exact on a source that
is written to during the copy, resumable segment by segment, shared by two runners."""

import pytest

from tests.integration.copy_helpers import fingerprint, make_old_manifest, manifest_flags
from tests.integration.segment_helpers import (
    SegmentLocks, Writer, kill_after_segments, ledger_rows, migrate, report, store_plan, stored_plan,
    two_runners_one_part_each, waiting_locks, wait_for)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.key_ranges import KeyRange

LIVE = 'ucr_icds-cas_static-live_cases'
N = 30000  # rows 1..N; the writer inserts from FIRST_NEW on
FIRST_NEW = 10 ** 7


def _make(dbs, table: str, target_key: bool, rows: int = N, distribute: bool = False) -> str:
    dbs.src_sql('CREATE TABLE "%s" (id bigint PRIMARY KEY, payload text)' % table)
    dbs.tgt_sql('CREATE TABLE "%s" (id bigint%s, payload text)'
                % (table, ' PRIMARY KEY' if target_key else ''))
    if distribute:
        dbs.tgt_sql("SELECT create_distributed_table('\"%s\"', 'id')" % table)
    dbs.src_sql("INSERT INTO \"%s\" SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, %d) g"
                % (table, rows))
    dbs.src_sql('ANALYZE "%s"' % table)
    return table


def _no_duplicates(dbs, table: str) -> None:
    count, distinct = dbs.tgt_sql('SELECT count(*), count(DISTINCT id) FROM "%s"' % table).strip().split('|')
    assert count == distinct, 'duplicate rows on the target: %s rows, %s ids' % (count, distinct)


def _stable_rows_present(dbs, table: str) -> None:
    """Every row that existed for the whole run (ids 1..N the writer never deletes)."""
    present = dbs.tgt_sql('SELECT count(DISTINCT id) FROM "%s" WHERE id <= %d AND id %% 10 <> 0'
                          % (table, N)).strip()
    missing = N - N // 10 - int(present)
    assert missing == 0, '%d rows that existed for the whole run are missing' % missing


def _live_copy(dbs, tmp_path, target_key: bool, distribute: bool = False) -> None:
    table = _make(dbs, LIVE, target_key, distribute=distribute)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [(LIVE, None, None)])
    parts = store_plan(dbs, table, 8)
    assert len(parts) == 8 and all(p.startswith('key:') for p in parts)
    middle = parts[4]
    locks = SegmentLocks(dbs, table)
    locks.hold(middle)  # its rows are changed after every other segment is copied
    writer = Writer(dbs, table, N, FIRST_NEW)
    writer.start()
    try:
        proc = migrate(dbs, manifest, '--parallel', '2', '--split-threshold', '1MB',
                       '--segment-size', '256kB', background=True)
        wait_for(lambda: len(ledger_rows(dbs, table)) == 7 and waiting_locks(dbs) >= 1,
                 'every segment but the held one copied', proc)
        # rows of the segment not copied yet, and rows of copied ones, move to new pages
        rng = KeyRange.decode(middle)
        lo, hi = int(rng.lo), int(rng.hi)
        writer.burst(list(range(lo, min(hi, lo + 400))) + list(range(1, 400)))
        locks.release(middle)
        out, err = proc.communicate(timeout=300)
    finally:
        locks.close()
        writer.finish()
    assert proc.returncode == 0, out + err
    assert writer.ops > 1
    assert report(out)['tables'][0]['split'] == 'key id, 8 segments'
    _no_duplicates(dbs, table)
    _stable_rows_present(dbs, table)
    assert set(manifest_flags(manifest).values()) == {(1, None)}
    # writer stopped: the drift catch-up makes the target equal to the source
    res = migrate(dbs, manifest, '--recopy-drifted')
    assert res.returncode == 0, res.stdout + res.stderr
    assert fingerprint(dbs.tgt_sql, table) == fingerprint(dbs.src_sql, table)


@pytest.mark.parametrize('target_key', [True, False], ids=['unique-target', 'no-key-target'])
def test_live_writer_split_copy_is_exact(dbs, tmp_path, target_key):
    _live_copy(dbs, tmp_path, target_key)


@pytest.mark.citus
@pytest.mark.parametrize('target_key', [True, False], ids=['unique-target', 'no-key-target'])
def test_live_writer_split_copy_into_citus(citus_dbs, tmp_path, target_key):
    _live_copy(citus_dbs, tmp_path, target_key, distribute=True)


def test_sigkill_then_rerun_copies_only_the_missing_segments(dbs, tmp_path):
    table = _make(dbs, 'big-keyed', True, rows=200000)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [(table, None, None)])
    parts = store_plan(dbs, table, 10)
    before = kill_after_segments(dbs, table, manifest, parts, 'three segments committed')
    assert 3 <= len(before) < 10
    committed = sum(n for dummy, dummy2, n in before.values())
    assert int(dbs.tgt_sql('SELECT count(*) FROM "%s"' % table).strip()) == committed
    res = migrate(dbs, manifest, '--parallel', '2', '--split-threshold', '1MB')
    assert res.returncode == 0, res.stdout + res.stderr
    after = ledger_rows(dbs, table)
    assert sorted(after) == sorted(parts) == sorted(stored_plan(dbs, table))
    for part, entry in before.items():  # the committed segments were not copied again
        assert after[part] == entry
    killed = {r for r, dummy, dummy2 in before.values()}
    rerun = {after[p][0] for p in parts if p not in before}
    assert len(killed) == 1 and len(rerun) == 1 and rerun != killed
    assert fingerprint(dbs.tgt_sql, table) == fingerprint(dbs.src_sql, table)
    assert manifest_flags(manifest)[table] == (1, None)


def test_two_runners_share_the_segments_of_one_table(dbs, tmp_path):
    table = _make(dbs, 'shared-keyed', True)
    parts = store_plan(dbs, table, 6)
    manifests = [make_old_manifest(str(tmp_path / name), [(table, None, None)]) for name in ('a.db', 'b.db')]
    locks = SegmentLocks(dbs, table)
    for part in parts:
        locks.hold(part)
    try:
        # a segment only the second runner waits for: it copies that one
        first, second, ours = two_runners_one_part_each(dbs, table, parts, manifests)
        locks.release(ours)
        wait_for(lambda: ours in ledger_rows(dbs, table), 'that segment copied', second)
        for part in parts:
            if part != ours:
                locks.release(part)
        outs = [p.communicate(timeout=300) for p in (first, second)]
    finally:
        locks.close()
    assert [first.returncode, second.returncode] == [0, 0], outs
    done = ledger_rows(dbs, table)
    assert sorted(done) == sorted(parts)  # each segment once
    assert len({r for r, dummy, dummy2 in done.values()}) == 2  # both runners copied some
    assert fingerprint(dbs.tgt_sql, table) == fingerprint(dbs.src_sql, table)
    for path in manifests:
        assert manifest_flags(path)[table] == (1, None)


def test_text_key_with_quotes_and_unicode(dbs, tmp_path):
    table = "it's \"keyed\" ✓"
    t = '"%s"' % table.replace('"', '""')
    for run in (dbs.src_sql, dbs.tgt_sql):
        run('CREATE TABLE %s (code text NOT NULL, payload text, CONSTRAINT u UNIQUE (code))' % t)
    dbs.src_sql("INSERT INTO %s SELECT format('%%s O''Brien \"q\" ünïcødé ✓ %%s', g %% 97, g), "
                "repeat(md5(g::text), 3) FROM generate_series(1, 20000) g" % t)
    dbs.src_sql('ANALYZE %s' % t)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [(table, None, None)])
    res = migrate(dbs, manifest, '--parallel', '2', '--split-threshold', '1MB', '--split-parts', '5')
    assert res.returncode == 0, res.stdout + res.stderr
    parts = stored_plan(dbs, table)
    assert len(parts) == 5 and {KeyRange.decode(p).column for p in parts} == {'code'}
    assert all("O'Brien \"q\" ünïcødé ✓" in b for p in parts
               for b in (KeyRange.decode(p).lo, KeyRange.decode(p).hi) if b is not None)
    assert sorted(ledger_rows(dbs, table)) == sorted(parts)
    assert report(res)['tables'][0]['split'] == 'key code, 5 segments'
    assert fingerprint(dbs.tgt_sql, table) == fingerprint(dbs.src_sql, table)


def test_key_changed_during_the_copy_is_drift_not_a_duplicate(dbs, tmp_path):
    table = _make(dbs, 'moving-keys', True)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [(table, None, None)])
    parts = store_plan(dbs, table, 4)
    locks = SegmentLocks(dbs, table)
    locks.hold(parts[0])
    try:
        proc = migrate(dbs, manifest, '--parallel', '2', '--split-threshold', '1MB', background=True)
        wait_for(lambda: len(ledger_rows(dbs, table)) == 3, 'the other segments copied', proc)
        # rows of the held segment get keys beyond the last bound (a copied segment)
        hi = KeyRange.decode(parts[0]).hi
        dbs.src_sql('UPDATE "%s" SET id = id + %d WHERE id < %s AND id %% 2 = 0' % (table, FIRST_NEW, hi))
        locks.release(parts[0])
        out, err = proc.communicate(timeout=300)
    finally:
        locks.close()
    assert proc.returncode == 0, out + err
    _no_duplicates(dbs, table)
    res = migrate(dbs, manifest, '--recopy-drifted')
    assert res.returncode == 0, res.stdout + res.stderr
    assert fingerprint(dbs.tgt_sql, table) == fingerprint(dbs.src_sql, table)
