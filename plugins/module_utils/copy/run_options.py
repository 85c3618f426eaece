# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A copy run's options and its result, built the same way for both fronts: bin/migrate_tables
(cli.py) and the migrate_tables module. An option has one name on both (the module's; the CLI's
flag is the same with dashes), so the values come in as one mapping by that name."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from typing import Any, Dict, Mapping

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import SelectionError
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.runner import (
    RunOptions, RunReport)

# the options a front passes through to RunOptions unchanged
RUN_OPTION_NAMES = ('parallel', 'stop_on_error', 'retry_errors', 'start_date', 'end_date',
                    'table', 'source_schema', 'target_schema', 'ledger_schema', 'error_log',
                    'source_id', 'split_threshold', 'split_parts', 'segment_size',
                    'small_table_threshold', 'compare_all_rows')


def run_options(values: Mapping[str, Any], option_style: str) -> RunOptions:
    """RunOptions from a front's values (``option_style`` 'cli' or 'module': how errors name
    an option). An option the mapping lacks keeps its default."""
    options = RunOptions(option_style=option_style,
                         **{name: values[name] for name in RUN_OPTION_NAMES if name in values})
    if values.get('compare_all_rows') and not values.get('recopy_drifted'):
        raise SelectionError('%s applies to the catch-up: add %s, or drop it' % (
            options.label('compare_all_rows'), options.label('recopy_drifted')))
    return options


def empty_result() -> Dict[str, Any]:
    """The result of a run that copied nothing (nothing selected, or not run yet)."""
    return dict(selected=0, copied=0, already_copied=0, errored=0, stopped_early=False,
                elapsed_s=0.0, rows_copied=0, tables=[])


def run_result(report: RunReport) -> Dict[str, Any]:
    """The result of a finished run: counts by outcome, rows copied, one entry per table."""
    return dict(selected=report.selected, copied=report.count('copied'),
                already_copied=report.count('already_copied'), errored=report.failed,
                stopped_early=report.stopped_early, elapsed_s=round(report.elapsed_s, 3),
                rows_copied=sum(r.rows or 0 for r in report.results if r.status == 'copied'),
                tables=[r.as_dict() for r in report.results])
