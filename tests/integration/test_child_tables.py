"""citus_child_tables (runbook step 2) on real servers: plain PostgreSQL targets and Citus."""

from typing import List

import psycopg2
import pytest

from tests.module_runner import run_module
from tests.integration.test_bootstrap import (
    SOURCE_SQL, _ucr_folder, catalog_snapshot, dist_partition, module_args, plan_path,  # noqa: F401
    query, table_signature,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.bootstrap import (
    apply_bootstrap, plan_bootstrap,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import connect
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_plan import load_plan

AGG_CHILDREN = ['agg_awc_2020-01-01_1', 'agg_awc_2020-02-01_1', 'agg_awc_no-check']
PARTITIONS = ['child_health_monthly_2020-01-01', 'child_health_monthly_default']


def bootstrap(dbs, plan, **kwargs) -> None:
    src, tgt = connect(dbs.source), connect(dbs.target)
    try:
        apply_bootstrap(tgt, plan_bootstrap(src, tgt, plan, **kwargs))
    finally:
        src.close()
        tgt.close()


def children_on(params, parent: str) -> List[str]:
    return [r[0] for r in query(params, """
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = (SELECT oid FROM pg_class WHERE relname = %s
                                AND relnamespace = 'public'::regnamespace)
         ORDER BY 1""", (parent,))]


@pytest.fixture
def prepared(dbs, plan_path):
    """Source with SOURCE_SQL, target bootstrapped (parents only)."""
    dbs.src_sql(SOURCE_SQL)
    bootstrap(dbs, load_plan(plan_path))
    return dbs


def test_missing_children_are_created_like_the_source(prepared, plan_path):
    dbs = prepared
    # one child already there: only the others are created
    dbs.tgt_sql('CREATE TABLE "agg_awc_2020-02-01_1" '
                "(CHECK (month = '2020-02-01' AND aggregation_level = 1)) INHERITS (agg_awc)")
    result = run_module('citus_child_tables', module_args(dbs, plan_path))
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is True
    assert sorted(result['parents']) == ['agg_awc', 'child_health_monthly']
    assert sorted(result['created']) == ['agg_awc_2020-01-01_1', 'agg_awc_no-check'] + PARTITIONS
    assert result['existing_count'] == 1
    assert result['statement_count'] == len(result['statements']) > 0
    assert children_on(dbs.target, 'agg_awc') == AGG_CHILDREN
    assert children_on(dbs.target, 'child_health_monthly') == PARTITIONS
    # own CHECKs, own default and NOT NULL, own index, the child without CHECK, partitions
    # with the same bounds, a partition's own constraint and index
    for table in AGG_CHILDREN + PARTITIONS:
        assert table_signature(dbs.target, table) == table_signature(dbs.source, table), table
    # children of drop-child inheritance parents are not created (their rows go to the parent)
    assert query(dbs.target, "SELECT count(*) FROM pg_class WHERE relname LIKE %s",
                 ('%_y2020m01',))[0][0] == 0
    # the created children take rows as the source's do
    dbs.tgt_sql("INSERT INTO \"agg_awc_2020-01-01_1\" (state_id, month, aggregation_level) "
                "VALUES ('s1', '2020-01-01', 1)")
    assert dbs.tgt_sql('SELECT num FROM agg_awc').strip() == '7'
    with pytest.raises(RuntimeError, match='check constraint'):
        dbs.tgt_sql("INSERT INTO \"agg_awc_2020-01-01_1\" (state_id, month, aggregation_level) "
                    "VALUES ('s1', '2020-03-01', 1)")
    dbs.tgt_sql("INSERT INTO child_health_monthly VALUES ('s', 'c', '2020-01-15', '{}')")
    assert dbs.tgt_sql('SELECT count(*) FROM "child_health_monthly_2020-01-01"').strip() == '1'


def test_second_run_is_a_noop_without_ddl(prepared, plan_path):
    dbs = prepared
    first = run_module('citus_child_tables', module_args(dbs, plan_path))
    assert first['changed'] is True
    before = catalog_snapshot(dbs.target)
    second = run_module('citus_child_tables', module_args(dbs, plan_path))
    assert not second.get('failed'), second.get('msg')
    assert second['changed'] is False
    assert second['created'] == [] and second['statements'] == [] and second['batches'] == 0
    assert second['existing_count'] == len(AGG_CHILDREN) + len(PARTITIONS)
    assert catalog_snapshot(dbs.target) == before


def test_check_mode_returns_the_statements_and_changes_nothing(prepared, plan_path):
    dbs = prepared
    before = catalog_snapshot(dbs.target)
    dry = run_module('citus_child_tables', module_args(dbs, plan_path), check=True)
    assert not dry.get('failed'), dry.get('msg')
    assert dry['changed'] is True and dry['batches'] == 0
    assert sorted(dry['created']) == AGG_CHILDREN + PARTITIONS
    assert catalog_snapshot(dbs.target) == before
    real = run_module('citus_child_tables', module_args(dbs, plan_path))
    assert real['statements'] == dry['statements']
    assert 'INHERITS ("public"."agg_awc")' in real['statements'][0]


def test_small_batches_give_the_same_result(prepared, plan_path):
    dbs = prepared
    result = run_module('citus_child_tables', module_args(dbs, plan_path, batch_size=1))
    assert result['batches'] == len(AGG_CHILDREN) + len(PARTITIONS)
    for table in AGG_CHILDREN + PARTITIONS:
        assert table_signature(dbs.target, table) == table_signature(dbs.source, table), table


def test_parents_option_restricts_and_rejects_other_tables(prepared, plan_path):
    dbs = prepared
    result = run_module('citus_child_tables', module_args(dbs, plan_path, parents=['agg_awc']))
    assert result['parents'] == ['agg_awc']
    assert sorted(result['created']) == AGG_CHILDREN
    assert children_on(dbs.target, 'child_health_monthly') == []
    ucr = 'ucr_icds-cas_static-child_health_cases_a1b2c3d4'
    bad = run_module('citus_child_tables', module_args(dbs, plan_path, parents=[ucr]))
    assert bad['failed'] is True
    assert ucr in bad['msg'] and 'not a keep-child parent' in bad['msg']


def test_missing_parent_on_target_says_to_bootstrap(dbs, plan_path):
    dbs.src_sql(SOURCE_SQL)
    result = run_module('citus_child_tables', module_args(dbs, plan_path))
    assert result['failed'] is True
    assert 'run citus_bootstrap first' in result['msg'] and 'agg_awc' in result['msg']


def test_same_name_that_is_not_a_child_is_an_error(prepared, plan_path):
    dbs = prepared
    dbs.tgt_sql('CREATE TABLE "agg_awc_no-check" (x int)')
    result = run_module('citus_child_tables', module_args(dbs, plan_path))
    assert result['failed'] is True
    assert "'agg_awc_no-check' exists on the target but is not a child of 'agg_awc'" \
        in result['msg']
    assert children_on(dbs.target, 'agg_awc') == []


def _many_children(params, parent: str, n: int) -> None:
    """n empty children of ``parent`` with a CHECK each, created in a few round trips."""
    conn = psycopg2.connect(**params.libpq_kwargs())
    try:
        with conn.cursor() as cur:
            for start in range(0, n, 1000):
                cur.execute(
                    "DO $$ BEGIN FOR i IN %s..%s LOOP EXECUTE format("
                    "'CREATE TABLE %%I (CHECK (month = %%L::date)) INHERITS (agg_awc)', "
                    "'agg_awc_bulk_' || lpad(i::text, 5, '0'), "
                    "date '1990-01-01' + i); END LOOP; END $$" % (start, min(n, start + 1000) - 1))
                conn.commit()
    finally:
        conn.close()


@pytest.mark.slow
def test_ten_thousand_missing_children(dbs, tmp_path):
    dbs.src_sql('CREATE TABLE agg_awc (state_id text, month date NOT NULL, num int DEFAULT 0)')
    _many_children(dbs.source, 'agg_awc', 10000)
    plan = tmp_path / 'plan.yml'
    plan.write_text('version: 1\nfamilies:\n  - {name: agg_awc, kind: keep_child}\n')
    bootstrap(dbs, load_plan(str(plan)))
    result = run_module('citus_child_tables', module_args(dbs, str(plan)))
    assert not result.get('failed'), result.get('msg')
    assert len(result['created']) == 10000
    assert result['statement_count'] == 10000 and result['statements_truncated'] is True
    assert result['batches'] == 20  # 500 statements per transaction
    assert query(dbs.target, "SELECT count(*) FROM pg_inherits "
                             "WHERE inhparent = 'agg_awc'::regclass")[0][0] == 10000
    assert table_signature(dbs.target, 'agg_awc_bulk_09999') == \
        table_signature(dbs.source, 'agg_awc_bulk_09999')
    again = run_module('citus_child_tables', module_args(dbs, str(plan)))
    assert again['changed'] is False and again['existing_count'] == 10000


# ----------------------------------------------------------------------------- Citus target

@pytest.mark.citus
def test_citus_children_local_and_partitions_distributed(citus_dbs, plan_path):
    dbs = citus_dbs
    dbs.src_sql(SOURCE_SQL)
    bootstrap(dbs, load_plan(plan_path), distribution='required')
    result = run_module('citus_child_tables', module_args(dbs, plan_path))
    assert not result.get('failed'), result.get('msg')
    assert sorted(result['created']) == AGG_CHILDREN + PARTITIONS
    dist = dist_partition(dbs.target)
    for table in ['agg_awc'] + AGG_CHILDREN:
        assert table not in dist, table  # keep-child family stays local on the coordinator
    for table in PARTITIONS:  # partitions of a distributed parent are distributed with it
        assert dist[table][:2] == ('h', 'supervisor_id'), table
    for table in AGG_CHILDREN:
        assert table_signature(dbs.target, table) == table_signature(dbs.source, table), table
    dbs.tgt_sql("INSERT INTO child_health_monthly VALUES ('s', 'c', '2020-01-15', '{}')")
    assert dbs.tgt_sql('SELECT count(*) FROM "child_health_monthly_2020-01-01"').strip() == '1'
    before = catalog_snapshot(dbs.target)
    again = run_module('citus_child_tables', module_args(dbs, plan_path))
    assert again['changed'] is False and catalog_snapshot(dbs.target) == before


@pytest.mark.citus
def test_citus_distributed_keep_child_parent_is_refused(citus_dbs, plan_path):
    dbs = citus_dbs
    dbs.src_sql(SOURCE_SQL)
    dbs.tgt_sql('CREATE TABLE agg_awc (state_id text, month date NOT NULL, '
                'aggregation_level smallint, num int DEFAULT 0, note text)')
    dbs.tgt_sql("SELECT create_distributed_table('agg_awc', 'state_id')")
    result = run_module('citus_child_tables', module_args(dbs, plan_path, parents=['agg_awc']))
    assert result['failed'] is True
    assert "'agg_awc' is distributed on the target (hash(state_id))" in result['msg']


@pytest.mark.citus
def test_citus_synthetic_dataset_end_to_end(citus_dbs):
    synthetic = pytest.importorskip(
        'tools.testkit.synthetic_dataset')
    dbs = citus_dbs
    conn = psycopg2.connect(**dbs.source.libpq_kwargs())
    try:
        synthetic.create_dataset(conn, months=2, scale=1, ucr_folder=_ucr_folder())
        conn.commit()
    finally:
        conn.close()
    args = module_args(dbs, None, ucr_folder=_ucr_folder())
    del args['plan']
    boot = run_module('citus_bootstrap', dict(args, distribution='required'))
    assert not boot.get('failed'), boot.get('msg')
    result = run_module('citus_child_tables', args)
    assert not result.get('failed'), result.get('msg')
    for parent in ['agg_awc', 'agg_child_health', 'agg_awc_daily']:
        assert children_on(dbs.target, parent) == children_on(dbs.source, parent), parent
        assert children_on(dbs.target, parent)
    again = run_module('citus_child_tables', args)
    assert again['changed'] is False
