"""The copy_tables role through ansible-playbook, on real servers: a date range, the
catch-up re-copy of drifted tables, re-runs that change nothing, and bad variables named."""

import os
import re
import threading

import pytest

from tests.integration.copy_helpers import (
    MANIFEST_ROWS, fingerprint, load_nasty, make_old_manifest, manifest_flags)
from tools.testkit.skewed_dataset import BIG, gate_target, load_skewed, skewed_manifest
from tests.module_runner import run_role
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import connect

GATE_KEY = 4343

FEB = {'agg_awc_2020-02-01_1', 'child_health_monthly_2020-02-01'}


@pytest.fixture
def role_env(dbs, tmp_path):
    load_nasty(dbs, rows=200)
    workdir = tmp_path / 'work'
    workdir.mkdir()
    make_old_manifest(str(workdir / 'src.db'), MANIFEST_ROWS)
    dbs.workdir = workdir
    dbs.manifest = str(workdir / 'src.db')
    return dbs


def _play(dbs, tmp_path, check: bool = False, on_line=None, **variables):
    """Run the role once; (return code, {task name: result}, number of changed tasks)."""
    play_vars = dict(citus_migration_workdir=str(dbs.workdir), citus_migration_progress_interval=1,
                     citus_migration_target_conn=dbs.module_conn('target'),
                     citus_migration_source=dict(alias='src', conn=dbs.module_conn('source')))
    play_vars.update(variables)
    play = run_role('copy_tables', play_vars, str(tmp_path), check=check, on_line=on_line)
    return play.returncode, play, play.changed


def test_date_range_then_the_rest_then_nothing(role_env, tmp_path):
    dbs = role_env
    rc, tasks, _ = _play(dbs, tmp_path, check=True, citus_migration_start_date='2020-02-01',
                         citus_migration_end_date='2020-03-01')
    assert rc == 0, [r.get('msg') for _, r in tasks.tasks if r.get('failed')]
    dry = tasks.task('Show what the copy would do')
    assert {t['source_table'] for t in dry['tables']} == FEB
    assert tasks.task('Report the dry run')['msg'] == (
        'src: of 2 selected manifest rows, the copy would copy 2, 0 are already copied, '
        '0 cannot be copied')
    assert set(manifest_flags(dbs.manifest).values()) == {(None, None)}

    rc, tasks, changed = _play(dbs, tmp_path, citus_migration_start_date='2020-02-01',
                               citus_migration_end_date='2020-03-01')
    assert rc == 0 and changed >= 1
    assert tasks.task('Wait, showing progress')['copied'] == 2
    flags = manifest_flags(dbs.manifest)
    assert {t for t, f in flags.items() if f == (1, None)} == FEB
    for table in ('agg_awc_2020-02-01_1',):
        assert fingerprint(dbs.tgt_sql, table) == fingerprint(dbs.src_sql, table)
    assert dbs.tgt_sql('SELECT count(*) FROM "agg_awc_2020-01-01_1"').strip() == '0'

    rc, tasks, changed = _play(dbs, tmp_path, citus_migration_start_date='2020-02-01',
                               citus_migration_end_date='2020-03-01')
    assert rc == 0 and changed == 0, tasks.tasks

    rc, tasks, _ = _play(dbs, tmp_path, citus_migration_parallel=2)
    assert rc == 0 and tasks.task('Wait, showing progress')['copied'] == len(MANIFEST_ROWS) - 2
    assert set(manifest_flags(dbs.manifest).values()) == {(1, None)}


def test_recopy_drifted_catches_up_once(role_env, tmp_path):
    dbs = role_env
    rc, _, _ = _play(dbs, tmp_path)
    assert rc == 0 and set(manifest_flags(dbs.manifest).values()) == {(1, None)}
    # the source moves on after the copy (a late write the mirrors did not carry)
    dbs.src_sql('UPDATE "agg_awc_2020-01-01_1" SET id = id + 1000 WHERE id = (SELECT min(id) FROM "agg_awc_2020-01-01_1")')
    assert fingerprint(dbs.tgt_sql, 'agg_awc_2020-01-01_1') != fingerprint(dbs.src_sql, 'agg_awc_2020-01-01_1')

    rc, tasks, changed = _play(dbs, tmp_path, citus_migration_recopy_drifted=True)
    assert rc == 0 and changed >= 1
    catchup = tasks.task('Wait for the catch-up')
    # a table without a usable key in a plain target table: repaired row by row (by row hash)
    assert (catchup['repaired'], catchup['recopied']) == (1, 0), catchup
    assert [t['source_table'] for t in catchup['tables'] if t['status'] != 'equal'] == ['agg_awc_2020-01-01_1']
    assert catchup['rows_repaired'] == 2  # the old row deleted, the new one copied
    assert 'agg_awc_2020-01-01_1' in tasks.task('Report the catch-up')['msg']
    assert fingerprint(dbs.tgt_sql, 'agg_awc_2020-01-01_1') == fingerprint(dbs.src_sql, 'agg_awc_2020-01-01_1')

    rc, tasks, changed = _play(dbs, tmp_path, citus_migration_recopy_drifted=True)
    again = tasks.task('Wait for the catch-up')
    assert rc == 0 and changed == 0 and (again['repaired'], again['recopied']) == (0, 0)


