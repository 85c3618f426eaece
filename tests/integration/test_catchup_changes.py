"""Catch-up by changes (validate.changed_rows): ``migrate --recopy-drifted`` without
``--compare-all-rows`` compares the values of the rows the source changed since the copy
snapshot (copy_ledger.source_xmin) and the key sets of all; what it finds, what it repairs,
and what it leaves (a row changed on the target alone), on plain PostgreSQL and Citus."""

import psycopg2

import pytest

from tests.integration import catchup_helpers as ch
from tests.integration.copy_helpers import cli_conn_args, fingerprint, make_old_manifest, run_cli

LEDGER = 'icds_citus_migration.copy_ledger'


def _by_table(res) -> dict:
    assert res.returncode == 0, res.stdout + res.stderr
    return {t['source_table']: t for t in ch.json_of(res.stdout)['tables']}


def _target_of(dbs, table: str) -> str:
    target, where = ch.target_rows_of(table)
    return fingerprint(dbs.tgt_sql, target, where)


def _source_of(dbs, table: str) -> str:
    return fingerprint(dbs.src_sql, table)


def _ledger(dbs) -> str:
    return dbs.tgt_sql("SELECT md5(string_agg(source_table || part || copied_at || coalesce(source_xmin::text, '-'), "
                       "',' ORDER BY 1)) FROM %s" % LEDGER).strip()


def _how(dbs, table: str) -> str:
    """How a table is compared by the catch-up: a keyed one by changes; the keyless one by
    changes too when its target is a plain table (repaired row by row), else whole (a Citus
    reference table: re-copied whole)."""
    return 'whole' if table == ch.KEYLESS and dbs.citus else 'changes'


def _target_state(dbs) -> dict:
    return {t: _target_of(dbs, t) for t in ch.leaf_tables()}


def _check_compared_by_changes(dbs, manifest):
    ch.drift_source(dbs)
    res = ch.catch_up(dbs, manifest, '--parallel', '2')
    by_table = _by_table(res)
    summary = ch.json_of(res.stdout)
    assert summary['errored'] == 0, summary
    for table in ch.leaf_tables():
        got = by_table[table]
        assert got['compared'] == _how(dbs, table), got
        assert got['status'] in ('repaired', 'recopied'), got
        assert got['rows_repaired'] >= 1, got
    assert by_table[ch.PART]['status'] == 'skipped'  # a partitioned source: its partitions are compared
    ch.assert_target_equals_source(dbs)
    again = _by_table(ch.catch_up(dbs, manifest))
    assert all(again[t]['status'] == 'equal' for t in ch.leaf_tables()), again


@pytest.mark.parametrize('target', ['plain', pytest.param('citus', marks=pytest.mark.citus)])
def test_every_keyed_table_is_compared_by_changes(target, request, tmp_path):
    dbs = request.getfixturevalue('citus_dbs' if target == 'citus' else 'dbs')
    manifest = ch.load(dbs, str(tmp_path / 'm.db'), citus=target == 'citus')
    _check_compared_by_changes(dbs, manifest)


def test_several_deleted_rows_in_one_bucket(dbs, tmp_path):
    """200 consecutive ids over about 1500 sub-buckets: many buckets lose two or more keys,
    which their key sums cannot name; those keys are looked up on the source."""
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    child = '%s_%s' % (ch.DROP, ch.MONTHS[0])
    dbs.src_sql('DELETE FROM %s WHERE id BETWEEN 1001 AND 1200' % ch.q(ch.SAME))
    dbs.src_sql('DELETE FROM %s WHERE id BETWEEN 100000 AND 102999' % ch.q(child))
    dbs.src_sql("DELETE FROM %s WHERE id BETWEEN 'doc-00002001' AND 'doc-00002300'" % ch.q(ch.TEXT_KEY))
    res = ch.catch_up(dbs, manifest)
    by_table = _by_table(res)
    for table, deleted in ((ch.SAME, 200), (child, 3000), (ch.TEXT_KEY, 300)):
        got = by_table[table]
        assert got['compared'] == 'changes', got
        assert got['status'] == 'repaired', got
        assert (got['rows_to_repair'], got['rows_deleted'], got['rows_copied']) == (deleted, deleted, 0), got
    assert all(by_table[t]['status'] == 'equal' for t in ch.leaf_tables()
               if t not in (ch.SAME, child, ch.TEXT_KEY)), by_table
    ch.assert_target_equals_source(dbs)


