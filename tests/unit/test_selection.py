"""Row selection follows the old tool's rules (SPEC §3)."""

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import SelectionError
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import ManifestRow
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.selection import (
    parse_month_start, select_for_copy, select_for_status)


def _rows():
    data = [
        ('plain', None, False, False),
        ('jan', '2020-01-01', False, False),
        ('feb', '2020-02-01', False, False),
        ('mar', '2020-03-15', False, False),
        ('done', '2020-02-01', True, False),
        ('bad', '2020-02-01', False, True),
    ]
    return [ManifestRow(i + 1, n, d, None, m, e) for i, (n, d, m, e) in enumerate(data)]


def names(rows):
    return [r.source_table for r in rows]


@pytest.mark.parametrize('value,expected', [
    ('2020-02-17', '2020-02-01'), ('2020-02-01', '2020-02-01'), (None, None), ('', None)])
def test_dates_truncate_to_first_of_month(value, expected):
    assert parse_month_start(value, '--start-date') == expected


@pytest.mark.parametrize('value', ['2020-13-01', '2020-02-30', '20200201', 'feb', '2020-2-1'])
def test_invalid_dates_name_the_flag_and_value(value):
    with pytest.raises(SelectionError) as err:
        parse_month_start(value, '--end-date')
    assert "--end-date '%s'" % value in str(err.value)


def test_no_filters_takes_pending_rows_only():
    assert names(select_for_copy(_rows())) == ['plain', 'jan', 'feb', 'mar']


def test_retry_errors_adds_errored_rows():
    assert names(select_for_copy(_rows(), retry_errors=True)) == ['plain', 'jan', 'feb', 'mar', 'bad']


def test_both_dates_excludes_dateless():
    assert names(select_for_copy(_rows(), '2020-02-01', '2020-03-01')) == ['feb']


def test_start_only_keeps_dateless():
    assert names(select_for_copy(_rows(), start='2020-02-01')) == ['plain', 'feb', 'mar']


def test_end_only_excludes_dateless():
    assert names(select_for_copy(_rows(), end='2020-02-01')) == ['jan']


def test_start_not_before_end_is_an_error():
    with pytest.raises(SelectionError, match='is not before'):
        select_for_copy(_rows(), '2020-03-01', '2020-02-01')


def test_table_names_one_row():
    assert names(select_for_copy(_rows(), table='feb')) == ['feb']
    assert names(select_for_copy(_rows(), table='bad')) == ['bad']


def test_unknown_table_is_an_error():
    with pytest.raises(SelectionError, match="table 'nope' is not in the manifest"):
        select_for_copy(_rows(), table='nope')


def test_migrated_table_is_an_error():
    with pytest.raises(SelectionError, match="table 'done' is already migrated"):
        select_for_copy(_rows(), table='done')


def test_status_filters():
    assert names(select_for_status(_rows(), migrated=True)) == ['done']
    assert names(select_for_status(_rows(), errored=True)) == ['bad']
    assert names(select_for_status(_rows(), start='2020-02-01', end='2020-03-01')) == ['feb', 'done', 'bad']
