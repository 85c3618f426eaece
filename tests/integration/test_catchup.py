"""Catch-up in proportion to the change (issue 12): segment checksums find the drift, only the
differing rows are replaced, for every mapping kind, on plain PostgreSQL and Citus targets;
safe beside mirrored writes and after a SIGKILL."""

import signal
import threading

import psycopg2
import pytest

from tests.integration import catchup_helpers as ch
from tests.integration.copy_helpers import fingerprint

SEGMENTED = (ch.SAME, ch.TEXT_KEY)


def _versions(dbs):
    return {t: ch.row_versions(dbs, t) for t in ch.leaf_tables() if t != ch.KEYLESS}


def _repairs(dbs) -> str:
    return dbs.tgt_sql('SELECT count(*) FROM icds_citus_migration.copy_repairs').strip()


def _ledger(dbs) -> str:
    return dbs.tgt_sql('SELECT md5(string_agg(source_table || part || copied_at || coalesce(source_xmin::text, \'\'), '
                       '\',\' ORDER BY source_table, part)) '
                       'FROM icds_citus_migration.copy_ledger').strip()


def _check_drift_repaired(dbs, manifest):
    touched = ch.drift_source(dbs)
    before = _versions(dbs)
    keyless_before = fingerprint(dbs.tgt_sql, ch.KEYLESS)
    keyless_versions = ch.row_versions(dbs, ch.KEYLESS)

    dry = ch.catch_up(dbs, manifest, '--dry-run')
    assert dry.returncode == 0, dry.stdout + dry.stderr
    report = ch.json_of(dry.stdout)
    by_table = {t['source_table']: t for t in report['tables']}
    assert all(by_table[t]['status'] == 'drifted' for t in ch.leaf_tables()), by_table
    # compared by its changes since the copy: by key hash alone, one segment of key-hash
    # buckets (a comparison of every row cuts it in key ranges: see the compare_tables test)
    assert by_table[ch.SAME]['compared'] == 'changes' and by_table[ch.SAME]['segments'] == 1, by_table[ch.SAME]
    for table in SEGMENTED:
        assert by_table[table]['rows_to_repair'] == touched[table]
    assert _versions(dbs) == before and fingerprint(dbs.tgt_sql, ch.KEYLESS) == keyless_before

    res = ch.catch_up(dbs, manifest, '--parallel', '2')
    assert res.returncode == 0, res.stdout + res.stderr
    summary = ch.json_of(res.stdout)
    assert summary['errored'] == 0, summary
    # the keyless table is repaired row by row (by row hash), or re-copied whole on Citus (a
    # reference table: no ctid to name a row by)
    assert summary['recopied'] == (1 if dbs.citus else 0)
    assert summary['recopied'] + summary['repaired'] == len(ch.leaf_tables())
    ch.assert_target_equals_source(dbs)
    after = _versions(dbs)
    for table, rows in touched.items():
        if table != ch.KEYLESS:  # only the drifted rows were written
            assert ch.rewritten(before[table], after[table]) <= rows, table
    if not dbs.citus:  # the keyless table too (its ids happen to be unique)
        assert ch.rewritten(keyless_versions, ch.row_versions(dbs, ch.KEYLESS)) <= touched[ch.KEYLESS]
    assert 'Catch-up: %d of %d tables compared' % (len(ch.manifest_rows()), len(ch.manifest_rows())) in res.stdout

    # no drift: nothing written, not even the ledger or the repair log
    versions, repairs, ledger = _versions(dbs), _repairs(dbs), _ledger(dbs)
    again = ch.catch_up(dbs, manifest)
    assert again.returncode == 0, again.stdout + again.stderr
    assert 'Nothing to re-copy: every migrated table matches the source.' in again.stdout
    assert (_versions(dbs), _repairs(dbs), _ledger(dbs)) == (versions, repairs, ledger)


def test_catch_up_repairs_only_the_drifted_rows(dbs, tmp_path):
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    _check_drift_repaired(dbs, manifest)


@pytest.mark.citus
def test_catch_up_into_citus(citus_dbs, tmp_path):
    manifest = ch.load(citus_dbs, str(tmp_path / 'm.db'), citus=True)
    _check_drift_repaired(citus_dbs, manifest)


def test_sigkill_during_the_repair_then_a_rerun(dbs, tmp_path):
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    ch.drift_source(dbs)
    before = _versions(dbs)
    killed = ch.catch_up(dbs, manifest, env={'ICDS_MIGRATION_FAULT': 'repair_before_commit'})
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert _versions(dbs) == before  # the range being repaired is untouched
    res = ch.catch_up(dbs, manifest)
    assert res.returncode == 0, res.stdout + res.stderr
    ch.assert_target_equals_source(dbs)


def _upserts(params, table: str, stop: threading.Event, done: list) -> None:
    """The application with the mirrors on: the same upsert on the source, then the target."""
    conns = [psycopg2.connect(**p.libpq_kwargs()) for p in params]
    for conn in conns:
        conn.autocommit = True
    i = 0
    try:
        while not stop.is_set() or i < 50:
            key = 1 + (i * 7919) % (ch.ROWS + 200)  # existing rows and new ones
            for conn in conns:
                with conn.cursor() as cur:
                    cur.execute('INSERT INTO %s (id, label, month) VALUES (%%s, %%s, DATE \'2020-01-01\') '
                                'ON CONFLICT (id) DO UPDATE SET label = EXCLUDED.label' % ch.q(table),
                                (key, 'mirrored write %d' % i))
            i += 1
    finally:
        done.append(i)
        for conn in conns:
            conn.close()


