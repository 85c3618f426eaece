"""compare_tables: row counts and checksums after a real copy, drift, new-row watching."""

import time
from datetime import datetime

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.validate.compare import (
    compare_manifest, compare_settled, rows_from_pairs, wait_for_new_rows)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import Manifest
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import connect
from tests.integration.copy_helpers import (
    MANIFEST_ROWS, WEIRD, cli_conn_args, load_nasty, make_old_manifest, run_cli)
from tests.module_runner import run_module

W = WEIRD.replace('"', '""')
CHILD1, CHILD2 = 'child_health_monthly_2020-01-01', 'child_health_monthly_2020-02-01'


def copy_all(dbs, manifest):
    res = run_cli(['migrate', '--yes'] + cli_conn_args(dbs) + [manifest])
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture
def copied(dbs, tmp_path):
    load_nasty(dbs, rows=60)
    dbs.manifest = make_old_manifest(str(tmp_path / 'manifest.db'), MANIFEST_ROWS)
    copy_all(dbs, dbs.manifest)
    return dbs


def compare(dbs, rows=None, checksums=True, family_rows=None):
    with Manifest.open(dbs.manifest, readonly=True) as manifest:
        every = manifest.rows()
    src, tgt = connect(dbs.source), connect(dbs.target)
    try:
        out = compare_manifest(src, tgt, every if rows is None else rows, checksums=checksums,
                               family_rows=every if family_rows is None else family_rows)
    finally:
        src.close()
        tgt.close()
    return {c.source_table: c for c in out}


def drifted(result):
    return sorted(name for name, c in result.items() if not c.match)


def module_args(dbs, **extra):
    return dbs.module_args(**extra)


def test_after_copy_everything_matches_with_slices_from_checks(copied):
    # the target prints times, dates and bytea differently by default: checksums must not care
    copied.tgt_sql("ALTER DATABASE \"%s\" SET TimeZone = 'Asia/Kolkata'" % copied.target_db)
    copied.tgt_sql("ALTER DATABASE \"%s\" SET DateStyle = 'SQL, DMY'" % copied.target_db)
    copied.tgt_sql("ALTER DATABASE \"%s\" SET bytea_output = 'escape'" % copied.target_db)
    res = compare(copied)
    assert drifted(res) == []
    assert set(res) == {r[0] for r in MANIFEST_ROWS}
    assert {n: c.kind for n, c in res.items()} == {
        WEIRD: 'table', 'agg_awc': 'table', 'agg_awc_2020-01-01_1': 'table',
        'agg_awc_2020-02-01_1': 'table', 'child_health_monthly': 'slice',
        CHILD1: 'slice', CHILD2: 'slice'}
    assert (res[CHILD1].source_rows, res[CHILD1].target_rows) == (60, 60)
    assert (res[CHILD2].source_rows, res[CHILD2].target_rows) == (71, 71)
    assert (res['child_health_monthly'].source_rows, res['child_health_monthly'].target_rows) == (5, 5)
    assert (res['agg_awc'].source_rows, res['agg_awc'].target_rows) == (3, 3)
    assert res[CHILD1].target_table == 'child_health_monthly'
    assert res[CHILD1].predicate == "((month = '2020-01-01'::date))"
    assert res[CHILD1].source_checksum == res[CHILD1].target_checksum
    assert res[CHILD1].source_checksum != res[CHILD2].source_checksum
    assert all(c.source_checksum is not None and c.error is None for c in res.values())


def test_rows_added_on_the_source_show_as_drift_of_that_slice_only(copied):
    copied.src_sql('INSERT INTO "%s" (id, month) VALUES (-1, DATE \'2020-02-01\'), '
                   '(-2, DATE \'2020-02-01\')' % CHILD2)
    copied.src_sql('INSERT INTO "%s" (id) VALUES (-1)' % W)
    res = compare(copied, checksums=False)
    assert drifted(res) == sorted([CHILD2, WEIRD])
    assert (res[CHILD2].source_rows, res[CHILD2].target_rows) == (73, 71)
    assert res[CHILD1].match and res['child_health_monthly'].match