def test_an_old_row_the_target_lost_is_copied_back(dbs, tmp_path):
    """The source never changed these rows: their buckets' key sums do not add up, and the
    look-up finds every target key on the source, so they are compared row by row."""
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    child = '%s_%s' % (ch.DROP, ch.MONTHS[1])
    dbs.tgt_sql('DELETE FROM %s WHERE id = 12345' % ch.q(ch.SAME))
    dbs.tgt_sql('DELETE FROM %s WHERE id = 200777' % ch.q(ch.DROP))  # a row of the second child
    assert _target_of(dbs, ch.SAME) != _source_of(dbs, ch.SAME)
    by_table = _by_table(ch.catch_up(dbs, manifest))
    for table in (ch.SAME, child):
        got = by_table[table]
        assert got['compared'] == 'changes', got
        assert got['status'] == 'repaired', got
        assert (got['rows_to_repair'], got['rows_copied'], got['rows_deleted']) == (1, 1, 0), got
    ch.assert_target_equals_source(dbs)


def test_a_row_changed_on_the_target_alone_needs_compare_all_rows(dbs, tmp_path):
    """The stated limit: by changes, a row changed on the target alone (key unchanged, the
    source's row old) is not looked at; --compare-all-rows compares every row and repairs it."""
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    dbs.tgt_sql("UPDATE %s SET label = 'changed on the target' WHERE id = 777" % ch.q(ch.SAME))
    source = _source_of(dbs, ch.SAME)
    by_table = _by_table(ch.catch_up(dbs, manifest))
    got = by_table[ch.SAME]
    assert (got['compared'], got['status'], got['rows_to_repair']) == ('changes', 'equal', 0), got
    assert _target_of(dbs, ch.SAME) != source  # still differs
    by_table = _by_table(ch.catch_up(dbs, manifest, '--compare-all-rows'))
    got = by_table[ch.SAME]
    assert (got['compared'], got['status'], got['rows_to_repair']) == ('rows', 'repaired', 1), got
    assert by_table[ch.TEXT_KEY]['compared'] == 'rows'
    ch.assert_target_equals_source(dbs)


def test_a_key_held_twice_for_a_changed_and_an_unchanged_row(dbs, tmp_path):
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    table = ch.q(ch.SAME)
    dbs.tgt_sql('ALTER TABLE %s DROP CONSTRAINT %s' % (table, ch.q(ch.SAME + '_pkey')))
    dbs.tgt_sql('INSERT INTO %s SELECT * FROM %s WHERE id IN (7, 20000)' % (table, table))
    dbs.src_sql("UPDATE %s SET label = 'changed on the source' WHERE id = 7" % table)
    by_table = _by_table(ch.catch_up(dbs, manifest))
    got = by_table[ch.SAME]
    assert (got['compared'], got['status'], got['rows_to_repair']) == ('changes', 'repaired', 2), got
    assert dbs.tgt_sql('SELECT count(*) - count(DISTINCT id) FROM %s' % table).strip() == '0'
    assert dbs.tgt_sql('SELECT count(*) FROM %s WHERE id IN (7, 20000)' % table).strip() == '2'
    ch.assert_target_equals_source(dbs)


def test_a_ledger_without_the_copy_snapshot_compares_every_row(dbs, tmp_path):
    """A table copied by an earlier version (no source_xmin) is compared row by row."""
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    dbs.tgt_sql("UPDATE %s SET source_xmin = NULL WHERE source_table = '%s'" % (LEDGER, ch.SAME))
    touched = ch.drift_source(dbs)
    by_table = _by_table(ch.catch_up(dbs, manifest))
    got = by_table[ch.SAME]
    assert (got['compared'], got['status'], got['rows_to_repair']) == ('rows', 'repaired', touched[ch.SAME]), got
    assert by_table[ch.TEXT_KEY]['compared'] == 'changes'
    assert by_table[ch.TEXT_KEY]['rows_to_repair'] == touched[ch.TEXT_KEY]
    ch.assert_target_equals_source(dbs)
    # that catch-up repaired something: the table now has a snapshot, and the next one
    # compares it by changes
    unset = dbs.tgt_sql("SELECT count(*) FROM %s WHERE source_table = '%s' AND source_xmin IS NULL"
                        % (LEDGER, ch.SAME)).strip()
    assert unset == '0'
    dbs.src_sql("UPDATE %s SET label = 'changed later' WHERE id = (SELECT min(id) FROM %s WHERE id > 2468)"
                % (ch.q(ch.SAME), ch.q(ch.SAME)))
    got = _by_table(ch.catch_up(dbs, manifest))[ch.SAME]
    assert (got['compared'], got['status'], got['rows_to_repair']) == ('changes', 'repaired', 1), got
    ch.assert_target_equals_source(dbs)


