"""The synthetic ICDS dataset: shape, nasty rows, determinism, extra months, CLI."""

import datetime
import os
import shutil
import subprocess
import sys

from ansible_collections.icds.citus_migration.plugins.module_utils.schema.catalog import list_tables
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import connect
from tools.testkit.synthetic_dataset import (
    FORM_FAMILIES, add_month, create_dataset, create_many_children, form_child_name,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_plan import (
    load_plan, ucr_table_name,
)
from tests.conftest import DEV_COLLECTIONS

CHC = ucr_table_name('icds-cas', 'static-child_health_cases')
VHND = ucr_table_name('icds-cas', 'static-ls_vhnd_form')
CBE = ucr_table_name('icds-cas', 'static-cbe_form')
USAGE = ucr_table_name('enikshay', 'static-usage')


def _scalar(params, query, args=None):
    conn = connect(params)
    try:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchone()[0]
    finally:
        conn.close()


def _make(params, **kwargs):
    conn = connect(params)
    try:
        return create_dataset(conn, **kwargs)
    finally:
        conn.close()


def _children(params, parent):
    conn = connect(params)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                        "WHERE i.inhparent = %s::regclass ORDER BY 1", ('"%s"' % parent,))
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def test_dataset_shape(dbs):
    summary = _make(dbs.source, months=2, scale=4, seed=7)
    assert summary.months == ['2020-01-01', '2020-02-01']
    assert CHC == 'ucr_icds-cas_static-child_health_cases_a46c129f'
    assert _children(dbs.source, 'agg_awc') == ['agg_awc_2020-01-01_%d' % i for i in range(1, 6)] + \
        ['agg_awc_2020-02-01_%d' % i for i in range(1, 6)]
    assert _children(dbs.source, 'child_health_monthly') == [
        'child_health_monthly_2020-01-01', 'child_health_monthly_2020-02-01']
    assert _children(dbs.source, CHC) == [CHC + '_y2020m01', CHC + '_y2020m02']
    assert _children(dbs.source, 'agg_awc_daily') == ['agg_awc_daily_m202001', 'agg_awc_daily_m202002']
    assert _children(dbs.source, CBE) == []
    gm_children = _children(dbs.source, 'icds_dashboard_growth_monitoring_forms')
    assert len(gm_children) == 4 and all(c.startswith('icds_db_gm_form_') for c in gm_children)
    # every child holds `scale` rows; rows satisfy the children's CHECKs (inserted for real)
    assert _scalar(dbs.source, 'SELECT count(*) FROM "agg_awc_2020-02-01_3"') == 4
    assert _scalar(dbs.source, 'SELECT count(*) FROM ONLY "%s"' % CHC) == 0
    assert _scalar(dbs.source, 'SELECT count(*) FROM "%s"' % CHC) == 8
    assert _scalar(dbs.source, "SELECT count(*) FROM agg_awc_daily_m202002 "
                               "WHERE date >= '2020-02-01' AND date < '2020-03-01'") == 4
    # a per-state form child: no date in its name, date and state in its CHECK
    checks = _scalar(dbs.source, "SELECT string_agg(pg_get_constraintdef(oid), ' ') FROM pg_constraint "
                                 "WHERE conrelid = %s::regclass AND contype = 'c'", (gm_children[0],))
    assert '2020-' in checks and 'state_id' in checks
    # plain / ignored / other domain tables exist
    for name in ('awc_location', 'awc_location_local', 'icds_months', 'icds_months_local',
                 'django_migrations', USAGE, VHND):
        assert _scalar(dbs.source, 'SELECT to_regclass(%s) IS NOT NULL', ('"%s"' % name,)), name
    assert _scalar(dbs.source, 'SELECT count(*) FROM icds_months') == 2
    assert summary.rows['agg_awc_2020-01-01_1'] == 4


