"""Table plan: loading, validation errors, classification of ICDS names, UCR data sources."""

import json
import os
import shutil

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.schema.catalog import TableInfo
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import PlanError
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.icds_plan import ICDS_PLAN_NAME, ICDS_PLAN_YAML
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_plan import (
    DEFAULT_PLAN_PATH, Distribution, load_plan, parse_plan, parse_ucr_name, ucr_table_name,
    ucr_table_names,
)

SAMPLES = '/work/shared/samples/ucr_data_sources'
CHC = ucr_table_name('icds-cas', 'static-child_health_cases')
VHND = ucr_table_name('icds-cas', 'static-ls_vhnd_form')
CBE = ucr_table_name('icds-cas', 'static-cbe_form')


@pytest.fixture
def ucr_folder(tmp_path):
    fixture = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'fixtures', 'ucr_data_sources')
    if os.path.isdir(fixture):
        return fixture
    folder = tmp_path / 'ucr'
    shutil.copytree(SAMPLES, folder)
    return str(folder)


def _plan(*rules, **kw):
    return parse_plan({'version': 1, 'families': list(rules)}, 'test.yml', **kw)


def _error(*rules):
    with pytest.raises(PlanError) as info:
        _plan(*rules)
    return str(info.value)


# -- the shipped ICDS plan -------------------------------------------------------------------
def test_shipped_plan_is_found_relative_to_the_collection():
    assert DEFAULT_PLAN_PATH.endswith(os.path.join('plans', 'icds.yml'))
    assert os.path.isfile(DEFAULT_PLAN_PATH)
    assert load_plan().source == ICDS_PLAN_NAME
    # the embedded copy (shipped inside module payloads) is the file operators read
    with open(DEFAULT_PLAN_PATH, encoding='utf-8') as handle:
        assert handle.read() == ICDS_PLAN_YAML


@pytest.mark.parametrize('name, kind, dist, pk', [
    ('agg_awc', 'keep_child', 'local', None),
    ('agg_child_health', 'keep_child', 'local', None),
    ('agg_awc_daily', 'keep_child', 'local', None),
    ('icds_dashboard_ls_vhnd_forms', 'keep_child', 'local', None),
    ('icds_dashboard_infrastructure_forms', 'keep_child', 'local',
     ('supervisor_id', 'awc_id', 'month')),
    ('icds_dashboard_thr_v2', 'keep_child', 'local', None),
    ('icds_audit_entry_record', 'keep_child', 'local', None),
    ('icds_dashboard_aww_incentive', 'keep_child', 'local', None),
    ('icds_dashboard_growth_monitoring_forms', 'drop_child', 'hash(supervisor_id)',
     ('supervisor_id', 'case_id', 'month')),
    ('icds_dashboard_comp_feed_form', 'drop_child', 'hash(supervisor_id)',
     ('supervisor_id', 'case_id', 'month')),
    ('icds_dashboard_daily_feeding_forms', 'drop_child', 'hash(supervisor_id)',
     ('supervisor_id', 'case_id', 'month')),
    ('child_health_monthly', 'drop_child', 'hash(supervisor_id)',
     ('supervisor_id', 'case_id', 'month')),
    ('daily_attendance', 'drop_child', 'hash(supervisor_id)',
     ('supervisor_id', 'doc_id', 'month')),
    (CHC, 'drop_child', 'hash(supervisor_id)', None),
    ('config_report_icds-cas_static-child_health_cases_0123abcd', 'drop_child',
     'hash(supervisor_id)', None),
    ('awc_location', 'plain', 'reference', None),
    ('icds_months', 'plain', 'reference', None),
    ('awc_location_local', 'plain', 'local', None),
    ('icds_reports_aggregateinactiveaww', 'plain', 'local', None),
    ('icds_reports_icdsfile', 'plain', 'local', None),
    ('icds_reports_aggregationrecord', 'plain', 'local', None),
    ('icds_reports_ucrreconciliationstatus', 'plain', 'local', None),
    ('icds_reports_aggregatesqlprofile', 'ignore', 'local', None),
    ('django_migrations', 'ignore', 'local', None),
    ('ucr_table_name_mapping', 'ignore', 'local', None),
    (ucr_table_name('enikshay', 'static-usage'), 'ignore', 'local', None),
    ('config_report_icds-dashboard-qa_static-x_0123abcd', 'ignore', 'local', None),
])
def test_shipped_plan_classifies_icds_names(name, kind, dist, pk):
    rule = load_plan().classify(name)
    assert rule is not None, name
    assert (rule.kind, rule.distribution.describe(), rule.primary_key) == (kind, dist, pk)


