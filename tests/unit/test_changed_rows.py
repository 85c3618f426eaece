"""The pure logic of the catch-up by changes (validate.changed_rows), without a database:
how one flagged bucket is settled from the source's changed rows, its key sums and the
target's rows, and when a copy snapshot xmin can be used at all."""

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.validate.changed_rows import (
    MAX_READINGS, XID_HORIZON, ChangeComparer, SourceChanges, _settle_by_subsets, usable_since)
from ansible_collections.icds.citus_migration.plugins.module_utils.validate.segment_checksum import (
    DUPLICATE, Scope)

B = 3  # the bucket under test


def _comparer(sums, rows=None) -> ChangeComparer:
    scope = Scope('cases-2020', 'cases-2020', 'table', True, None, ['id', 'label'], 'id', 'bigint')
    comparer = ChangeComparer(None, None, scope)
    comparer.source = SourceChanges(sums=sums, rows=rows or {})
    return comparer


def _sums(*key_hashes):
    return {B: (len(key_hashes), sum(key_hashes))}


def _changed(comparer):
    """The changed source rows of bucket B, as settle hands them to _settle_bucket."""
    return {k: (kh, rh) for k, (b, kh, rh) in comparer.source.rows.items() if b == B}


# the target's old rows: key -> (key hash, row hash); the unchanged source rows are the same
OLD = {('1',): (101, 9001), ('2',): (202, 9002), ('3',): (303, 9003)}


def test_sums_that_add_up_leave_nothing_extra():
    comparer = _comparer(_sums(101, 202, 303))
    outcome, left = comparer._settle_bucket(B, {}, dict(OLD))
    assert left is None
    assert (outcome.changed, outcome.missing, outcome.extra) == (set(), set(), set())


def test_one_deleted_key_is_told_by_its_hash():
    comparer = _comparer(_sums(101, 303))  # the source deleted key 2
    outcome, left = comparer._settle_bucket(B, {}, dict(OLD))
    assert left is None  # no look-up on the source
    assert outcome.extra == {('2',)}
    assert not outcome.changed and not outcome.missing


def test_two_deleted_keys_are_told_by_their_hash_sum():
    comparer = _comparer(_sums(101))  # the source deleted keys 2 and 3
    outcome, left = comparer._settle_bucket(B, {}, dict(OLD))
    assert left is None  # the one pair of target keys whose hashes sum to the difference
    assert outcome.extra == {('2',), ('3',)}
    assert not outcome.changed and not outcome.missing


def test_deleted_keys_whose_hash_sum_two_sets_share_are_left_for_the_look_up():
    target = {(str(h),): (h, h + 9000) for h in (10, 20, 30, 40, 99)}
    comparer = _comparer(_sums(99, 10, 40))  # 20 and 30 deleted: 10 and 40 sum the same
    outcome, left = comparer._settle_bucket(B, {}, target)
    # every target key not changed on the source, with its key hash: the caller looks them up
    assert left == {k: kh for k, (kh, _rh) in target.items()}
    assert not outcome.extra


def test_one_deleted_key_whose_hash_two_keys_share_is_left_for_the_look_up():
    target = dict(OLD)
    target[('4',)] = (202, 9004)  # key 4's hash equals key 2's: not told apart
    comparer = _comparer(_sums(101, 303, 202))  # one of 2 and 4 deleted
    outcome, left = comparer._settle_bucket(B, {}, target)
    assert left == {('1',): 101, ('2',): 202, ('3',): 303, ('4',): 202}
    assert not outcome.extra


def test_a_changed_row_that_differs_on_the_target_is_changed():
    rows = {('2',): (B, 202, 7777)}  # key 2 updated on the source: a new row hash
    comparer = _comparer(_sums(101, 202, 303), rows)
    outcome, left = comparer._settle_bucket(B, _changed(comparer), dict(OLD))
    assert left is None
    assert outcome.changed == {('2',)}
    assert not outcome.missing and not outcome.extra


