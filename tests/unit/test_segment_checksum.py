"""The pure parts of the catch-up: stored plans as segments, row diffs, repair batches."""

from ansible_collections.icds.citus_migration.plugins.module_utils.copy.key_ranges import KeyRange
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.range_repair import batches
from ansible_collections.icds.citus_migration.plugins.module_utils.validate.segment_checksum import (
    FINE_ROWS, MAX_FINE, RangeDiff, diff_rows, fine_buckets, multiset_diff, differing_buckets, stored_bounds)


def test_a_stored_key_plan_gives_its_cut_points():
    parts = [KeyRange('id', None, '10').encode(), KeyRange('id', '10', '20').encode(),
             KeyRange('id', '20', None).encode()]
    assert stored_bounds(parts, 'id') == ['10', '20']


def test_plans_that_are_not_segments_of_the_key():
    chained = [KeyRange('id', None, '10').encode(), KeyRange('id', '10', None).encode()]
    assert stored_bounds(chained, 'doc_id') is None  # another column
    assert stored_bounds(['ctid:(0,0)-(10,0)', 'ctid:(10,0)-'], 'id') is None  # a ctid plan
    gap = [KeyRange('id', None, '10').encode(), KeyRange('id', '11', None).encode()]
    assert stored_bounds(gap, 'id') is None
    assert stored_bounds(None, 'id') is None


def test_row_diff_names_changed_missing_and_extra_keys():
    span = KeyRange('id')
    diff = diff_rows(span, {('1',): 10, ('2',): 20, ('3',): 30}, {('1',): 10, ('2',): 21, ('4',): 40})
    assert (diff.changed, diff.missing, diff.extra) == ([('2',)], [('3',)], [('4',)])
    assert diff.rows == 3 and sorted(diff.keys) == [('2',), ('3',), ('4',)]


def test_multiset_diff_keeps_duplicates_apart():
    source = [(1, '(0,1)', 7), (1, '(0,2)', 7), (1, '(0,3)', 8)]
    target = [(2, '(0,1)', 7), (2, '(0,2)', 9), (2, '(0,3)', 9)]
    copy, delete = multiset_diff(source, target)
    assert [c[2] for c in copy] == [7, 8]  # one of the two 7s is there already
    assert sorted(d[1] for d in delete) == ['(0,2)', '(0,3)']


def test_differing_buckets_include_those_on_one_side_only():
    source = {0: (2, 3), 5: (1, 1), 7: (4, 4)}
    target = {0: (2, 3), 5: (1, 2), 9: (1, 0), None: (1, 1)}
    assert differing_buckets(source, target) == [5, 7, 9]


def test_repair_batches_keep_ranges_whole():
    def rng(n):
        return RangeDiff(KeyRange('id'), changed=[(str(i),) for i in range(n)])
    sizes = [[len(r.keys) for r in b] for b in batches([rng(5), rng(5), rng(12), rng(3)], limit=10)]
    assert sizes == [[5, 5], [12], [3]]


def test_sub_buckets_hold_about_fine_rows_rows_each():
    for rows, segments in ((767632, 7), (230293, 1), (5000, 1), (2400000, 10)):
        fine = fine_buckets(rows, segments)
        assert fine & (fine - 1) == 0  # a power of two: the bucket is a hash masked by fine - 1
        per_bucket = rows / segments / fine
        assert FINE_ROWS / 2 < per_bucket <= FINE_ROWS, (rows, segments, fine)


def test_sub_buckets_of_empty_and_huge_tables():
    assert fine_buckets(0, 1) == 1 and fine_buckets(10, 1) == 1  # no estimate, or a tiny table
    assert fine_buckets(10 ** 12, 1) == MAX_FINE  # capped: one grouped scan stays in memory