def test_rows_deleted_or_changed_on_the_target(copied):
    copied.tgt_sql('DELETE FROM "agg_awc_2020-01-01_1" WHERE id = 7')
    copied.tgt_sql("UPDATE child_health_monthly SET label = 'changed' WHERE id = 3 AND month = '2020-01-01'")
    res = compare(copied)
    assert drifted(res) == sorted(['agg_awc_2020-01-01_1', CHILD1])
    assert (res['agg_awc_2020-01-01_1'].source_rows, res['agg_awc_2020-01-01_1'].target_rows) == (60, 59)
    # the update keeps the count: only the checksum tells
    assert res[CHILD1].source_rows == res[CHILD1].target_rows == 60
    assert res[CHILD1].source_checksum != res[CHILD1].target_checksum
    assert compare(copied, checksums=False)[CHILD1].match is True  # counts alone agree


def test_a_copied_parent_row_in_the_wrong_slice_is_drift_of_parent_and_child(copied):
    # a parent row (month NULL) turned into a January row on the target
    copied.tgt_sql("UPDATE ONLY child_health_monthly SET month = '2020-01-01' WHERE id = 1 AND month IS NULL")
    res = compare(copied, checksums=False)
    assert drifted(res) == sorted(['child_health_monthly', CHILD1])
    assert res['child_health_monthly'].target_rows == 4 and res[CHILD1].target_rows == 61


def test_child_without_check_is_compared_as_a_group(dbs, tmp_path):
    dbs.src_sql('CREATE TABLE "ucr_icds-cas_x_a1b2c3d4" (id int, month date, v text)')
    dbs.tgt_sql('CREATE TABLE "ucr_icds-cas_x_a1b2c3d4" (id int, month date, v text)')
    dbs.src_sql('CREATE TABLE "ucr_icds-cas_x_a1b2c3d4_2020-01" (CHECK (month = DATE \'2020-01-01\')) '
                'INHERITS ("ucr_icds-cas_x_a1b2c3d4")')
    dbs.src_sql('CREATE TABLE "ucr_icds-cas_x_a1b2c3d4_misc" () INHERITS ("ucr_icds-cas_x_a1b2c3d4")')
    dbs.src_sql("INSERT INTO \"ucr_icds-cas_x_a1b2c3d4_2020-01\" SELECT g, '2020-01-01', 'v' || g "
                "FROM generate_series(1, 40) g")
    dbs.src_sql("INSERT INTO \"ucr_icds-cas_x_a1b2c3d4_misc\" SELECT g, NULL, 'm' || g "
                "FROM generate_series(1, 9) g")
    dbs.src_sql("INSERT INTO \"ucr_icds-cas_x_a1b2c3d4\" VALUES (0, NULL, 'p')")
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), [
        ('ucr_icds-cas_x_a1b2c3d4', None, None),
        ('ucr_icds-cas_x_a1b2c3d4_2020-01', '2020-01-01', 'ucr_icds-cas_x_a1b2c3d4'),
        ('ucr_icds-cas_x_a1b2c3d4_misc', None, 'ucr_icds-cas_x_a1b2c3d4')])
    copy_all(dbs, dbs.manifest)
    res = compare(dbs)
    assert list(res) == ['ucr_icds-cas_x_a1b2c3d4']
    group = res['ucr_icds-cas_x_a1b2c3d4']
    assert group.kind == 'group' and group.match, group
    assert (group.source_rows, group.target_rows) == (50, 50)
    assert group.members == ['ucr_icds-cas_x_a1b2c3d4', 'ucr_icds-cas_x_a1b2c3d4_2020-01',
                             'ucr_icds-cas_x_a1b2c3d4_misc']
    assert 'ucr_icds-cas_x_a1b2c3d4_misc' in group.note and 'no CHECK' in group.note
    dbs.src_sql("INSERT INTO \"ucr_icds-cas_x_a1b2c3d4_misc\" VALUES (99, NULL, 'late')")
    res = compare(dbs)
    assert drifted(res) == ['ucr_icds-cas_x_a1b2c3d4']
    assert (res['ucr_icds-cas_x_a1b2c3d4'].source_rows, res['ucr_icds-cas_x_a1b2c3d4'].target_rows) == (51, 50)