def test_a_changed_row_the_target_already_holds_is_not_changed():
    rows = {('2',): (B, 202, 9002)}  # rewritten on the source with the same values (or mirrored)
    comparer = _comparer(_sums(101, 202, 303), rows)
    outcome, left = comparer._settle_bucket(B, _changed(comparer), dict(OLD))
    assert left is None
    assert (outcome.changed, outcome.missing, outcome.extra) == (set(), set(), set())


def test_a_changed_row_missing_on_the_target_is_missing():
    rows = {('9',): (B, 909, 9009)}  # inserted on the source since the copy
    comparer = _comparer(_sums(101, 202, 303, 909), rows)
    outcome, left = comparer._settle_bucket(B, _changed(comparer), dict(OLD))
    assert left is None
    assert outcome.missing == {('9',)}
    assert not outcome.changed and not outcome.extra


def test_inserted_changed_and_one_deleted_in_one_bucket():
    rows = {('9',): (B, 909, 9009), ('1',): (B, 101, 5555)}
    comparer = _comparer(_sums(101, 303, 909), rows)  # 1 changed, 2 deleted, 9 inserted
    outcome, left = comparer._settle_bucket(B, _changed(comparer), dict(OLD))
    assert left is None
    assert (outcome.changed, outcome.missing, outcome.extra) == ({('1',)}, {('9',)}, {('2',)})


def test_a_key_the_target_holds_twice_leaves_the_bucket_row_by_row():
    target = dict(OLD)
    target[('3',)] = (303, DUPLICATE)  # as _pairs records a key read twice
    comparer = _comparer(_sums(101, 202, 303))
    outcome, left = comparer._settle_bucket(B, {}, target)
    assert left == {}  # not None: the bucket goes to the look-up, which sends it row by row
    assert not outcome.extra


def test_a_changed_key_the_target_holds_twice_is_changed_and_row_by_row():
    target = dict(OLD)
    target[('2',)] = (202, DUPLICATE)
    rows = {('2',): (B, 202, 7777)}
    comparer = _comparer(_sums(101, 202, 303), rows)
    outcome, left = comparer._settle_bucket(B, _changed(comparer), target)
    assert left == {}
    assert outcome.changed == {('2',)}


def test_a_lost_old_row_does_not_add_up():
    target = {k: v for k, v in OLD.items() if k != ('2',)}  # the target lost key 2
    comparer = _comparer(_sums(101, 202, 303))
    outcome, left = comparer._settle_bucket(B, {}, target)
    assert left == {('1',): 101, ('3',): 303}  # looked up; they are all on the source: row by row
    assert not outcome.extra and not outcome.missing


def test_flagged_buckets_and_a_settled_drift_without_look_up():
    """flagged: buckets whose key sums differ or that hold changed rows; settle of buckets that
    need no look-up names the rows in the segment's range."""
    comparer = _comparer({})
    source = SourceChanges(sums={0: (2, 303), 1: (3, 606), 2: (1, 5)},
                           rows={('2',): (1, 202, 7777)})
    target = {0: (2, 303), 1: (3, 606), 2: (2, 12)}
    assert comparer.flagged(source, target) == [1, 2]
    drift = comparer.settle({1: dict(OLD), 2: {('5',): (5, 1), ('7',): (7, 2)}})
    assert drift.source_rows == 6 and drift.target_rows == 7
    assert drift.differing_segments == 1 and len(drift.ranges) == 1
    found = drift.ranges[0]
    assert (found.changed, found.missing, found.extra) == ([('2',)], [], [('7',)])


def test_a_target_row_without_a_key_fails_the_comparison():
    from ansible_collections.icds.citus_migration.plugins.module_utils.validate.segment_checksum import (
        SideQueryFailed)
    comparer = _comparer({})
    with pytest.raises(SideQueryFailed, match='no value in the key column'):
        comparer.flagged(SourceChanges(), {None: (4, 0), 0: (1, 1)})


