"""The copy_tables role through ansible-playbook, on real servers: a date range, the
catch-up re-copy of drifted tables, re-runs that change nothing, and bad variables named."""

import os

import pytest

from tests.integration.copy_helpers import (
    MANIFEST_ROWS, fingerprint, load_nasty, make_old_manifest, manifest_flags)
from tests.module_runner import run_role

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


def _conn(server, db):
    return dict(login_host='127.0.0.1', login_port=server.port, login_user='postgres',
                login_db=db, ssl_mode='disable')


def _play(dbs, tmp_path, check: bool = False, **variables):
    """Run the role once; (return code, {task name: result}, number of changed tasks)."""
    play_vars = dict(citus_migration_workdir=str(dbs.workdir), citus_migration_progress_interval=1,
                     citus_migration_target_conn=_conn(dbs.target_server, dbs.target_db),
                     citus_migration_source=dict(alias='src', conn=_conn(dbs.source_server, dbs.source_db)))
    play_vars.update(variables)
    play = run_role('copy_tables', play_vars, str(tmp_path), check=check)
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
        alias='later', conn=_conn(dbs.source_server, dbs.source_db)))
    assert rc == 0 and changed == 0, tasks.tasks
    msg = tasks.task('Report the dry run')['msg']
    assert msg.startswith('later: no dry run of the copy yet: ') and 'later.db' in msg, msg
    assert not os.path.exists(str(dbs.workdir / 'later.db'))