def test_partitions_slice_by_their_bounds_and_partitioned_targets_count_their_partitions(dbs, tmp_path):
    dbs.src_sql('CREATE TABLE pm (id int, month date) PARTITION BY RANGE (month)')
    dbs.src_sql("CREATE TABLE \"pm_2020-01\" PARTITION OF pm FOR VALUES FROM ('2020-01-01') TO ('2020-02-01')")
    dbs.src_sql("CREATE TABLE \"pm_2020-02\" PARTITION OF pm FOR VALUES FROM ('2020-02-01') TO ('2020-03-01')")
    dbs.src_sql("INSERT INTO pm SELECT g, DATE '2020-01-01' + (g % 50) FROM generate_series(1, 100) g")
    dbs.tgt_sql('CREATE TABLE pm (id int, month date)')
    dbs.src_sql('CREATE TABLE "to-part" (id int, month date)')
    dbs.src_sql("INSERT INTO \"to-part\" SELECT g, DATE '2020-01-01' + (g % 50) FROM generate_series(1, 30) g")
    dbs.tgt_sql('CREATE TABLE "to-part" (id int, month date) PARTITION BY RANGE (month)')
    dbs.tgt_sql("CREATE TABLE \"to-part_all\" PARTITION OF \"to-part\" FOR VALUES FROM ('2020-01-01') TO ('2021-01-01')")
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), [
        ('pm', None, None), ('pm_2020-01', '2020-01-01', 'pm'), ('pm_2020-02', '2020-02-01', 'pm'),
        ('to-part', None, None)])
    copy_all(dbs, dbs.manifest)
    res = compare(dbs)
    assert drifted(res) == [], [c.as_dict() for c in res.values()]
    assert [(n, c.kind, c.target_rows) for n, c in res.items()] == [
        ('pm', 'slice', 0), ('pm_2020-01', 'slice', 62), ('pm_2020-02', 'slice', 38), ('to-part', 'table', 30)]
    assert "'2020-02-01'::date" in res['pm_2020-01'].predicate
    dbs.tgt_sql("DELETE FROM pm WHERE id = 40")  # a February row
    assert drifted(compare(dbs)) == ['pm_2020-02']


def test_missing_tables_are_error_entries(copied):
    copied.tgt_sql('DROP TABLE "agg_awc_2020-02-01_1"')
    rows = rows_from_pairs([('agg_awc', 'agg_awc'), ('agg_awc_2020-02-01_1', 'agg_awc_2020-02-01_1'),
                            ('no_such_table', 'no_such_table')])
    res = compare(copied, rows=rows, family_rows=rows)
    assert res['agg_awc'].match
    assert res['agg_awc_2020-02-01_1'].error == "target table 'agg_awc_2020-02-01_1' does not exist"
    assert res['no_such_table'].error == "source table(s) 'no_such_table' do not exist"
    assert not res['no_such_table'].match


def test_module_matches_then_fails_on_drift(copied):
    ok = run_module('compare_tables', module_args(copied, path=copied.manifest, checksums=True))
    assert not ok.get('failed'), ok
    assert ok['changed'] is False
    assert (ok['matched_count'], ok['drift_count'], ok['drift']) == (7, 0, [])
    slice_entry = [t for t in ok['tables'] if t['source_table'] == CHILD2][0]
    assert slice_entry['kind'] == 'slice' and slice_entry['target_rows'] == 71

    copied.tgt_sql('DELETE FROM child_health_monthly WHERE month = \'2020-02-01\' AND id <= 3')
    report = run_module('compare_tables', module_args(copied, path=copied.manifest))
    assert not report.get('failed') and report['drift'] == [CHILD2], report
    failed = run_module('compare_tables', module_args(copied, path=copied.manifest, fail_on_drift=True,
                                                      tables=[CHILD1, CHILD2]), check=True)
    assert failed['failed'] is True
    assert failed['msg'] == ('1 of 2 tables drifted: child_health_monthly_2020-02-01 '
                             '(source 71 rows, target 68 rows)')
    assert failed['matched_count'] == 1