def test_the_copy_records_its_snapshot_and_a_later_change_is_reported(dbs, tmp_path):
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    unset = dbs.tgt_sql('SELECT string_agg(source_table, \',\' ORDER BY 1) FROM %s '
                        'WHERE source_xmin IS NULL' % LEDGER).strip()
    assert unset == ch.PART  # only the partitioned parent: no rows of its own, no snapshot read
    copied = dbs.tgt_sql("SELECT count(DISTINCT source_table) FROM %s WHERE source_table <> '%s'"
                         % (LEDGER, ch.PART)).strip()
    assert int(copied) == len(ch.leaf_tables())
    newest = int(dbs.tgt_sql('SELECT max(source_xmin) FROM %s' % LEDGER))
    now = int(dbs.src_sql('SELECT txid_snapshot_xmin(txid_current_snapshot())'))
    assert 3 <= newest <= now

    dbs.src_sql("UPDATE %s SET label = 'changed after the copy' WHERE id = 4242" % ch.q(ch.SAME))
    state, ledger = _target_state(dbs), _ledger(dbs)
    by_table = _by_table(ch.catch_up(dbs, manifest, '--dry-run'))
    got = by_table[ch.SAME]
    assert (got['compared'], got['status'], got['rows_to_repair']) == ('changes', 'drifted', 1), got
    assert all(by_table[t]['status'] == 'equal' for t in ch.leaf_tables() if t != ch.SAME), by_table
    assert (_target_state(dbs), _ledger(dbs)) == (state, ledger)  # a dry run writes nothing


