"""The copy engine end to end through the CLI, on data that breaks naive tools."""

import json
import os

import pytest

from tests.integration.copy_helpers import (
    MANIFEST_ROWS, WEIRD, cli_conn_args, fingerprint, load_nasty, make_old_manifest,
    manifest_flags, run_cli, union_fingerprint)


@pytest.fixture
def nasty(dbs, tmp_path):
    load_nasty(dbs)
    dbs.manifest = make_old_manifest(str(tmp_path / 'manifest.db'), MANIFEST_ROWS)
    return dbs


def assert_target_equals_source(dbs):
    for table in (WEIRD, 'agg_awc', 'agg_awc_2020-01-01_1', 'agg_awc_2020-02-01_1'):
        assert fingerprint(dbs.tgt_sql, table) == fingerprint(dbs.src_sql, table), table
    # drop-child: the parent on the target holds the parent's and every child's rows
    assert fingerprint(dbs.tgt_sql, 'child_health_monthly') == union_fingerprint(
        dbs.src_sql, ['child_health_monthly', 'child_health_monthly_2020-01-01',
                      'child_health_monthly_2020-02-01'])


@pytest.mark.parametrize('parallel', ['1', '3'])
def test_every_table_copied_row_for_row(nasty, parallel):
    res = run_cli(['migrate', '--yes', '--parallel', parallel] + cli_conn_args(nasty) + [nasty.manifest])
    assert res.returncode == 0, res.stdout + res.stderr
    assert_target_equals_source(nasty)
    assert set(manifest_flags(nasty.manifest).values()) == {(1, None)}
    assert 'Progress: 100% data' in res.stdout
    assert '7 copied, 0 already copied, 0 errored' in res.stdout


def test_rows_containing_the_table_name_are_not_rewritten(nasty):
    res = run_cli(['migrate', '--yes'] + cli_conn_args(nasty) + [nasty.manifest])
    assert res.returncode == 0, res.stderr
    # the old sed rename turned 'child_health_monthly_2020-01-01' into the parent name in data
    out = nasty.tgt_sql("SELECT count(*) FROM child_health_monthly "
                        "WHERE label LIKE 'child_health_monthly_2020-01-01 row %'")
    assert out.strip() == '300'


def test_second_run_copies_nothing(nasty):
    assert run_cli(['migrate', '--yes'] + cli_conn_args(nasty) + [nasty.manifest]).returncode == 0
    before = fingerprint(nasty.tgt_sql, 'child_health_monthly')
    res = run_cli(['migrate', '--yes'] + cli_conn_args(nasty) + [nasty.manifest])
    assert res.returncode == 0
    assert 'Nothing to migrate' in res.stdout
    assert fingerprint(nasty.tgt_sql, 'child_health_monthly') == before


def test_reset_manifest_rerun_uses_the_ledger_not_the_copy(nasty, tmp_path):
    """A second manifest (fresh copy) against the same target copies nothing twice."""
    assert run_cli(['migrate', '--yes'] + cli_conn_args(nasty) + [nasty.manifest]).returncode == 0
    fresh = make_old_manifest(str(tmp_path / 'fresh.db'), MANIFEST_ROWS)
    res = run_cli(['migrate', '--yes', '--json'] + cli_conn_args(nasty) + [fresh])
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout[res.stdout.index('{'):])
    assert (summary['copied'], summary['already_copied']) == (0, 7)
    assert_target_equals_source(nasty)
    assert set(manifest_flags(fresh).values()) == {(1, None)}


def test_date_window_and_single_table(nasty):
    res = run_cli(['migrate', '--yes', '--start-date', '2020-02-10', '--end-date', '2020-03-01']
                  + cli_conn_args(nasty) + [nasty.manifest])
    assert res.returncode == 0, res.stderr
    flags = manifest_flags(nasty.manifest)
    assert sorted(t for t, f in flags.items() if f[0]) == [
        'agg_awc_2020-02-01_1', 'child_health_monthly_2020-02-01']
    res = run_cli(['migrate', '--yes', '--table', 'agg_awc'] + cli_conn_args(nasty) + [nasty.manifest])
    assert res.returncode == 0
    assert manifest_flags(nasty.manifest)['agg_awc'] == (1, None)
    assert manifest_flags(nasty.manifest)[WEIRD] == (None, None)