@pytest.mark.parametrize('name', ['auth_user', 'agg_awc_2020-01-01_1x', 'icds_dashboard_new_forms',
                                  'ucr_icds-cas_no_hash_suffix', 'AGG_AWC'])
def test_names_no_rule_fits_are_unclassified(name):
    assert load_plan().classify(name) is None


def test_ucr_rules_take_distribution_and_pk_from_data_sources(ucr_folder):
    plan = load_plan(ucr_folder=ucr_folder)
    chc = plan.classify(CHC)
    assert chc.distribution == Distribution('hash', 'supervisor_id')
    assert chc.primary_key == ('supervisor_id', 'doc_id')
    assert chc.data_source.endswith('child_health_cases.json')
    vhnd = plan.classify(VHND)
    assert vhnd.distribution == Distribution('hash', 'location_id')
    assert vhnd.primary_key == ('location_id', 'doc_id')
    cbe = plan.classify(CBE)
    assert (cbe.kind, cbe.distribution, cbe.primary_key) == ('drop_child', Distribution('local'), None)
    legacy = ucr_table_names('icds-cas', 'static-ls_vhnd_form')[1]
    assert legacy.startswith('config_report_icds-cas_static-ls_vhnd_form_')
    assert plan.classify(legacy).distribution == Distribution('hash', 'location_id')
    # an icds-cas UCR table without a data source keeps the rule's default
    orphan = plan.classify(ucr_table_name('icds-cas', 'static-retired_report'))
    assert orphan.distribution == Distribution('hash', 'supervisor_id') and orphan.data_source is None
    # the other domain's data source does not make its table migrate
    assert plan.classify(ucr_table_name('enikshay', 'static-usage')).kind == 'ignore'


def test_long_ucr_table_ids_are_truncated_like_commcare_and_still_match(tmp_path):
    table_id = 'static-a_very_long_table_identifier_that_commcare_truncates'
    name = ucr_table_name('icds-cas', table_id)
    assert len(name) == 50 and table_id not in name
    assert parse_ucr_name(name)[0] == 'icds-cas'
    doc = {'domains': ['icds-cas'], 'config': {'table_id': table_id, 'sql_settings': {
        'citus_config': {'distribution_type': 'reference'}}}}
    (tmp_path / 'long.json').write_text(json.dumps(doc))
    assert load_plan(ucr_folder=str(tmp_path)).classify(name).distribution == Distribution('reference')


# -- validation errors: each names the rule --------------------------------------------------
def test_unknown_kind():
    msg = _error({'name': 'agg_awc', 'kind': 'keep_children'})
    assert "rule #1 (name 'agg_awc')" in msg and "unknown kind 'keep_children'" in msg
    assert 'drop_child, keep_child, plain, ignore' in msg


def test_both_name_and_pattern():
    msg = _error({'name': 'a', 'kind': 'plain'}, {'name': 'b', 'pattern': 'b.*', 'kind': 'plain'})
    assert "rule #2 (name 'b')" in msg and 'exactly one of name, pattern or ucr (got name, pattern)' in msg


def test_neither_name_nor_pattern():
    msg = _error({'kind': 'plain', 'distribution': 'reference'})
    assert 'rule #1' in msg and 'exactly one of name, pattern or ucr (got none)' in msg


def test_invalid_regex():
    msg = _error({'pattern': 'agg_(awc', 'kind': 'keep_child'})
    assert "rule #1 (pattern 'agg_(awc')" in msg and 'invalid regular expression' in msg


def test_same_name_twice():
    msg = _error({'name': 'agg_awc', 'kind': 'keep_child'}, {'name': 'agg_awc', 'kind': 'plain'})
    assert "rule #1 (name 'agg_awc') and rule #2 (name 'agg_awc')" in msg


def test_identical_patterns():
    msg = _error({'pattern': 'agg_.*', 'kind': 'keep_child'}, {'pattern': 'agg_.*', 'kind': 'ignore'})
    assert "rule #1 (pattern 'agg_.*') and rule #2 (pattern 'agg_.*')" in msg


def test_name_also_matched_by_a_pattern_is_refused_at_load():
    msg = _error({'pattern': 'agg_.*', 'kind': 'keep_child'}, {'name': 'agg_awc', 'kind': 'plain'})
    assert "table 'agg_awc' is matched by two rules" in msg
    assert "rule #2 (name 'agg_awc')" in msg and "rule #1 (pattern 'agg_.*')" in msg