def ucr_folder(tmp_path):
    """The UCR data source samples: the repo's fixture copy, else a copy of the shared ones."""
    fixture = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures', 'ucr_data_sources')
    if os.path.isdir(fixture):
        return fixture
    folder = tmp_path / 'ucr_data_sources'
    if not folder.exists():
        shutil.copytree('/work/shared/samples/ucr_data_sources', folder)
    return str(folder)


def test_primary_keys_and_distribution_columns_follow_the_plan(dbs, tmp_path):
    _make(dbs.source, months=1, scale=2, ucr_folder=ucr_folder(tmp_path))
    conn = connect(dbs.source)
    try:
        tables = list_tables(conn)
    finally:
        conn.close()
    assert load_plan(ucr_folder=ucr_folder(tmp_path)).validate_against(tables) == []
    # without the data sources the plan's default (hash on supervisor_id) does not fit the
    # two UCR tables that have no supervisor_id: reported, naming table and rule
    errors = load_plan().validate_against(tables)
    assert sorted(e.split("'")[1] for e in errors) == sorted([CBE, VHND])
    assert all("no column 'supervisor_id'" in e and "ucr domain 'icds-cas'" in e for e in errors)
    pk = _scalar(dbs.source, "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                             "WHERE conrelid = 'icds_dashboard_growth_monitoring_forms'::regclass "
                             "AND contype = 'p'")
    assert pk == 'PRIMARY KEY (supervisor_id, case_id, month)'
    pk = _scalar(dbs.source, "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                             "WHERE conrelid = %s::regclass AND contype = 'p'", ('"%s"' % VHND,))
    assert pk == 'PRIMARY KEY (location_id, doc_id)'


def test_rows_are_nasty(dbs):
    _make(dbs.source, months=1, scale=40)
    child = 'child_health_monthly_2020-01-01'
    q = 'SELECT count(*) FROM "%s" WHERE %s' % (child, '%s')
    assert _scalar(dbs.source, q % "notes LIKE '%%' || %s || '%%'", (child,)) > 0
    assert _scalar(dbs.source, q % 'notes IS NULL') > 0
    for char in ('\t', '\n', '\r', '\\', "'", '"'):
        assert _scalar(dbs.source, q % 'strpos(notes, %s) > 0', (char,)) > 0, repr(char)
    assert _scalar(dbs.source, q % "payload ? 'nested'") > 0
    assert _scalar(dbs.source, 'SELECT count(*) FROM "%s" WHERE notes ~ %%s' % child,
                   ('[^\\x01-\\x7f]',)) > 0
    assert _scalar(dbs.source, q % "immun_names @> ARRAY['x,y']") > 0
    assert _scalar(dbs.source, q % "opened_on IS NOT NULL AND weight IS NOT NULL") > 0


def _digest(params, table):
    return _scalar(params, 'SELECT md5(string_agg(t::text, \'|\' ORDER BY t::text)) FROM "%s" t' % table)


def test_deterministic_for_a_seed(dbs):
    _make(dbs.source, months=1, scale=6, seed=3)
    _make(dbs.target, months=1, scale=6, seed=3)
    gm = form_child_name(dict(FORM_FAMILIES)['icds_dashboard_growth_monitoring_forms'],
                         _scalar(dbs.source, 'SELECT min(state_id) FROM icds_dashboard_growth_monitoring_forms'),
                         datetime.date(2020, 1, 1))
    for table in ('agg_awc_2020-01-01_2', 'daily_attendance_2020-01-01', gm, CHC + '_y2020m01',
                  'awc_location'):
        assert _digest(dbs.source, table) == _digest(dbs.target, table), table


def test_add_month_adds_only_that_month(dbs):
    _make(dbs.source, months=2, scale=3, seed=5)
    _make(dbs.target, months=3, scale=3, seed=5)
    before = set(_scalar(dbs.source, "SELECT array_agg(relname::text) FROM pg_class WHERE relkind IN ('r','p') "
                                     "AND relnamespace = 'public'::regnamespace"))
    conn = connect(dbs.source)
    try:
        summary = add_month(conn, '2020-03-15', scale=3, seed=5)
    finally:
        conn.close()
    after = set(_scalar(dbs.source, "SELECT array_agg(relname::text) FROM pg_class WHERE relkind IN ('r','p') "
                                    "AND relnamespace = 'public'::regnamespace"))
    assert after - before == set(summary.tables)
    assert 'agg_awc_2020-03-01_5' in summary.tables and CHC + '_y2020m03' in summary.tables
    assert not any('2020-01' in t or '2020-02' in t for t in summary.tables)
    # the month added later holds the same rows as if it had been created at once
    for table in ('agg_child_health_2020-03-01_4', 'ccs_record_monthly_2020-03-01', CHC + '_y2020m03'):
        assert _digest(dbs.source, table) == _digest(dbs.target, table), table


def test_create_many_children_spans_several_transactions(dbs):
    _make(dbs.source, months=1, scale=1)
    conn = connect(dbs.source)
    try:
        names = create_many_children(conn, 'daily_attendance', 1100, per_transaction=500)
    finally:
        conn.close()
    kids = _children(dbs.source, 'daily_attendance')
    assert len(kids) == 1101 and set(names) < set(kids)
    check = _scalar(dbs.source, "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                "WHERE conrelid = 'daily_attendance_bulk_01099'::regclass AND contype = 'c'")
    expected = (datetime.date(1990, 1, 1) + datetime.timedelta(days=1099)).isoformat()
    assert check == "CHECK ((month = '%s'::date))" % expected


def test_cli(dbs):
    params = dbs.source
    env = dict(os.environ, PYTHONPATH=DEV_COLLECTIONS)
    proc = subprocess.run(
        [sys.executable, '-m', 'tools.testkit.synthetic_dataset',
         '--host', params.host, '--port', str(params.port), '--user', params.user,
         '--dbname', params.dbname, '--months', '1', '--scale', '2', '--children', '3',
         '--children-parent', 'ccs_record_monthly'],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'created' in proc.stdout and 'plus 3 empty children' in proc.stdout
    assert len(_children(params, 'ccs_record_monthly')) == 4
    proc = subprocess.run(
        [sys.executable, '-m', 'tools.testkit.synthetic_dataset',
         '--host', params.host, '--port', str(params.port), '--user', params.user,
         '--dbname', params.dbname, '--months', '1'],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1 and 'already exists' in proc.stderr


def test_catalog_lists_the_dataset(dbs):
    _make(dbs.source, months=1, scale=5)
    dbs.src_sql('ANALYZE')
    conn = connect(dbs.source)
    try:
        tables = {t.name: t for t in list_tables(conn)}
        lean = {t.name: t for t in list_tables(conn, with_columns=False, with_sizes=False)}
    finally:
        conn.close()
    daily = tables['agg_awc_daily']
    assert daily.is_partitioned and daily.parent is None and daily.size_bytes == 0
    part = tables['agg_awc_daily_m202001']
    assert part.is_partition and part.parent == 'agg_awc_daily'
    assert part.partition_bound == "FOR VALUES FROM ('2020-01-01') TO ('2020-02-01')"
    child = tables['agg_awc_2020-01-01_2']
    assert child.parent == 'agg_awc' and not child.is_partition
    assert child.checks == ["CHECK (((month = '2020-01-01'::date) AND (aggregation_level = 2)))"]
    assert child.estimated_rows == 5 and child.size_bytes > 0
    assert tables[CHC].columns[:3] == ['doc_id', 'inserted_at', 'supervisor_id']
    assert tables[CHC + '_y2020m01'].parent == CHC
    assert tables['awc_location'].parent is None and tables['awc_location'].checks == []
    assert set(lean) == set(tables) and lean[CHC].columns == [] and lean[CHC].size_bytes is None
    assert lean['agg_awc_2020-01-01_2'].checks == child.checks
