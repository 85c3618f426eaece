"""The pure parts of compare.py: how manifest rows turn into comparisons."""

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.validate.compare import (
    NewRowsResult, check_predicate, describe_waiting, drop_child_families, outside_all,
    parse_since, plan_comparisons, rows_from_pairs, table_pairs)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import SelectionError
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import ManifestRow

UCR = 'ucr_icds-cas_static-child_health_cases_a1b2c3d4'


def row(i, source, target=None, migrated=True):
    return ManifestRow(i, source, None, target, migrated, False)


FAMILY = [row(1, UCR), row(2, UCR + '_2020-01', UCR), row(3, UCR + '_2020-02', UCR),
          row(4, 'agg_awc'), row(5, 'agg_awc_2020-01-01_1', 'agg_awc_2020-01-01_1'),
          row(6, 'icds_months')]
PREDS = {UCR + '_2020-01': "((month = '2020-01-01'::date))",
         UCR + '_2020-02': "((month = '2020-02-01'::date))"}


def test_predicates_combine_and_negate():
    assert check_predicate([]) is None
    assert check_predicate(['(a > 1)', ' ', "(b = 'x')"]) == "((a > 1)) AND ((b = 'x'))"
    assert outside_all([]) is None
    assert outside_all(['(a)', '(b)']) == 'NOT (COALESCE(((a)), false) OR COALESCE(((b)), false))'


def test_families_are_children_copied_into_another_table():
    assert drop_child_families(FAMILY) == {UCR: [UCR + '_2020-01', UCR + '_2020-02']}


def test_plan_kinds_targets_and_predicates():
    plans = plan_comparisons(FAMILY, FAMILY, PREDS)
    assert [(p.kind, p.source_table, p.target_table) for p in plans] == [
        ('slice', UCR, UCR), ('slice', UCR + '_2020-01', UCR), ('slice', UCR + '_2020-02', UCR),
        ('table', 'agg_awc', 'agg_awc'),
        ('table', 'agg_awc_2020-01-01_1', 'agg_awc_2020-01-01_1'),
        ('table', 'icds_months', 'icds_months')]
    assert plans[0].predicate == outside_all(list(PREDS.values()))
    assert plans[1].predicate == PREDS[UCR + '_2020-01']
    assert [p.target_only for p in plans] == [False, False, False, True, True, True]


def test_filtered_rows_still_slice_against_the_whole_family():
    plans = plan_comparisons([FAMILY[0]], FAMILY, PREDS)
    assert len(plans) == 1
    assert plans[0].predicate == outside_all(list(PREDS.values()))


def test_parent_without_children_on_the_target_is_a_plain_table():
    plans = plan_comparisons([FAMILY[0]], [FAMILY[0]], PREDS)
    assert (plans[0].kind, plans[0].predicate) == ('table', None)


def test_child_without_check_turns_the_family_into_one_group():
    preds = dict(PREDS)
    preds[UCR + '_2020-02'] = None
    plans = plan_comparisons(FAMILY, FAMILY, preds)
    assert [p.kind for p in plans] == ['group', 'table', 'table', 'table']
    group = plans[0]
    assert group.members == [UCR, UCR + '_2020-01', UCR + '_2020-02']
    assert group.predicate is None and UCR + '_2020-02' in group.note


def test_group_sums_only_rows_expected_on_the_target():
    preds = {UCR + '_2020-01': None, UCR + '_2020-02': None}
    expected = [r for r in FAMILY if r.id != 3]  # the February child not migrated yet
    plans = plan_comparisons([FAMILY[1]], expected, preds)
    assert [(p.kind, p.members) for p in plans] == [('group', [UCR, UCR + '_2020-01'])]


def test_same_check_on_two_children_cannot_be_sliced():
    preds = {UCR + '_2020-01': '(x)', UCR + '_2020-02': '(x)'}
    (group, *_rest) = plan_comparisons(FAMILY, FAMILY, preds)
    assert group.kind == 'group' and 'same CHECK' in group.note


def test_table_entries():
    assert table_pairs(['a', ('b', 'c'), {'source': 'd'}, {'source': 'e', 'target': 'f'}]) == [
        ('a', 'a'), ('b', 'c'), ('d', 'd'), ('e', 'f')]
    for bad in [[{'src': 'x'}], [('a',)], [''], [5]]:
        with pytest.raises(SelectionError):
            table_pairs(bad)
    rows = rows_from_pairs([('a', 'a'), ('b', 'c')])
    assert [(r.source_table, r.target_table, r.target, r.migrated) for r in rows] == [
        ('a', None, 'a', True), ('b', 'c', 'c', True)]


def test_since_must_be_iso():
    assert parse_since(' 2024-05-01T10:00:00Z ') == '2024-05-01T10:00:00Z'
    assert parse_since('2024-05-01 10:00:00+05:30') == '2024-05-01 10:00:00+05:30'
    with pytest.raises(SelectionError, match='ISO timestamp'):
        parse_since('yesterday')


def test_waiting_message_names_tables_and_missing_sides():
    ok = NewRowsResult('a', 'a', True, True)
    late = NewRowsResult('b', 'b', True, False, timed_out=True)
    nowhere = NewRowsResult('c', 'd', timed_out=True)
    broken = NewRowsResult('e', 'e', error='target: relation "public.e" does not exist')
    assert describe_waiting([ok]) is None
    assert describe_waiting([ok, late, nowhere, broken]) == (
        '3 of 4 tables: b (no new rows in the target); c -> d (no new rows in the source and '
        'the target); e (target: relation "public.e" does not exist)')
    assert late.as_dict()['missing_on'] == ['target']
