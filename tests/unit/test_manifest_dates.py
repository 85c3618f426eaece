"""Manifest row dates (name, CHECK, partition bound) and the row layout, without a database."""

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.schema.catalog import TableInfo
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.generator import (
    build_manifest_plan, date_from_checks, date_from_name, date_from_partition_bound, table_date,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_plan import parse_plan


@pytest.mark.parametrize('name, expected', [
    ('agg_awc_2020-01-01_5', '2020-01-01'),
    ('child_health_monthly_2019-12-01', '2019-12-01'),
    ('span_2020-03-01_2020-02-01', '2020-02-01'),       # smallest, not first
    ('bad_2020-13-45_ok_2020-02-01', '2020-02-01'),      # invalid dates skipped
    ('icds_db_gm_form_1c2d3e4f5a6b7c8d9e0f1a2b', None),
    ('ucr_icds-cas_static-child_health_cases_a46c129f_y2020m01', None),
    ('x12020-01-011', None),                             # digits glued on: not a date
])
def test_date_from_name(name, expected):
    assert date_from_name(name) == expected


def test_date_from_checks():
    assert date_from_checks(["CHECK (((month = '2020-02-01'::date) AND (state_id = 'st1')))"]) == '2020-02-01'
    # a range written upper bound first still yields its lower bound
    assert date_from_checks(["CHECK (((inserted_at < '2020-02-01 00:00:00'::timestamp without time zone) "
                             "AND (inserted_at >= '2020-01-01 00:00:00'::timestamp without time zone)))"]) \
        == '2020-01-01'
    assert date_from_checks(['CHECK ((aggregation_level = 1))', "CHECK ((month = '2021-06-01'::date))"]) \
        == '2021-06-01'
    assert date_from_checks(['CHECK ((aggregation_level = 1))']) is None
    assert date_from_checks([]) is None


@pytest.mark.parametrize('bound, expected', [
    ("FOR VALUES FROM ('2020-01-01') TO ('2020-02-01')", '2020-01-01'),
    ("FOR VALUES FROM ('2020-01-01 00:00:00+00') TO ('2020-02-01 00:00:00+00')", '2020-01-01'),
    ("FOR VALUES FROM ('2020-03-01', 1) TO ('2020-03-01', 5)", '2020-03-01'),
    ("FOR VALUES FROM (MINVALUE) TO ('2020-01-01')", None),
    ("FOR VALUES IN ('2020-05-01', '2020-04-01')", '2020-04-01'),
    ('FOR VALUES IN (1, 2)', None),
    ('DEFAULT', None),
    ('FOR VALUES WITH (modulus 4, remainder 1)', None),
    (None, None),
])
def test_date_from_partition_bound(bound, expected):
    assert date_from_partition_bound(bound) == expected


def test_table_date_precedence_name_then_check_then_bound():
    bound = "FOR VALUES FROM ('2018-01-01') TO ('2018-02-01')"
    check = ["CHECK ((month = '2019-01-01'::date))"]
    assert table_date(TableInfo('t_2020-01-01', checks=check, partition_bound=bound)) == '2020-01-01'
    assert table_date(TableInfo('t', checks=check, partition_bound=bound)) == '2019-01-01'
    assert table_date(TableInfo('t', partition_bound=bound)) == '2018-01-01'
    assert table_date(TableInfo('t')) is None


PLAN = parse_plan({'families': [
    {'name': 'agg', 'kind': 'keep_child'},
    {'name': 'forms', 'kind': 'drop_child', 'distribution': {'hash': 'sid'}},
    {'name': 'months', 'kind': 'plain', 'distribution': 'reference'},
    {'name': 'django_migrations', 'kind': 'ignore'},
]})


def test_rows_parent_first_children_sorted_targets_per_kind():
    tables = [
        TableInfo('forms', columns=['sid']), TableInfo('agg'), TableInfo('months'),
        TableInfo('forms_b', parent='forms', checks=["CHECK ((month = '2020-02-01'::date))"]),
        TableInfo('forms_a', parent='forms', checks=["CHECK ((month = '2020-03-01'::date))"]),
        TableInfo('agg_2020-02-01', parent='agg'), TableInfo('agg_2020-01-01', parent='agg'),
        TableInfo('django_migrations'), TableInfo('stray'), TableInfo('stray_kid', parent='stray'),
    ]
    result = build_manifest_plan(tables, PLAN)
    assert [r.as_tuple() for r in result.rows] == [
        ('agg', None, None),
        ('agg_2020-01-01', '2020-01-01', 'agg_2020-01-01'),
        ('agg_2020-02-01', '2020-02-01', 'agg_2020-02-01'),
        ('forms', None, None),
        ('forms_a', '2020-03-01', 'forms'),
        ('forms_b', '2020-02-01', 'forms'),
        ('months', None, None),
    ]
    assert result.ignored == ['django_migrations']
    assert result.unclassified == ['stray']
    assert result.warnings == []


def test_partitioned_intermediate_tables_hold_no_rows_and_plain_children_are_reported():
    tables = [
        TableInfo('agg', is_partitioned=True),
        TableInfo('agg_p1', parent='agg', is_partition=True, is_partitioned=True,
                  partition_bound="FOR VALUES FROM ('2020-01-01') TO ('2020-02-01')"),
        TableInfo('agg_p1_a', parent='agg_p1', is_partition=True,
                  partition_bound='FOR VALUES IN (1)'),
        TableInfo('months'), TableInfo('months_old', parent='months'),
        TableInfo('forms', columns=[]),
    ]
    result = build_manifest_plan(tables, PLAN)
    assert [r.as_tuple() for r in result.rows] == [
        ('agg', None, None), ('agg_p1_a', None, 'agg_p1_a'), ('forms', None, None), ('months', None, None)]
    assert result.unclassified == ['months_old']
    assert any("plain table 'months'" in w for w in result.warnings)
    assert any("table 'forms' has no column 'sid'" in w for w in result.warnings)