def test_mirrored_upserts_during_the_catch_up(dbs, tmp_path):
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    ch.drift_source(dbs)
    stop, done = threading.Event(), []
    writer = threading.Thread(target=_upserts, args=((dbs.source, dbs.target), ch.SAME, stop, done))
    writer.start()
    try:
        res = ch.catch_up(dbs, manifest, '--parallel', '2')
    finally:
        stop.set()
        writer.join()
    assert res.returncode == 0, res.stdout + res.stderr
    assert done[0] >= 50
    ch.assert_target_equals_source(dbs)
    assert dbs.tgt_sql('SELECT count(*) - count(DISTINCT id) FROM %s' % ch.q(ch.SAME)).strip() == '0'


def test_a_key_the_target_holds_twice_is_left_once(dbs, tmp_path):
    """A target table without the source's unique key can hold a row twice (an insert
    replayed by hand, say): its bucket's count differs although every key's row hash
    matches; the catch-up leaves the row once, as on the source."""
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    table = ch.q(ch.SAME)
    dbs.tgt_sql('ALTER TABLE %s DROP CONSTRAINT %s' % (table, ch.q(ch.SAME + '_pkey')))
    dbs.tgt_sql('INSERT INTO %s SELECT * FROM %s WHERE id IN (7, 20000)' % (table, table))
    res = ch.catch_up(dbs, manifest)
    assert res.returncode == 0, res.stdout + res.stderr
    by_table = {t['source_table']: t for t in ch.json_of(res.stdout)['tables']}
    assert by_table[ch.SAME]['status'] == 'repaired' and by_table[ch.SAME]['rows_to_repair'] == 2
    assert dbs.tgt_sql('SELECT count(*) - count(DISTINCT id) FROM %s' % table).strip() == '0'
    ch.assert_target_equals_source(dbs)


def test_a_big_segment_is_narrowed_to_rows(dbs, tmp_path):
    """A segment far bigger than a row-level range (stale estimates: one segment) is narrowed
    to its rows: by its differing sub-buckets, and by bisection at source percentiles (the
    path of a segment with too much drift for one read); both find the same rows."""
    from ansible_collections.icds.citus_migration.plugins.module_utils.validate import segment_checksum as sc
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    ch.drift_source(dbs)
    src, tgt = (psycopg2.connect(**p.libpq_kwargs()) for p in (dbs.source, dbs.target))
    try:
        cols = ['id', 'label', 'doc', 'tags', 'amount', 'at', 'raw', 'month']
        scope = sc.Scope(ch.SAME, ch.SAME, 'table', True, None, cols, 'id', 'int8')
        comparer = sc.Comparer(sc.Side(src, 'public', 'source'), sc.Side(tgt, 'public', 'target'), scope)
        drift = comparer.segments([])
        whole = sc.Segment(sc.KeyRange('id'), drift.source_rows, drift.target_rows, 0, 1)
        bisected = comparer.narrow(whole)
    finally:
        src.close()
        tgt.close()
    assert drift.segments == 1 and drift.differing_segments == 1
    assert len(bisected) >= 2  # several small ranges
    expected = int(dbs.src_sql('SELECT count(*) FROM %s WHERE label LIKE \'%%changed\'' % ch.q(ch.SAME)))
    for ranges in (drift.ranges, bisected):
        assert sum(len(r.changed) for r in ranges) == expected
        assert sum(len(r.missing) for r in ranges) == 3
        assert sum(len(r.extra) for r in ranges) == ch.ROWS // 2000
    assert sorted(k for r in bisected for k in r.keys) == sorted(k for r in drift.ranges for k in r.keys)
    assert manifest


def test_compare_tables_segments_reports_then_repairs(dbs, tmp_path):
    from tests.module_runner import run_module
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    touched = ch.drift_source(dbs)
    before = _versions(dbs)
    found = run_module('compare_tables', dbs.module_args(path=manifest, segments=True))
    assert found['changed'] is False and not found.get('failed'), found
    by_table = {t['source_table']: t for t in found['tables']}
    assert by_table[ch.SAME]['rows_to_repair'] == touched[ch.SAME]
    assert by_table[ch.SAME]['segments'] >= 2 and by_table[ch.SAME]['ranges_differing'] >= 1
    assert sorted(found['drift']) == sorted(ch.leaf_tables())
    checked = run_module('compare_tables', dbs.module_args(path=manifest, segments=True, repair=True), check=True)
    assert checked['changed'] is True and checked['repaired'] == [] and _versions(dbs) == before
    fixed = run_module('compare_tables', dbs.module_args(path=manifest, segments=True, repair=True,
                                                       parallel=2, fail_on_drift=True))
    assert fixed['changed'] is True and not fixed.get('failed'), fixed
    assert sorted(fixed['repaired']) == sorted(ch.leaf_tables())
    assert fixed['rows_repaired'] >= sum(touched.values())
    ch.assert_target_equals_source(dbs)
    clean = run_module('compare_tables', dbs.module_args(path=manifest, segments=True, fail_on_drift=True))
    assert clean['changed'] is False and clean['drift'] == [] and not clean.get('failed'), clean
