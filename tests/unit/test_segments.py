"""How many segments a large table gets, how a split is described, the segment options."""

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import SelectionError
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.key_ranges import (
    KeyRange, ranges_from_bounds)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.runner import RunOptions
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.split_plan import (
    describe_parts, segment_count)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.table_copy import split_ranges


@pytest.mark.parametrize('size,segment,forced,expected', [
    (1 << 30, 256 << 20, None, 4), ((1 << 30) + 1, 256 << 20, None, 5), (1, 256 << 20, None, 1),
    (0, 256 << 20, None, 1), (10 << 30, 256 << 20, 3, 3)])
def test_segment_count(size, segment, forced, expected):
    assert segment_count(size, segment, forced) == expected


def test_describe_parts():
    keyed = [r.encode() for r in ranges_from_bounds('code', ["O'Brien ✓", 'z'])]
    assert describe_parts(keyed) == 'key code, 3 segments'
    assert describe_parts(split_ranges(100, 4)) == 'ctid, 4 parts under one snapshot'
    assert KeyRange.decode(keyed[1]) == KeyRange('code', "O'Brien ✓", 'z')


def test_segment_size_option_parses_sizes_and_names_itself():
    opts = RunOptions(segment_size='64MB')
    opts.validate()
    assert opts.segment_size == 64 << 20 and opts.segments_for(200 << 20) == 4
    with pytest.raises(SelectionError, match=r"^--segment-size must be a size such as 1GB or 500MB "
                                             r"\(bytes if no unit\), got 'lots'$"):
        RunOptions(segment_size='lots').validate()
    with pytest.raises(SelectionError, match='^segment_size must be at least 1 byte, got 0$'):
        RunOptions(segment_size=0, option_style='module').validate()