def test_dry_run_touches_nothing(nasty):
    before = open(nasty.manifest, 'rb').read()
    res = run_cli(['migrate', '--dry-run'] + cli_conn_args(nasty) + [nasty.manifest])
    assert res.returncode == 0, res.stderr
    assert 'COPY "public"."child_health_monthly_2020-01-01"' in res.stdout
    assert 'COPY "public"."child_health_monthly" (' in res.stdout
    assert '7 tables would be copied' in res.stdout
    assert open(nasty.manifest, 'rb').read() == before
    assert nasty.tgt_sql('SELECT count(*) FROM child_health_monthly').strip() == '0'
    assert nasty.tgt_sql("SELECT count(*) FROM pg_namespace WHERE nspname = 'icds_citus_migration'").strip() == '0'


def test_confirmation_prompt(nasty):
    res = run_cli(['migrate'] + cli_conn_args(nasty) + [nasty.manifest], stdin='no\n')
    assert 'Preparing to migrate 7 tables. [yes / no]' in res.stdout
    assert res.returncode == 1 and 'Aborted' in res.stdout
    assert nasty.tgt_sql('SELECT count(*) FROM agg_awc').strip() == '0'
    res = run_cli(['migrate'] + cli_conn_args(nasty) + [nasty.manifest], stdin='yes\n')
    assert res.returncode == 0, res.stderr
    assert_target_equals_source(nasty)


def test_no_stdin_without_yes_is_refused(nasty):
    res = run_cli(['migrate'] + cli_conn_args(nasty) + [nasty.manifest], stdin='')
    assert res.returncode == 2
    assert 'use --yes' in res.stderr


def test_text_format_when_types_differ(dbs, tmp_path):
    dbs.src_sql('CREATE TABLE "t-x" (id int, v varchar(20), n numeric)')
    dbs.tgt_sql('CREATE TABLE "t-x" (n numeric, v text, id bigint, extra text DEFAULT \'d\')')
    dbs.src_sql("INSERT INTO \"t-x\" SELECT g, E'v\\t' || g, g / 3.0 FROM generate_series(1, 500) g")
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [('t-x', None, None)])
    res = run_cli(['migrate', '--yes', '-v'] + cli_conn_args(dbs) + [manifest])
    assert res.returncode == 0, res.stderr
    assert dbs.tgt_sql("SELECT md5(string_agg(id || v || n, ',' ORDER BY id)), min(extra) FROM \"t-x\"") == \
        dbs.src_sql("SELECT md5(string_agg(id || v || n, ',' ORDER BY id)), 'd' FROM \"t-x\"")


def test_failure_recorded_exit_nonzero_and_logged(nasty):
    # make one child fail on the target: a CHECK that rejects its rows
    nasty.tgt_sql('ALTER TABLE "agg_awc_2020-02-01_1" ADD CONSTRAINT no_rows CHECK (id < 0)')
    res = run_cli(['migrate', '--yes', '--no-stop-on-error', '--parallel', '2']
                  + cli_conn_args(nasty) + [nasty.manifest])
    assert res.returncode == 1
    flags = manifest_flags(nasty.manifest)
    assert flags['agg_awc_2020-02-01_1'] == (None, 1)
    assert sum(1 for f in flags.values() if f == (1, None)) == 6
    assert nasty.tgt_sql('SELECT count(*) FROM "agg_awc_2020-02-01_1"').strip() == '0'
    with open(nasty.manifest + '.errors.jsonl') as handle:
        entries = [json.loads(line) for line in handle]
    assert [(e['source_table'], e['sqlstate']) for e in entries] == [('agg_awc_2020-02-01_1', '23514')]
    assert 'no_rows' in entries[0]['message']
    # errored rows are skipped until --retry-errors
    nasty.tgt_sql('ALTER TABLE "agg_awc_2020-02-01_1" DROP CONSTRAINT no_rows')
    res = run_cli(['migrate', '--yes'] + cli_conn_args(nasty) + [nasty.manifest])
    assert 'Nothing to migrate' in res.stdout
    res = run_cli(['migrate', '--yes', '--retry-errors'] + cli_conn_args(nasty) + [nasty.manifest])
    assert res.returncode == 0, res.stderr
    assert_target_equals_source(nasty)


def test_stop_on_error_starts_no_new_table(nasty):
    nasty.tgt_sql('ALTER TABLE "%s" ADD CONSTRAINT no_rows CHECK (id < 0)' % WEIRD.replace('"', '""'))
    res = run_cli(['migrate', '--yes'] + cli_conn_args(nasty) + [nasty.manifest])
    assert res.returncode == 1
    assert 'stopped after the first error' in res.stdout
    flags = manifest_flags(nasty.manifest)
    assert flags[WEIRD] == (None, 1)
    assert all(f == (None, None) for t, f in flags.items() if t != WEIRD)