@pytest.mark.parametrize('since, next_xid, usable', [
    (None, 1000, False),                                 # copied by an earlier version
    (1000, 5000, True),                                  # normal
    (3, 5000, True),                                     # the first normal xid
    (1000, 1000, True),                                  # nothing since the copy
    (1000, 1000 + XID_HORIZON - 1, True),
    (1000, 1000 + XID_HORIZON, False),                   # too long ago to order 32-bit xids
    (1000, 1000 + XID_HORIZON + 5, False),
    (5000, 1000, False),                                 # a snapshot "after" the next xid
    (0, 100, False), (1, 100, False), (2, 100, False),   # special xids
    ((1 << 32) + 1, (1 << 32) + 100, False),             # special in a later epoch
    ((1 << 32) + 3, (1 << 32) + 100, True),
    ((1 << 32) - 10, (1 << 32) + 100, True),             # across an epoch boundary
])
def test_usable_since(since, next_xid, usable):
    assert usable_since(since, next_xid) is usable


def test_rows_of_one_hash_are_told_from_the_sums():
    from ansible_collections.icds.citus_migration.plugins.module_utils.validate.changed_rows import _one_hash
    h = -(1 << 62) + 12345
    assert _one_hash(1, h) == (1, h)  # one target row too many
    assert _one_hash(-1, -h) == (-1, h)  # one source row too few
    assert _one_hash(3, 3 * h) == (3, h)  # three equal rows (a table without a key)
    assert _one_hash(-2, -2 * h) == (-2, h)
    assert _one_hash(2, 2 * h + 1) == (None, 0)  # two rows, not of one hash
    # two rows of other hashes can sum like two of one: the caller then finds no target row
    # of that hash and reads the whole bucket
    assert _one_hash(2, h + (h + 2)) == (2, h + 1)
    assert _one_hash(0, h) == (None, 0)  # as many rows, other hashes: not one hash
    assert _one_hash(1, 1 << 64) == (None, 0)  # beyond a 64-bit hash: not one row's


# -- wanted and settle with only the rows wanted (hunted_rows) --------------------------------

def _flagged(source_sums, target_sums, rows=None) -> ChangeComparer:
    comparer = _comparer({})
    comparer.flagged(SourceChanges(sums=source_sums, rows=rows or {}), target_sums)
    return comparer


def test_updates_only_want_the_changed_keys_hashes():
    comparer = _flagged(_sums(101, 202, 303), _sums(101, 202, 303), {('2',): (B, 202, 7777)})
    assert comparer.wanted() == ({202}, set())
    drift = comparer.settle({B: {('2',): (202, 9002)}})  # the target still holds the old row 2
    assert drift.ranges[0].changed == [('2',)] and not drift.ranges[0].extra


def test_one_deleted_key_is_wanted_by_its_hash_and_settled_from_it():
    comparer = _flagged(_sums(101, 303), _sums(101, 202, 303))  # the source deleted key 2
    assert comparer.wanted() == ({202}, set())
    drift = comparer.settle({B: {('2',): (202, 9002)}})
    assert drift.ranges[0].extra == [('2',)] and not drift.ranges[0].changed


def test_an_insert_and_a_delete_in_one_bucket_want_both_readings():
    # source: 1, 3, new 4 (hash 404); target: 1, 2, 3. Reading "4 is new" leaves one deleted
    # key of hash 202; reading "4 is an update" leaves one of hash 202 - 404 (a wrong one).
    comparer = _flagged(_sums(101, 303, 404), _sums(101, 202, 303), {('4',): (B, 404, 8004)})
    hashes, whole = comparer.wanted()
    assert {404, 202} <= hashes and not whole
    drift = comparer.settle({B: {('2',): (202, 9002)}})  # what the scan finds
    found = drift.ranges[0]
    assert (found.missing, found.extra, found.changed) == ([('4',)], [('2',)], [])


def test_two_deleted_keys_read_the_bucket_whole():
    comparer = _flagged(_sums(101), _sums(101, 202, 303))
    assert comparer.wanted() == (set(), {B})


def test_too_many_changed_rows_read_the_bucket_whole():
    rows = {(str(k),): (B, k, k + 1) for k in range(10, 10 + MAX_READINGS + 1)}
    comparer = _flagged(_sums(1), _sums(1, 2), rows)
    hashes, whole = comparer.wanted()
    assert whole == {B} and hashes == {k for k in range(10, 10 + MAX_READINGS + 1)}