def test_a_difference_the_mirror_closes_between_passes_is_not_drift(copied):
    """A row written to the source whose target write lands while the comparison waits: the
    recheck sees it matched. A row that never reaches the target stays drift, after every pass."""
    copied.src_sql('INSERT INTO "agg_awc_2020-01-01_1" SELECT * FROM "agg_awc_2020-01-01_1" WHERE id = 7')
    copied.src_sql('UPDATE "agg_awc_2020-01-01_1" SET id = -7 WHERE ctid = (SELECT max(ctid) FROM '
                   '"agg_awc_2020-01-01_1" WHERE id = 7)')
    copied.src_sql('INSERT INTO "%s" (id) VALUES (-1)' % W)
    with Manifest.open(copied.manifest, readonly=True) as manifest:
        every = manifest.rows()
    waits = []

    def mirror_writes(seconds):  # the application's second write, to the target
        waits.append(seconds)
        if len(waits) == 1:
            copied.tgt_sql('INSERT INTO "agg_awc_2020-01-01_1" SELECT * FROM "agg_awc_2020-01-01_1" '
                           'WHERE id = 7')
            copied.tgt_sql('UPDATE "agg_awc_2020-01-01_1" SET id = -7 WHERE ctid = (SELECT max(ctid) '
                           'FROM "agg_awc_2020-01-01_1" WHERE id = 7)')

    src, tgt = connect(copied.source), connect(copied.target)
    try:
        once = {c.source_table: c for c in compare_manifest(src, tgt, every, checksums=True)}
        settled = {c.source_table: c for c in compare_settled(
            src, tgt, every, rechecks=3, interval=0.5, sleep=mirror_writes, checksums=True)}
    finally:
        src.close()
        tgt.close()
    assert drifted(once) == sorted(['agg_awc_2020-01-01_1', WEIRD])
    assert drifted(settled) == [WEIRD]
    assert settled['agg_awc_2020-01-01_1'].source_rows == settled['agg_awc_2020-01-01_1'].target_rows == 61
    assert waits == [0.5, 0.5, 0.5]  # the table that never matches is compared on every pass
    assert settled[WEIRD].source_rows == settled[WEIRD].target_rows + 1


def test_module_rechecks_before_it_fails_on_drift(copied):
    copied.tgt_sql('DELETE FROM child_health_monthly WHERE month = \'2020-02-01\' AND id <= 3')
    failed = run_module('compare_tables', module_args(copied, path=copied.manifest, fail_on_drift=True,
                                                      rechecks=2, recheck_interval=0.1))
    assert failed['failed'] is True and failed['drift'] == [CHILD2], failed
    assert 'child_health_monthly_2020-02-01 (source 71 rows, target 68 rows)' in failed['msg']


def test_module_only_migrated_and_tables_without_manifest(dbs, tmp_path):
    load_nasty(dbs, rows=20)
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    res = run_cli(['migrate', '--yes', '--table', CHILD1] + cli_conn_args(dbs) + [dbs.manifest])
    assert res.returncode == 0, res.stderr
    out = run_module('compare_tables', module_args(dbs, path=dbs.manifest, fail_on_drift=True))
    assert not out.get('failed'), out
    assert [t['source_table'] for t in out['tables']] == [CHILD1]
    everything = run_module('compare_tables', module_args(dbs, path=dbs.manifest, only_migrated=False))
    assert everything['drift_count'] == 6 and CHILD1 not in everything['drift']
    direct = run_module('compare_tables', module_args(dbs, tables=[
        {'source': CHILD1, 'target': 'child_health_monthly'}, 'agg_awc']))
    assert [(t['kind'], t['match']) for t in direct['tables']] == [('slice', True), ('table', False)]
    bad = run_module('compare_tables', module_args(dbs, path=dbs.manifest, tables=['nope']))
    assert bad['failed'] and 'not in the manifest' in bad['msg'] and 'nope' in bad['msg']


def test_password_never_in_module_output(dbs):
    dbs.src_sql("CREATE ROLE reader LOGIN SUPERUSER PASSWORD 'Src-S3cret-pw'")
    dbs.src_sql('CREATE TABLE t (id int)')
    dbs.tgt_sql('CREATE TABLE t (id int)')
    args = module_args(dbs, tables=['t'])
    args['source'].update(login_user='reader', login_password='Src-S3cret-pw')
    ok = run_module('compare_tables', args)
    assert not ok.get('failed') and ok['drift'] == [], ok
    args['source']['login_password'] = 'Wrong-S3cret-pw'
    bad = run_module('compare_tables', args)
    assert bad['failed'] and 'password authentication failed' in bad['msg'], bad
    assert 'S3cret' not in ok.stdout + ok.stderr + bad.stdout + bad.stderr
    dbs.src_sql('DROP ROLE reader')


NEW_ROWS_DDL = 'CREATE TABLE "ucr_icds-cas_new_rows_0f0f0f0f" (id int, inserted_at timestamptz)'
INSERT_NEW = 'INSERT INTO "ucr_icds-cas_new_rows_0f0f0f0f" VALUES (1, now())'


