"""The whole chain on commcare-hq's real ICDS schema (tests/fixtures/icds_real) with the shipped
plan and no overrides: bootstrap -> child tables -> manifest -> copy, each module run twice
(the second run changes nothing), then every table compared with the source."""

import re

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import Manifest
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_plan import load_plan
from tests.fixtures import icds_real
from tests.fixtures.postgres import query
from tests.module_runner import run_module

FORMS = ['icds_dashboard_comp_feed_form', 'icds_dashboard_ccs_record_cf_forms',
         'icds_dashboard_ccs_record_postnatal_forms',
         'icds_dashboard_child_health_postnatal_forms', 'icds_dashboard_child_health_thr_forms',
         'icds_dashboard_ccs_record_thr_forms', 'icds_dashboard_ccs_record_bp_forms',
         'icds_dashboard_ccs_record_delivery_forms', 'icds_dashboard_daily_feeding_forms',
         'icds_dashboard_growth_monitoring_forms']


def _twice(name, args):
    first = run_module(name, args)
    assert not first.get('failed'), (name, first.get('msg'), first)
    second = run_module(name, args)
    assert not second.get('failed'), (name, second.get('msg'))
    assert second['changed'] is False, (name, second)
    return first


_TABLES = """
SELECT c.relname, p.relname
  FROM pg_class c
  LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
  LEFT JOIN pg_class p ON p.oid = i.inhparent
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')"""

_KEYS = """
SELECT c.relname, ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, o)
                          JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n
                         ORDER BY u.o)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
 WHERE k.contype = 'p' AND c.relnamespace = 'public'::regnamespace"""

_CHECKS = """
SELECT c.relname, pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
 WHERE k.contype = 'c' AND k.conislocal AND c.relnamespace = 'public'::regnamespace
 ORDER BY k.conname"""


def _first_date(text):
    found = sorted(re.findall(r'\d{4}-\d{2}-\d{2}', text or ''))
    return found[0] if found else None


def _chain(pair, tmp_path):
    icds_real.load_source(pair)
    folder = icds_real.DATA_SOURCES
    plan = load_plan(ucr_folder=folder)
    src = dict(query(pair.source_server, pair.source_db, _TABLES))
    src_keys = dict(query(pair.source_server, pair.source_db, _KEYS))
    top = sorted(t for t, parent in src.items() if parent is None)
    rules = {t: plan.classify(t) for t in top}
    assert all(rules.values()), [t for t, r in rules.items() if r is None]
    kept = [t for t in top if rules[t].kind != 'ignore']
    skipped = [t for t in top if rules[t].kind == 'ignore']
    assert sorted(skipped) == sorted(
        ['django_migrations', 'ucr_table_name_mapping', 'icds_reports_aggregatesqlprofile']
        + [t for t in top if t.startswith('ucr_icds-test_')])

    boot = _twice('citus_bootstrap', pair.module_args(ucr_folder=folder))
    assert boot['unclassified'] == []
    assert sorted(boot['created_tables']) == kept
    _twice('citus_child_tables', pair.module_args(ucr_folder=folder))
    manifest = str(tmp_path / 'icds.db')
    gen_args = pair.module_conn('source')
    gen_args.update(path=manifest, ucr_folder=folder)
    gen = _twice('migration_manifest', gen_args)
    assert gen['unclassified'] == []
    copy = _twice('migrate_tables', pair.module_args(path=manifest, parallel=2))
    assert copy['copied'] == gen['added_count'] and copy['errored'] == 0
    compare = run_module('compare_tables', pair.module_args(path=manifest, checksums=True,
                                                        fail_on_drift=True))
    assert not compare.get('failed'), compare
    assert compare['drift_count'] == 0 and compare['matched_count'] == gen['added_count']

    # every real table is on the target with its real key: the plan's when it names one (the
    # UCR data source's for UCR tables), the source's otherwise
    tgt = dict(query(pair.target_server, pair.target_db, _TABLES))
    tgt_keys = dict(query(pair.target_server, pair.target_db, _KEYS))
    for table in kept:
        assert table in tgt and tgt[table] is None, table
        want = list(rules[table].primary_key or src_keys.get(table) or [])
        assert (tgt_keys.get(table) or []) == want, (table, tgt_keys.get(table), want)
        if src_keys.get(table):  # the source key's columns are all still in the key
            assert set(src_keys[table]) <= set(want), table
    for table in FORMS:
        assert tgt_keys[table] == ['supervisor_id', 'case_id', 'month'], table
    for table in skipped:
        assert table not in tgt, table

    # the manifest: every table but the skipped ones and their children, with its date
    # (from its name, else its CHECK) and its target (drop-child children: their parent)
    checks = {}
    for table, definition in query(pair.source_server, pair.source_db, _CHECKS):
        checks.setdefault(table, definition)
    with Manifest.open(manifest, readonly=True) as opened:
        rows = {r.source_table: (r.date, r.target_table) for r in opened.rows()}
    expected = {}
    for table, parent in src.items():
        family = parent or table
        if rules[family].kind == 'ignore':
            continue
        date = _first_date(table) or _first_date(checks.get(table)) if parent else None
        if parent is None:
            expected[table] = (None, None)
        elif rules[family].kind == 'drop_child':
            expected[table] = (date, parent)
        else:
            expected[table] = (date, table)
    assert rows == expected
    # children: of keep-child families on the target, of drop-child families nowhere
    for table, parent in src.items():
        if parent and rules[parent].kind == 'keep_child':
            assert tgt.get(table) == parent, table
        elif parent:
            assert table not in tgt, table
    return pair, rules, kept


def test_real_schema_chain_on_plain_postgresql(dbs, tmp_path):
    _chain(dbs, tmp_path)


@pytest.mark.citus
def test_real_schema_chain_on_citus(citus_dbs, tmp_path):
    pair, rules, kept = _chain(citus_dbs, tmp_path)
    placed = {name: (method, column) for name, method, column in query(
        pair.target_server, pair.target_db,
        "SELECT logicalrelid::regclass::text, partmethod::text, "
        "column_to_column_name(logicalrelid, partkey) FROM pg_dist_partition")}
    placed = {name.strip('"'): value for name, value in placed.items()}
    wanted = {}
    for table in kept:
        dist = rules[table].distribution
        if dist.kind == 'hash':
            wanted[table] = ('h', dist.column)
        elif dist.kind == 'reference':
            wanted[table] = ('n', None)
    assert {t: (m, c if m == 'h' else None) for t, (m, c) in placed.items()} == wanted
    # as ICDS ran it: the forms and monthly tables on supervisor_id, the LS VHND UCR on
    # location_id, awc_location and icds_months as reference tables, the agg_* tables local
    for table in FORMS + ['daily_attendance', 'child_health_monthly', 'ccs_record_monthly']:
        assert placed[table] == ('h', 'supervisor_id'), table
    assert [m for t, (m, c) in placed.items() if 'ls_vhnd_form' in t] == ['h']
    assert placed['awc_location'][0] == 'n' and placed['icds_months'][0] == 'n'
    assert not any(t.startswith('agg_') for t in placed)