def test_overlapping_patterns_fail_on_the_actual_table():
    plan = _plan({'pattern': 'agg_.*', 'kind': 'keep_child'},
                 {'pattern': r'.*_daily', 'kind': 'plain'})
    assert plan.classify('agg_awc').kind == 'keep_child'
    with pytest.raises(PlanError) as info:
        plan.classify('agg_awc_daily')
    msg = str(info.value)
    assert "table 'agg_awc_daily'" in msg
    assert "rule #1 (pattern 'agg_.*')" in msg and "rule #2 (pattern '.*_daily')" in msg
    errors = plan.validate_against([TableInfo('agg_awc_daily')])
    assert len(errors) == 1 and "table 'agg_awc_daily'" in errors[0]


def test_pattern_must_match_the_whole_name():
    plan = _plan({'pattern': 'agg_awc', 'kind': 'keep_child'})
    assert plan.classify('agg_awc') is not None
    assert plan.classify('agg_awc_daily') is None and plan.classify('x_agg_awc') is None


def test_other_errors_name_the_rule():
    assert "rule #1 (name 'x'): unknown key(s) distrib" in _error(
        {'name': 'x', 'kind': 'plain', 'distrib': 'reference'})
    assert "rule #1 (name 'x'): invalid distribution 'sharded'" in _error(
        {'name': 'x', 'kind': 'plain', 'distribution': 'sharded'})
    assert "rule #1 (name 'x'): distribution from_data_source is only valid in a ucr rule" in _error(
        {'name': 'x', 'kind': 'drop_child', 'distribution': 'from_data_source'})
    assert "must include the distribution column 'supervisor_id'" in _error(
        {'name': 'x', 'kind': 'drop_child', 'distribution': {'hash': 'supervisor_id'},
         'primary_key': ['doc_id']})
    assert "rule #2 (ucr domain 'icds-cas')" in _error(
        {'name': 'y', 'kind': 'plain'},
        {'ucr': {'domain': 'icds-cas'}, 'kind': 'drop_child', 'distribution': 'from_data_source',
         'default_distribution': 'everywhere'})
    assert "rule #1 (name 'ucr_icds-cas_static-x_0123abcd') and rule #2 (ucr domain 'icds-cas')" in _error(
        {'name': 'ucr_icds-cas_static-x_0123abcd', 'kind': 'plain'},
        {'ucr': {'domain': 'icds-cas'}, 'kind': 'drop_child'})


def test_file_level_errors(tmp_path):
    bad_yaml = tmp_path / 'bad.yml'
    bad_yaml.write_text('families:\n  - name: [unclosed\n')
    with pytest.raises(PlanError, match='bad.yml is not valid YAML'):
        load_plan(str(bad_yaml))
    with pytest.raises(PlanError, match='cannot read plan .*missing.yml'):
        load_plan(str(tmp_path / 'missing.yml'))
    no_list = tmp_path / 'nolist.yml'
    no_list.write_text('families: agg_awc\n')
    with pytest.raises(PlanError, match='list under "families"'):
        load_plan(str(no_list))
    version = tmp_path / 'v2.yml'
    version.write_text('version: 2\nfamilies: []\n')
    with pytest.raises(PlanError, match='unsupported version 2'):
        load_plan(str(version))
    with pytest.raises(PlanError, match='UCR data source folder not found'):
        load_plan(ucr_folder=str(tmp_path / 'nope'))
    folder = tmp_path / 'ucr'
    folder.mkdir()
    (folder / 'broken.json').write_text('{"config": ')
    with pytest.raises(PlanError, match='broken.json is not readable JSON'):
        load_plan(ucr_folder=str(folder))
    (folder / 'broken.json').write_text(json.dumps({'config': {'table_id': 't', 'sql_settings': {
        'citus_config': {'distribution_type': 'hash'}}}}))
    with pytest.raises(PlanError, match='broken.json: citus_config distribution_type hash without'):
        load_plan(ucr_folder=str(folder))


def test_validate_against_reports_missing_columns():
    plan = _plan({'name': 'forms', 'kind': 'drop_child', 'distribution': {'hash': 'supervisor_id'},
                  'primary_key': ['supervisor_id', 'doc_id']},
                 {'name': 'fine', 'kind': 'plain', 'distribution': {'hash': 'a'}})
    tables = [TableInfo('forms', columns=['doc_id', 'month']), TableInfo('fine', columns=['a']),
              TableInfo('forms_child', parent='forms', columns=[]), TableInfo('other')]
    errors = plan.validate_against(tables)
    assert errors == [
        "table 'forms' has no column 'supervisor_id': distribution column of rule #1 (name 'forms')",
        "table 'forms' has no column(s) 'supervisor_id': primary key of rule #1 (name 'forms')",
    ]
