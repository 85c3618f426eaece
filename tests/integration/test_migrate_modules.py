"""The migrate_tables and migration_status modules, executed for real."""

import json
import os

from tests.integration.copy_helpers import (
    MANIFEST_ROWS, fingerprint, load_nasty, make_old_manifest, manifest_flags)
from tests.module_runner import run_adhoc, run_module


def args_for(dbs, manifest, **extra):
    return dbs.module_args(path=manifest, **extra)


def test_check_mode_then_copy_then_idempotent(dbs, tmp_path):
    load_nasty(dbs, rows=40)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    before = open(manifest, 'rb').read()

    dry = run_module('migrate_tables', args_for(dbs, manifest), check=True)
    assert dry['changed'] is True and not dry.get('failed'), dry
    assert [t['source_table'] for t in dry['tables']] == [r[0] for r in MANIFEST_ROWS]
    assert dry['tables'][2]['copy_in'].startswith('COPY "public"."child_health_monthly" (')
    assert open(manifest, 'rb').read() == before
    assert dbs.tgt_sql('SELECT count(*) FROM agg_awc').strip() == '0'

    first = run_module('migrate_tables', args_for(dbs, manifest, parallel=2))
    assert first['changed'] is True and not first.get('failed'), first
    assert (first['copied'], first['errored']) == (7, 0)
    assert fingerprint(dbs.tgt_sql, 'agg_awc_2020-01-01_1') == fingerprint(dbs.src_sql, 'agg_awc_2020-01-01_1')

    second = run_module('migrate_tables', args_for(dbs, manifest, parallel=2))
    assert second['changed'] is False and second['selected'] == 0

    status = run_module('migration_status', {'path': manifest, 'list': True})
    assert status['changed'] is False
    assert (status['stats']['total'], status['stats']['migrated']) == (7, 7)
    assert {t['state'] for t in status['tables']} == {'migrated'}


def test_failure_fails_the_task_with_results(dbs, tmp_path):
    load_nasty(dbs, rows=10)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    dbs.tgt_sql('ALTER TABLE agg_awc ADD CONSTRAINT nope CHECK (id < 0) NO INHERIT')
    res = run_module('migrate_tables', args_for(dbs, manifest, stop_on_error=False))
    assert res['failed'] is True
    assert res['msg'].startswith('1 of 7 tables failed: agg_awc: target: new row for relation "agg_awc"')
    assert res['errored'] == 1 and res['copied'] == 6
    assert manifest_flags(manifest)['agg_awc'] == (None, 1)


def test_password_never_in_module_output_nor_error_log(dbs, tmp_path):
    load_nasty(dbs, rows=5)
    dbs.tgt_sql("CREATE ROLE writer LOGIN SUPERUSER PASSWORD 'Tgt-S3cret-pw'")
    dbs.tgt_sql('ALTER TABLE agg_awc ADD CONSTRAINT nope CHECK (id < 0) NO INHERIT')  # one copy fails
    manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    args = args_for(dbs, manifest, stop_on_error=False)
    args.update(login_user='writer', login_password='Tgt-S3cret-pw')
    res = run_module('migrate_tables', args)
    assert res['failed'] and (res['copied'], res['errored']) == (6, 1), res
    assert 'Tgt-S3cret-pw' not in res.stdout + res.stderr
    # the failure is in the error log, whole and readable, with the connection but not its password
    log = manifest + '.errors.jsonl'
    with open(log) as handle:
        text = handle.read()
    entries = [json.loads(line) for line in text.splitlines()]
    assert [(e['source_table'], e['sqlstate']) for e in entries] == [('agg_awc', '23514')], entries
    assert 'violates check constraint "nope"' in entries[0]['message'], entries[0]
    assert 'writer' in entries[0]['target'] and str(dbs.target_server.port) in entries[0]['target']
    assert 'S3cret' not in text
    assert os.stat(log).st_mode & 0o777 == 0o600
    args['login_password'] = 'Wrong-S3cret-pw'
    bad = run_module('migrate_tables', args)
    assert bad['failed'] and 'password authentication failed' in bad['msg']
    assert 'Wrong-S3cret-pw' not in bad.stdout + bad.stderr
    with open(log) as handle:
        assert handle.read() == text  # a refused connection copies nothing, logs no table
    dbs.tgt_sql('DROP OWNED BY writer; DROP ROLE writer')


def test_status_module_via_ansible_cli(tmp_path):
    manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    res = run_adhoc('migration_status', {'path': manifest})
    assert res['stats']['total'] == 7 and res['stats']['migrated'] == 0
    assert res['summary'].splitlines()[0] == 'Total: 7'
    missing = run_adhoc('migration_status', {'path': str(tmp_path / 'absent.db')})
    assert missing['failed'] and 'manifest not found' in missing['msg']