def test_a_wanted_hash_that_finds_no_row_leaves_the_bucket_row_by_row():
    comparer = _flagged(_sums(101, 303), _sums(101, 202, 303))
    comparer.wanted()
    outcome, left = comparer._settle_known(B, {}, {})  # the target showed no row of hash 202
    assert left == {} and not outcome.extra


def test_a_key_found_twice_leaves_the_bucket_row_by_row():
    comparer = _flagged(_sums(101, 202, 303), _sums(101, 202, 303, 202), {('2',): (B, 202, 7777)})
    comparer.wanted()
    outcome, left = comparer._settle_known(B, {('2',): (202, 7777)}, {('2',): (202, DUPLICATE)})
    assert left == {}


# -- a keyless bucket settled from its target rows and the source's sums (_settle_by_subsets) --

def _rows(*hashes):
    return [(1, '(0,%d)' % i, h) for i, h in enumerate(hashes, 1)]


def _subsets(target, changed, unchanged):
    """(settled, hashes to copy, hashes to delete) of one bucket whose source holds the
    ``unchanged`` row hashes and the ``changed`` rows."""
    sums = (len(unchanged) + len(changed), sum(unchanged) + sum(r[2] for r in changed))
    told = _settle_by_subsets(target, changed, sums)
    if told is None:
        return False, [], []
    return True, sorted(r[2] for r in told[0]), sorted(r[2] for r in told[1])


def test_an_update_in_one_keyless_bucket_is_told_by_the_target_rows():
    # the old version (70) and the new one (75) fell in the same bucket
    assert _subsets(_rows(10, 20, 70), _rows(75), [10, 20]) == (True, [75], [70])


def test_two_deleted_keyless_rows_are_told_by_their_sum():
    assert _subsets(_rows(10, 20, 30, 40), [], [10, 30]) == (True, [], [20, 40])


def test_a_changed_keyless_row_the_copy_already_held_is_left():
    assert _subsets(_rows(10, 20, 75), _rows(75), [10, 20]) == (True, [], [])


def test_equal_keyless_rows_are_interchangeable():
    # two equal rows (hash 20) on the target, the source deleted one of them
    assert _subsets(_rows(10, 20, 20), [], [10, 20]) == (True, [], [20])


def test_sets_of_the_same_sum_are_not_told_apart():
    # the deleted rows sum to 50: 10 + 40 or 20 + 30
    assert _subsets(_rows(10, 20, 30, 40, 99), [], [99]) == (False, [], [])


def test_a_keyless_row_the_target_lost_is_not_told():
    assert _subsets(_rows(10), [], [10, 20])[0] is False


def test_a_table_much_changed_reads_its_flagged_buckets_whole(monkeypatch):
    from ansible_collections.icds.citus_migration.plugins.module_utils.validate import changed_rows
    monkeypatch.setattr(changed_rows, 'MAX_HUNTED', 2)
    rows = {('4',): (B, 404, 1), ('5',): (B, 505, 2), ('6',): (B, 606, 3)}
    comparer = _flagged(_sums(101, 404, 505, 606), _sums(101, 404, 505, 606), rows)
    assert comparer.wanted() == (set(), {B})  # three hashes would be more than two


@pytest.mark.parametrize('seed', range(20))
def test_subsets_summing_finds_exactly_the_sets_that_brute_force_finds(seed):
    import random
    from itertools import combinations
    from ansible_collections.icds.citus_migration.plugins.module_utils.validate.changed_rows import subsets_summing
    rnd = random.Random(seed)
    values = [rnd.choice([rnd.randint(-20, 20), rnd.getrandbits(63) - (1 << 62)]) for dummy in range(rnd.randint(0, 25))]
    for size in range(4):
        for total in {0, 7, sum(values[:size])} | ({sum(rnd.sample(values, size))} if len(values) >= size else set()):
            want = [c for c in combinations(range(len(values)), size) if sum(values[i] for i in c) == total]
            assert sorted(subsets_summing(values, size, total)) == want


def test_subsets_summing_refuses_more_than_three_members():
    from ansible_collections.icds.citus_migration.plugins.module_utils.validate.changed_rows import subsets_summing
    with pytest.raises(ValueError, match='4 members'):
        list(subsets_summing([1, 2, 3, 4], 4, 10))