def test_status_after_run(nasty):
    nasty.tgt_sql('ALTER TABLE "agg_awc_2020-02-01_1" ADD CONSTRAINT no_rows CHECK (id < 0)')
    run_cli(['migrate', '--yes', '--no-stop-on-error'] + cli_conn_args(nasty) + [nasty.manifest])
    res = run_cli(['status', nasty.manifest, 'stats'])
    assert res.returncode == 0
    assert res.stdout.splitlines() == ['Total: 7', 'Migrated: 6 (85.7%)', 'Errored: 1 (14.3%)']
    res = run_cli(['status', nasty.manifest, 'list_tables', '-E'])
    lines = res.stdout.splitlines()
    assert lines[0].split(' | ')[0].strip() == 'Source Table'
    # the old columns first (old readers still work), then what this tool records
    assert [c.strip() for c in lines[0].split('|')][:5] == ['Source Table', 'Table Date', 'Migrated', 'Errored', 'Target Table']
    assert len(lines) == 3 and 'agg_awc_2020-02-01_1' in lines[2] and 'True' in lines[2]
    res = run_cli(['status', nasty.manifest, 'list', '-s', '2020-01-01', '-e', '2020-02-01', '--json'])
    assert sorted(r['source_table'] for r in json.loads(res.stdout)) == [
        'agg_awc_2020-01-01_1', 'child_health_monthly_2020-01-01']
    res = run_cli(['status', nasty.manifest, 'list', '-M', '-D', nasty.source_db, '-O', '127.0.0.1',
                   '-U', 'postgres', '--source-port', str(nasty.source_server.port)])
    assert 'Rows' in res.stdout.splitlines()[0] and '% of Data' in res.stdout.splitlines()[0]


def test_partitioned_parent_is_a_recorded_no_op(dbs, tmp_path):
    ddl = ['CREATE TABLE "daily-p" (d date, v text) PARTITION BY RANGE (d)',
           "CREATE TABLE \"daily-p_m202001\" PARTITION OF \"daily-p\" FOR VALUES FROM ('2020-01-01') TO ('2020-02-01')"]
    for stmt in ddl:
        dbs.src_sql(stmt)
        dbs.tgt_sql(stmt)
    dbs.src_sql("INSERT INTO \"daily-p\" SELECT date '2020-01-01' + (g % 31), 'v' || g FROM generate_series(1, 300) g")
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [('daily-p', None, None),
                                                          ('daily-p_m202001', '2020-01-01', 'daily-p_m202001')])
    res = run_cli(['migrate', '--yes', '--json'] + cli_conn_args(dbs) + [manifest])
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads(res.stdout[res.stdout.index('{'):])
    assert [(t['source_table'], t['rows']) for t in summary['tables']] == [('daily-p', 0), ('daily-p_m202001', 300)]
    assert fingerprint(dbs.tgt_sql, 'daily-p_m202001') == fingerprint(dbs.src_sql, 'daily-p_m202001')


POOL_DDL = ('CREATE TABLE "%s" (id int, note text, pool text '
            "DEFAULT current_setting('citus.max_adaptive_executor_pool_size', true))")


def load_pool_tables(dbs):
    """'pool-small' (one page) and 'pool-big' (about 2 MB); the target records, per row, the
    Citus pool size its COPY transaction ran with."""
    for table, rows in (('pool-small', 10), ('pool-big', 20000)):
        dbs.src_sql('CREATE TABLE "%s" (id int, note text)' % table)
        dbs.src_sql('INSERT INTO "%s" SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, %d) g'
                    % (table, rows))
        dbs.tgt_sql(POOL_DDL % table)
    return [('pool-small', None, None), ('pool-big', None, None)]


def test_small_table_setting_is_for_citus_targets_only(dbs, tmp_path):
    manifest = make_old_manifest(str(tmp_path / 'm.db'), load_pool_tables(dbs))
    res = run_cli(['migrate', '--yes', '--small-table-threshold', '1MB'] + cli_conn_args(dbs)
                  + [manifest])
    assert res.returncode == 0, res.stdout + res.stderr
    for table in ('pool-small', 'pool-big'):
        assert fingerprint(dbs.tgt_sql, table, columns='id, note') == fingerprint(dbs.src_sql, table)
        assert dbs.tgt_sql('SELECT count(*) FROM "%s" WHERE pool IS NOT NULL' % table).strip() == '0'


def test_bad_small_table_threshold_is_named(nasty):
    res = run_cli(['migrate', '--yes', '--small-table-threshold', 'tiny'] + cli_conn_args(nasty)
                  + [nasty.manifest])
    assert res.returncode != 0
    assert "--small-table-threshold must be a size such as 1GB or 500MB" in res.stderr + res.stdout
    assert "'tiny'" in res.stderr + res.stdout
    assert set(manifest_flags(nasty.manifest).values()) == {(None, None)}