def _new_rows_tables(dbs):
    dbs.src_sql(NEW_ROWS_DDL)
    dbs.tgt_sql(NEW_ROWS_DDL)
    old = "INSERT INTO \"ucr_icds-cas_new_rows_0f0f0f0f\" VALUES (0, now() - interval '1 day')"
    dbs.src_sql(old)
    dbs.tgt_sql(old)
    return dbs.tgt_sql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')").strip()


class _InsertOnFirstWait:
    """A ``sleep`` for wait_for_new_rows: the first time the poller waits (it polled both
    databases once and found nothing new), the new rows arrive; later waits really sleep."""

    def __init__(self, *calls):
        self.calls = calls
        self.waits = 0

    def __call__(self, seconds: float) -> None:
        self.waits += 1
        if self.waits == 1:
            for call in self.calls:
                call()
        else:
            time.sleep(seconds)


def test_wait_sees_new_rows_in_both_databases(dbs):
    since = _new_rows_tables(dbs)
    arrive = _InsertOnFirstWait(lambda: dbs.src_sql(INSERT_NEW), lambda: dbs.tgt_sql(INSERT_NEW))
    results = wait_for_new_rows(lambda: connect(dbs.source), lambda: connect(dbs.target),
                                ['ucr_icds-cas_new_rows_0f0f0f0f'], 'inserted_at', since,
                                timeout_s=20, interval_s=0.3, sleep=arrive)
    (res,) = results
    assert arrive.waits == 1  # nothing new at the first poll, both seen at the second
    assert (res.seen_in_source, res.seen_in_target, res.timed_out, res.error) == (True, True, False, None)
    assert (res.source_rows, res.target_rows) == (1, 1)
    assert res.source_seen_after_s is not None and res.target_seen_after_s is not None
    assert datetime.fromisoformat(res.source_first_row) >= datetime.fromisoformat(since)
    assert datetime.fromisoformat(res.target_first_row) >= datetime.fromisoformat(since)


def test_wait_times_out_naming_the_missing_side(dbs):
    since = _new_rows_tables(dbs)
    dbs.src_sql(INSERT_NEW)  # new rows in the source only: the target never gets them
    out = run_module('compare_tables', module_args(dbs, wait_for_new_rows=dict(
        tables=['ucr_icds-cas_new_rows_0f0f0f0f', {'source': 'no_such', 'target': 'no_such'}],
        column='inserted_at', since=since, timeout=3, interval=1)))
    assert out['failed'] is True
    assert 'ucr_icds-cas_new_rows_0f0f0f0f (no new rows in the target)' in out['msg'], out['msg']
    assert 'no_such (source: relation "public.no_such" does not exist)' in out['msg'], out['msg']
    first = out['new_rows'][0]
    assert (first['seen_in_source'], first['seen_in_target'], first['timed_out']) == (True, False, True)
    assert first['missing_on'] == ['target'] and first['target_rows'] == 0
    assert out['tables'] == [] and out['changed'] is False


@pytest.mark.citus
def test_slices_of_a_distributed_parent_on_citus(citus_dbs, citus_cluster, tmp_path):
    dbs = citus_dbs
    # workers render timestamptz in another zone by default: the text settings must reach them
    for node in citus_cluster.nodes:
        node.psql("ALTER DATABASE \"%s\" SET TimeZone = 'Asia/Kolkata'" % dbs.target_db)
    load_nasty(dbs, rows=80)
    dbs.tgt_sql("SELECT create_distributed_table('child_health_monthly', 'id')")
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    copy_all(dbs, dbs.manifest)
    res = compare(dbs)
    assert drifted(res) == [], [c.as_dict() for n, c in res.items() if not c.match]
    assert (res[CHILD2].kind, res[CHILD2].target_rows) == ('slice', 91)
    assert res['child_health_monthly'].target_rows == 5
    dbs.tgt_sql("DELETE FROM child_health_monthly WHERE month = '2020-01-01' AND id = 5")
    dbs.tgt_sql("UPDATE child_health_monthly SET note = 'x' WHERE month = '2020-02-01' AND id = 6")
    res = compare(dbs)
    assert drifted(res) == [CHILD1, CHILD2]
    assert res[CHILD1].target_rows == 79
    assert res[CHILD2].source_rows == res[CHILD2].target_rows == 91