def test_rows_written_by_a_transaction_open_during_the_copy(dbs, tmp_path):
    """A transaction running while the copy reads the source (the copy cannot see its rows)
    commits after it: its rows' xmin does not precede the copy snapshot's, so they are
    compared and repaired."""
    table = ch.q(ch.SAME)
    dbs.src_sql(ch.schema(False)[0])
    dbs.tgt_sql(ch.schema(True)[0])
    dbs.src_sql(ch._fill(ch.SAME, 1, 5000, '2020-01-01'))
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [(ch.SAME, None, None)])
    writer = psycopg2.connect(**dbs.source.libpq_kwargs())
    try:
        with writer.cursor() as cur:
            cur.execute("UPDATE %s SET label = 'written during the copy' WHERE id = 5" % table)
            cur.execute("INSERT INTO %s (id, label, month) VALUES (900000, 'inserted during the copy', "
                        "DATE '2020-01-01')" % table)
            cur.execute('SELECT txid_current()')
            writer_xid = int(cur.fetchone()[0])
        dbs.src_sql('SELECT txid_current()')  # a later transaction, committed: the writer is not the newest
        res = run_cli(['migrate', '--yes'] + cli_conn_args(dbs) + [manifest], timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        writer.commit()
    finally:
        writer.close()
    since = int(dbs.tgt_sql("SELECT source_xmin FROM %s WHERE source_table = '%s'" % (LEDGER, ch.SAME)))
    assert since <= writer_xid
    assert dbs.tgt_sql('SELECT count(*) FROM %s WHERE id = 900000 OR label LIKE \'%%during%%\'' % table).strip() == '0'

    before = fingerprint(dbs.tgt_sql, ch.SAME)
    dry = _by_table(ch.catch_up(dbs, manifest, '--dry-run'))[ch.SAME]
    assert (dry['compared'], dry['status'], dry['rows_to_repair']) == ('changes', 'drifted', 2), dry
    assert fingerprint(dbs.tgt_sql, ch.SAME) == before
    got = _by_table(ch.catch_up(dbs, manifest))[ch.SAME]
    assert (got['compared'], got['status'], got['rows_copied']) == ('changes', 'repaired', 2), got
    assert fingerprint(dbs.tgt_sql, ch.SAME) == fingerprint(dbs.src_sql, ch.SAME)


def _drift_again(dbs) -> None:
    """Other rows than drift_source's: changed, deleted and inserted (new keys)."""
    for table in ch.leaf_tables():
        t = ch.q(table)
        dbs.src_sql("UPDATE ONLY %s SET label = label || ' again' WHERE ctid IN "
                    "(SELECT ctid FROM ONLY %s ORDER BY md5(id::text || 'again') LIMIT 7)" % (t, t))
        dbs.src_sql("DELETE FROM ONLY %s WHERE ctid IN (SELECT ctid FROM ONLY %s WHERE label NOT LIKE "
                    "'%%%% again' ORDER BY md5(id::text || 'gone') LIMIT 3)" % (t, t))
        month = 'month' if table not in (ch.KEEP, ch.DROP) else 'NULL'
        key = "'doc-again-' || id" if table == ch.TEXT_KEY else 'id + 7000000'
        grp = 'grp, ' if table == ch.TEXT_KEY else ''
        dbs.src_sql("INSERT INTO %s (%sid, label, doc, tags, amount, at, raw, month) SELECT %s%s, "
                    "'inserted again', doc, tags, amount, at, raw, %s FROM ONLY %s ORDER BY id LIMIT 2"
                    % (t, grp, grp, key, month, t))


def test_repeated_catch_ups(dbs, tmp_path):
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    for drift in (ch.drift_source, _drift_again):
        drift(dbs)
        by_table = _by_table(ch.catch_up(dbs, manifest))
        for table in ch.leaf_tables():
            got = by_table[table]
            assert got['compared'] == _how(dbs, table), got
            assert got['status'] == 'repaired', got
        ch.assert_target_equals_source(dbs)


def test_rows_written_by_a_transaction_open_during_a_catch_up(dbs, tmp_path):
    """A catch-up that repaired something moves the recorded source xmin forward, to a
    snapshot from before its comparison: a transaction still running then (its rows invisible
    to the comparison) commits afterwards, and the next catch-up still finds its rows."""
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    child = '%s_%s' % (ch.DROP, ch.MONTHS[0])
    copied = int(dbs.tgt_sql("SELECT min(source_xmin) FROM %s WHERE source_table = '%s'" % (LEDGER, ch.SAME)))
    ch.drift_source(dbs)  # so that the catch-up repairs something
    writer = psycopg2.connect(**dbs.source.libpq_kwargs())
    try:
        with writer.cursor() as cur:
            cur.execute("UPDATE %s SET label = 'written during the catch-up' WHERE id = 4343" % ch.q(ch.SAME))
            assert cur.rowcount == 1
            cur.execute("INSERT INTO %s (id, label, month) VALUES (900001, 'inserted during the catch-up', "
                        "DATE '2020-01-01')" % ch.q(ch.SAME))
            cur.execute("UPDATE %s SET label = 'written during the catch-up' WHERE id = 100123" % ch.q(child))
            assert cur.rowcount == 1
            cur.execute('SELECT txid_current()')
            writer_xid = int(cur.fetchone()[0])
        dbs.src_sql('SELECT txid_current()')  # a later transaction, committed: the writer is not the newest
        first = _by_table(ch.catch_up(dbs, manifest))
        assert all(first[t]['status'] == 'repaired' for t in ch.leaf_tables()), first
        writer.commit()
    finally:
        writer.close()
    advanced = int(dbs.tgt_sql("SELECT min(source_xmin) FROM %s WHERE source_table = '%s'" % (LEDGER, ch.SAME)))
    assert copied < advanced <= writer_xid  # forward, but not past the running transaction
    assert _target_of(dbs, ch.SAME) != _source_of(dbs, ch.SAME)

    again = _by_table(ch.catch_up(dbs, manifest))
    for table, rows in ((ch.SAME, 2), (child, 1)):
        got = again[table]
        assert (got['compared'], got['status'], got['rows_to_repair']) == ('changes', 'repaired', rows), got
    assert all(again[t]['status'] == 'equal' for t in ch.leaf_tables() if t not in (ch.SAME, child)), again
    ch.assert_target_equals_source(dbs)


def test_a_ledger_from_before_the_snapshot_column(dbs, tmp_path):
    """A ledger made by a version without copy_ledger.source_xmin: every table is compared by
    its rows' values and repaired; the column is added in place for the next copies."""
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    dbs.tgt_sql('ALTER TABLE %s DROP COLUMN source_xmin' % LEDGER)
    ch.drift_source(dbs)
    by_table = _by_table(ch.catch_up(dbs, manifest))
    for table in ch.leaf_tables():
        got = by_table[table]
        assert got['compared'] == ('whole' if table == ch.KEYLESS else 'rows'), got
        assert got['status'] == 'repaired', got
    ch.assert_target_equals_source(dbs)
    assert dbs.tgt_sql("SELECT count(*) FROM pg_attribute WHERE attrelid = '%s'::regclass "
                       "AND attname = 'source_xmin' AND NOT attisdropped" % LEDGER).strip() == '1'


def test_a_keyless_table_with_rows_held_twice(dbs, tmp_path):
    """Without a key, rows are told apart by their hash: a row the source now holds twice
    (an identical row inserted since the copy), and one the target alone holds twice."""
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    t = ch.q(ch.KEYLESS)
    dbs.src_sql('INSERT INTO %s SELECT * FROM %s WHERE id = 11' % (t, t))
    dbs.tgt_sql('INSERT INTO %s SELECT * FROM %s WHERE id = 2222' % (t, t))
    got = _by_table(ch.catch_up(dbs, manifest))[ch.KEYLESS]
    assert (got['compared'], got['status'], got['rows_to_repair']) == ('changes', 'repaired', 2), got
    assert (got['rows_copied'], got['rows_deleted']) == (1, 1), got
    assert dbs.tgt_sql('SELECT count(*) FROM %s WHERE id IN (11, 2222)' % t).strip() == '3'
    ch.assert_target_equals_source(dbs)


def test_a_keyless_table_whose_source_only_deleted_rows(dbs, tmp_path):
    """No row changed on the source, two deleted: the target's sums alone tell the buckets,
    then its rows of those buckets are read and the two deleted rows deleted."""
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    t = ch.q(ch.KEYLESS)
    assert dbs.src_sql('WITH d AS (DELETE FROM %s WHERE id IN (11, 2222) RETURNING 1) '
                       'SELECT count(*) FROM d' % t).strip() == '2'
    got = _by_table(ch.catch_up(dbs, manifest))[ch.KEYLESS]
    assert (got['compared'], got['status']) == ('changes', 'repaired'), got
    assert (got['rows_copied'], got['rows_deleted']) == (0, 2), got
    ch.assert_target_equals_source(dbs)


def test_compare_tables_compares_by_changes_when_asked(dbs, tmp_path):
    """compare_tables (segments, repair) compares every row by default; compare_all_rows
    false is the playbook's catch-up while the mirrors write: by changes, same repairs."""
    from tests.module_runner import run_module
    manifest = ch.load(dbs, str(tmp_path / 'm.db'))
    ch.drift_source(dbs)
    args = dbs.module_args(path=manifest, segments=True)
    found = run_module('compare_tables', args)
    assert {t['compared'] for t in found['tables'] if t['status'] != 'skipped'} == {'rows', 'whole'}, found
    fixed = run_module('compare_tables', dict(args, repair=True, compare_all_rows=False, parallel=2))
    assert fixed['changed'] is True and not fixed.get('failed'), fixed
    assert {t['compared'] for t in fixed['tables'] if t['status'] != 'skipped'} == {'changes'}, fixed
    assert sorted(fixed['repaired']) == sorted(ch.leaf_tables())
    ch.assert_target_equals_source(dbs)


def test_compare_all_rows_without_the_catch_up_is_refused(dbs, tmp_path):
    from tests.module_runner import run_module
    manifest = make_old_manifest(str(tmp_path / 'm.db'), ch.manifest_rows())
    res = run_cli(['migrate', '--yes', '--compare-all-rows'] + cli_conn_args(dbs) + [manifest])
    assert res.returncode != 0
    assert '--compare-all-rows applies to the catch-up: add --recopy-drifted, or drop it' in res.stdout + res.stderr
    out = run_module('migrate_tables', dbs.module_args(path=manifest, compare_all_rows=True))
    assert out.get('failed') and 'compare_all_rows applies to the catch-up: add recopy_drifted' in out['msg'], out
