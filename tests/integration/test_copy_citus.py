"""The copy engine into a real Citus cluster (skipped when citus is not installed)."""

import pytest

from tests.integration.copy_helpers import (
    MANIFEST_ROWS, SOURCE_ONLY, WEIRD, cli_conn_args, fingerprint, load_nasty, make_old_manifest,
    manifest_flags, run_cli, union_fingerprint)

pytestmark = pytest.mark.citus


def test_copy_into_distributed_reference_and_local_tables(citus_dbs, tmp_path):
    dbs = citus_dbs
    load_nasty(dbs, rows=500)
    dbs.tgt_sql("SELECT create_distributed_table('child_health_monthly', 'id')")
    dbs.tgt_sql("SELECT create_reference_table('%s')" % WEIRD.replace("'", "''").replace('"', '""').join('""'))
    # agg_awc and its children stay local on the coordinator (inheritance)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    res = run_cli(['migrate', '--yes', '--parallel', '2'] + cli_conn_args(dbs) + [manifest])
    assert res.returncode == 0, res.stdout + res.stderr
    assert set(manifest_flags(manifest).values()) == {(1, None)}
    assert fingerprint(dbs.tgt_sql, 'child_health_monthly') == union_fingerprint(
        dbs.src_sql, ['child_health_monthly', 'child_health_monthly_2020-01-01',
                      'child_health_monthly_2020-02-01'])
    for table in (WEIRD, 'agg_awc', 'agg_awc_2020-01-01_1', 'agg_awc_2020-02-01_1'):
        assert fingerprint(dbs.tgt_sql, table) == fingerprint(dbs.src_sql, table), table
    methods = dbs.tgt_sql("SELECT logicalrelid::text || '=' || partmethod::text FROM pg_dist_partition "
                          "ORDER BY 1").split()
    assert 'child_health_monthly=h' in methods
    # rows really spread over shards on both workers
    placements = dbs.tgt_sql("SELECT count(DISTINCT nodeport) FROM pg_dist_shard_placement p "
                             "JOIN pg_dist_shard s USING (shardid) "
                             "WHERE s.logicalrelid = 'child_health_monthly'::regclass").strip()
    assert placements == '2'
    # a second manifest against the same target: the ledger answers, nothing is copied twice
    again = make_old_manifest(str(tmp_path / 'again.db'), MANIFEST_ROWS)
    res = run_cli(['migrate', '--yes', '--json'] + cli_conn_args(dbs) + [again])
    assert res.returncode == 0 and '"already_copied": 7' in res.stdout, res.stdout + res.stderr
    assert fingerprint(dbs.tgt_sql, 'child_health_monthly') == union_fingerprint(
        dbs.src_sql, ['child_health_monthly', 'child_health_monthly_2020-01-01',
                      'child_health_monthly_2020-02-01'])


def test_failure_in_distributed_copy_rolls_back_everything(citus_dbs, tmp_path):
    dbs = citus_dbs
    load_nasty(dbs, rows=200)
    dbs.tgt_sql('ALTER TABLE child_health_monthly ADD PRIMARY KEY (id)')
    dbs.tgt_sql("SELECT create_distributed_table('child_health_monthly', 'id')")
    manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS[1:4])
    res = run_cli(['migrate', '--yes', '--no-stop-on-error'] + cli_conn_args(dbs) + [manifest])
    # both children repeat ids 1..5 of the parent: each collides on some shard and must
    # leave nothing behind on any shard
    assert res.returncode == 1
    flags = manifest_flags(manifest)
    assert flags['child_health_monthly'] == (1, None)
    assert flags['child_health_monthly_2020-01-01'] == (None, 1)
    assert flags['child_health_monthly_2020-02-01'] == (None, 1)
    assert dbs.tgt_sql('SELECT count(*) FROM icds_citus_migration.copy_ledger').strip() == '1'
    assert dbs.tgt_sql('SELECT count(*) FROM child_health_monthly').strip() == '5'


def test_small_tables_use_one_connection_per_worker(citus_dbs, tmp_path):
    """Below --small-table-threshold the COPY transaction runs with
    citus.max_adaptive_executor_pool_size = 1 (one connection per worker, not one per
    shard); above it, Citus's own setting. Rows land whole either way."""
    from tests.integration.test_copy_engine import load_pool_tables
    dbs = citus_dbs
    rows = load_pool_tables(dbs)
    default = dbs.tgt_sql('SHOW citus.max_adaptive_executor_pool_size').strip()
    assert default != '1'
    for table, _, _ in rows:
        dbs.tgt_sql("SELECT create_distributed_table('%s', 'id', shard_count => 32)" % table)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), rows)
    res = run_cli(['migrate', '--yes', '--parallel', '2', '--small-table-threshold', '1MB']
                  + cli_conn_args(dbs) + [manifest])
    assert res.returncode == 0, res.stdout + res.stderr
    for table, _, _ in rows:
        assert fingerprint(dbs.tgt_sql, table, columns='id, note') == fingerprint(dbs.src_sql, table)
    assert dbs.tgt_sql('SELECT DISTINCT pool FROM "pool-small"').strip() == '1'
    assert dbs.tgt_sql('SELECT DISTINCT pool FROM "pool-big"').strip() == default
    # a re-copy runs each table with the setting its first copy had
    dbs.tgt_sql('UPDATE "pool-small" SET pool = NULL; UPDATE "pool-big" SET pool = NULL')
    res = run_cli(['migrate', '--yes', '--small-table-threshold', '1MB'] + cli_conn_args(dbs)
                  + [manifest, '--recopy', 'pool-small', 'pool-big'])
    assert res.returncode == 0, res.stdout + res.stderr
    assert dbs.tgt_sql('SELECT DISTINCT pool FROM "pool-small"').strip() == '1'
    assert dbs.tgt_sql('SELECT DISTINCT pool FROM "pool-big"').strip() == default
    for table, _, _ in rows:
        assert fingerprint(dbs.tgt_sql, table, columns='id, note') == fingerprint(dbs.src_sql, table)
