"""Manifest generation (runbook step 3) on the synthetic ICDS dataset, in code and via the module."""

import datetime
import hashlib
import os
import shutil

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import PlanError
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import Manifest
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.generator import (
    plan_manifest, write_manifest,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import connect
from tools.testkit.synthetic_dataset import (
    FORM_FAMILIES, Geography, add_month, create_dataset, create_many_children, form_child_name,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_plan import (
    load_plan, ucr_table_name,
)
from tests.module_runner import run_module

CHC = ucr_table_name('icds-cas', 'static-child_health_cases')
CBE = ucr_table_name('icds-cas', 'static-cbe_form')
USAGE = ucr_table_name('enikshay', 'static-usage')
SEED = 11


@pytest.fixture
def ucr_folder(tmp_path):
    fixture = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures', 'ucr_data_sources')
    if os.path.isdir(fixture):
        return fixture
    folder = tmp_path / 'ucr'
    shutil.copytree('/work/shared/samples/ucr_data_sources', folder)
    return str(folder)


@pytest.fixture
def dataset(dbs, ucr_folder):
    conn = connect(dbs.source)
    try:
        create_dataset(conn, months=2, scale=1, seed=SEED, ucr_folder=ucr_folder)
    finally:
        conn.close()
    return dbs


def _plan_rows(params, plan):
    conn = connect(params)
    try:
        return plan_manifest(conn, plan)
    finally:
        conn.close()


def _rows(path):
    with Manifest.open(path, readonly=True) as manifest:
        return [(r.source_table, r.date, r.target_table, r.migrated) for r in manifest.rows()]


def _all_tables(dbs):
    return set(dbs.src_sql("SELECT relname FROM pg_class WHERE relkind IN ('r', 'p') "
                           "AND relnamespace = 'public'::regnamespace").split())


def _module_args(dbs, path, **extra):
    args = dict(login_host=dbs.source.host, login_port=dbs.source.port, login_user='postgres',
                login_db=dbs.source.dbname, ssl_mode='disable', path=path)
    args.update(extra)
    return args


def test_rows_dates_and_targets_on_the_icds_dataset(dataset, ucr_folder, tmp_path):
    plan = load_plan(ucr_folder=ucr_folder)
    result = _plan_rows(dataset.source, plan)
    path = str(tmp_path / 'm.db')
    added = write_manifest(path, result)
    rows = _rows(path)
    assert len(added) == len(rows)
    by_name = {r[0]: r for r in rows}
    position = {r[0]: i for i, r in enumerate(rows)}

    # every family: parent row (no date, no target), then its children sorted by name
    parents = [r[0] for r in rows if r[1] is None and r[2] is None]
    for parent in parents:
        start = position[parent]
        kids = []
        for name, _date, target, _m in rows[start + 1:]:
            if name in parents:
                break
            kids.append(name)
        assert kids == sorted(kids), parent
    # drop-child: children target the parent; dates from name, CHECK (per-state) and CHECK range (UCR)
    assert by_name['child_health_monthly_2020-02-01'][1:3] == ('2020-02-01', 'child_health_monthly')
    assert by_name['daily_attendance_2020-01-01'][1:3] == ('2020-01-01', 'daily_attendance')
    state = Geography(SEED, 2).states[1]
    prefix = dict(FORM_FAMILIES)['icds_dashboard_child_health_thr_forms']
    gm = form_child_name(prefix, state, datetime.date(2020, 2, 1))
    assert by_name[gm][1:3] == ('2020-02-01', 'icds_dashboard_child_health_thr_forms')
    assert position['icds_dashboard_child_health_thr_forms'] < position[gm]
    assert by_name[CHC + '_y2020m02'][1:3] == ('2020-02-01', CHC)
    assert by_name[CHC][1:3] == (None, None)
    assert by_name[CBE][1:3] == (None, None)
    # keep-child: same-named children, written explicitly; partition date from its bound
    assert by_name['agg_awc_2020-01-01_3'][1:3] == ('2020-01-01', 'agg_awc_2020-01-01_3')
    assert by_name['agg_awc_daily_m202002'][1:3] == ('2020-02-01', 'agg_awc_daily_m202002')
    assert position['agg_awc'] < position['agg_awc_2020-01-01_1']
    # plain tables: same name
    assert by_name['awc_location'][1:3] == (None, None)
    assert by_name['icds_months_local'][1:3] == (None, None)
    # ignored tables are reported, not written; nothing unclassified; every other table is written
    assert sorted(result.ignored) == sorted(['django_migrations', 'ucr_table_name_mapping', USAGE])
    assert result.unclassified == [] and result.warnings == []
    assert set(by_name) == _all_tables(dataset) - set(result.ignored)
    # every child of the dataset got a date (from its name, CHECK or partition bound)
    assert [r[0] for r in rows if r[2] is not None and r[1] is None] == []


def test_unclassified_tables_fail_by_default_and_warn_on_request(dataset, tmp_path):
    dataset.src_sql('CREATE TABLE auth_user (id int); CREATE TABLE "auth_user_2020-01-01" () INHERITS (auth_user)')
    result = _plan_rows(dataset.source, load_plan())
    assert result.unclassified == ['auth_user']
    path = str(tmp_path / 'm.db')
    with pytest.raises(PlanError) as info:
        write_manifest(path, result)
    assert 'auth_user' in str(info.value) and 'unclassified=warn' in str(info.value)
    assert not os.path.exists(path)
    write_manifest(path, result, unclassified='warn')
    names = [r[0] for r in _rows(path)]
    assert 'auth_user' not in names and 'auth_user_2020-01-01' not in names and 'agg_awc' in names


def test_rerun_after_a_new_month_adds_exactly_that_month(dataset, ucr_folder, tmp_path):
    plan = load_plan(ucr_folder=ucr_folder)
    path = str(tmp_path / 'm.db')
    write_manifest(path, _plan_rows(dataset.source, plan))
    with Manifest.open(path) as manifest:
        first = manifest.rows()[0]
        manifest.mark_migrated(first.id, 1, 1, None, None, None, 'test')
    before = _rows(path)
    assert write_manifest(path, _plan_rows(dataset.source, plan)) == []   # nothing new: no-op
    assert _rows(path) == before

    conn = connect(dataset.source)
    try:
        summary = add_month(conn, '2020-03-01', scale=1, seed=SEED, ucr_folder=ucr_folder)
    finally:
        conn.close()
    added = write_manifest(path, _plan_rows(dataset.source, plan))
    assert sorted(r.source_table for r in added) == sorted(summary.tables)
    after = _rows(path)
    assert after[:len(before)] == before               # existing rows untouched (migrated kept)
    assert after[0][3] is True
    assert {r[1] for r in after[len(before):]} == {'2020-03-01'}


def _file_digest(path):
    with open(path, 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def test_check_mode_writes_nothing(dataset, ucr_folder, tmp_path):
    plan = load_plan(ucr_folder=ucr_folder)
    path = str(tmp_path / 'm.db')
    would = write_manifest(path, _plan_rows(dataset.source, plan), check_mode=True)
    assert would and not os.path.exists(path)
    write_manifest(path, _plan_rows(dataset.source, plan))
    conn = connect(dataset.source)
    try:
        add_month(conn, '2020-03-01', scale=1, seed=SEED, ucr_folder=ucr_folder)
    finally:
        conn.close()
    digest = _file_digest(path)
    would = write_manifest(path, _plan_rows(dataset.source, plan), check_mode=True)
    assert would and {r.date for r in would} == {'2020-03-01'}
    assert _file_digest(path) == digest


def test_module_changed_idempotent_check_mode_and_errors(dataset, ucr_folder, tmp_path):
    path = str(tmp_path / 'manifest.db')
    secret = 'S3cret-pw-do-not-leak'
    check = run_module('migration_manifest', _module_args(dataset, path, ucr_folder=ucr_folder,
                                                          login_password=secret), check=True)
    assert check.get('failed') is not True, check
    assert check['changed'] is True and check['added_count'] > 0
    assert not os.path.exists(path)

    first = run_module('migration_manifest', _module_args(dataset, path, ucr_folder=ucr_folder,
                                                          login_password=secret))
    assert first['changed'] is True
    assert first['added_count'] == first['total'] == check['added_count'] == len(_rows(path))
    assert first['added'][0] == {'source_table': 'agg_awc', 'date': None, 'target_table': None,
                                 'family': 'agg_awc', 'kind': 'keep_child'}
    assert USAGE in first['ignored'] and first['unclassified'] == []
    assert secret not in first.stdout + first.stderr and secret not in check.stdout

    again = run_module('migration_manifest', _module_args(dataset, path, ucr_folder=ucr_folder))
    assert again['changed'] is False and again['added'] == [] and again['total'] == first['total']

    dataset.src_sql('CREATE TABLE stray_table (id int)')
    failed = run_module('migration_manifest', _module_args(dataset, path))
    assert failed['failed'] is True and 'stray_table' in failed['msg']
    assert len(_rows(path)) == first['total']
    warned = run_module('migration_manifest', _module_args(dataset, path, unclassified='warn'))
    assert warned['changed'] is False and warned['unclassified'] == ['stray_table']
    assert any('stray_table' in str(w) for w in warned.get('warnings', []))  # dicts in 2.19

    bad_plan = tmp_path / 'plan.yml'
    bad_plan.write_text('families:\n  - {name: agg_awc, kind: copy}\n')
    failed = run_module('migration_manifest', _module_args(dataset, path, plan=str(bad_plan)))
    assert failed['failed'] is True and "rule #1 (name 'agg_awc'): unknown kind 'copy'" in failed['msg']

    nodb = run_module('migration_manifest', _module_args(dataset, path, login_db='no_such_db',
                                                         login_password=secret))
    assert nodb['failed'] is True and 'cannot connect to the source database' in nodb['msg']
    assert secret not in nodb.stdout + nodb.stderr


@pytest.mark.slow
def test_ten_thousand_children(dbs, tmp_path):
    dbs.src_sql('CREATE TABLE bulk_parent (month date, n integer)')
    conn = connect(dbs.source)
    try:
        names = create_many_children(conn, 'bulk_parent', 10000)
    finally:
        conn.close()
    plan = tmp_path / 'plan.yml'
    plan.write_text('families:\n  - {name: bulk_parent, kind: drop_child}\n')
    path = str(tmp_path / 'm.db')
    result = run_module('migration_manifest', _module_args(dbs, path, plan=str(plan)))
    assert result.get('failed') is not True, result.get('msg')
    assert result['changed'] is True and result['added_count'] == result['total'] == 10001
    rows = _rows(path)
    assert rows[0] == ('bulk_parent', None, None, False)
    assert [r[0] for r in rows[1:]] == sorted(names)
    assert rows[-1] == (names[-1], (datetime.date(1990, 1, 1) + datetime.timedelta(days=9999)).isoformat(),
                        'bulk_parent', False)
    again = run_module('migration_manifest', _module_args(dbs, path, plan=str(plan)))
    assert again['changed'] is False and again['added_count'] == 0