@pytest.mark.parametrize('variables, named', [
    (dict(citus_migration_parallel='many'), 'citus_migration_parallel'),
    (dict(citus_migration_recopy_drifted='perhaps'), 'citus_migration_recopy_drifted'),
    (dict(citus_migration_start_date='2020-13-01'), "invalid start_date '2020-13-01': month must be in 1..12"),
    (dict(citus_migration_start_date='2020-03-05', citus_migration_end_date='2020-02-01'),
     'start_date 2020-03-01 is not before end_date 2020-02-01'),
])
def test_bad_variables_are_named_and_nothing_is_copied(role_env, tmp_path, variables, named):
    rc, tasks, _ = _play(role_env, tmp_path, **variables)
    assert rc == 2
    failed = [r for _, r in tasks.tasks if r.get('failed')]
    assert failed and named in failed[0]['msg'], failed
    assert set(manifest_flags(role_env.manifest).values()) == {(None, None)}
    assert role_env.tgt_sql('SELECT count(*) FROM "agg_awc_2020-01-01_1"').strip() == '0'


def test_check_mode_before_the_manifest_exists_says_so(role_env, tmp_path):
    """`--check` of a whole site.yml runs before any manifest is written: the dry run reports
    why it cannot plan, and the play goes on."""
    dbs = role_env
    rc, tasks, changed = _play(dbs, tmp_path, check=True, citus_migration_source=dict(
        alias='later', conn=dbs.module_conn('source')))
    assert rc == 0 and changed == 0, tasks.tasks
    msg = tasks.task('Report the dry run')['msg']
    assert msg.startswith('later: no dry run of the copy yet: ') and 'later.db' in msg, msg
    assert not os.path.exists(str(dbs.workdir / 'later.db'))


def test_progress_by_data_tables_in_flight_and_the_report(dbs, tmp_path):
    """wait_for_copy prints data done, rate, ETA and the table in flight (held there by an
    advisory lock until that line is seen); the role writes the HTML report beside the manifest."""
    rows = load_skewed(dbs, big_rows=50000, small_tables=4)
    gate_target(dbs, BIG[0], 40000, GATE_KEY)
    dbs.workdir = tmp_path / 'work'
    dbs.workdir.mkdir()
    dbs.manifest = skewed_manifest(str(dbs.workdir / 'src.db'), rows)
    gate = connect(dbs.target, 'target')
    gate.autocommit = True
    with gate.cursor() as cur:
        cur.execute('SELECT pg_advisory_lock(%s)', (GATE_KEY,))
    seen = []

    def on_line(line):
        if not seen and re.search(r'\| data \d+% \(.+ of .+\), .+/s, ETA \d+:\d\d:\d\d; in flight: .*'
                                  + re.escape(BIG[0]) + r' [\d.]+ [kMG]?B of ~', line):
            seen.append(line)
            gate.close()  # releases the lock: the copy goes on

    safety = threading.Timer(240, gate.close)  # never hang the suite if the line never comes
    safety.start()
    try:
        rc, tasks, _ = _play(dbs, tmp_path, citus_migration_parallel=2, on_line=on_line)
    finally:
        safety.cancel()
        gate.close()
    assert rc == 0, [r.get('msg') for _, r in tasks.tasks if r.get('failed')]
    assert seen, tasks.stdout[-3000:]
    assert seen[0].startswith('[localhost] %s: ' % dbs.manifest)
    waited = tasks.task('Wait, showing progress')
    assert waited['copied'] == len(rows)
    status = waited['status']
    assert status['stats']['migrated'] == len(rows) and status['live'] is None and status['errors'] == []
    assert sum(m['tables'] for m in status['months']) == len(rows)
    big = next(t for t in status['tables'] if t['source_table'] == BIG[0])
    assert big['rows_copied'] == 50000 and big['duration_s'] > 0
    report = str(dbs.workdir / 'src.report.html')
    assert tasks.task('Say where the report is')['msg'] == 'src: report of the copy written to %s' % report
    text = open(report, encoding='utf-8').read()
    assert text.count('src="data:image/png;base64,') == 2 and BIG[0] in text
