#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: migration_status
short_description: Report the progress recorded in a migration manifest
description:
  - Reads the SQLite migration manifest (old tool's or this collection's) and returns the
    totals (migrated, errored, running, pending) and, with O(list), one entry per table.
  - While a copy of the manifest runs on this host, RV(live) says what it is doing now (data
    done, the recent rate, the ETA, the tables in flight).
  - The manifest is opened read-only; only O(report_path) writes a file.
version_added: 0.1.0
author: icds.citus_migration maintainers (@icds)
options:
  path:
    description: Path of the SQLite migration manifest.
    type: path
    required: true
    aliases: [ db_path, manifest ]
  start_date:
    description: Only rows in the date window starting at this date (C(YYYY-MM-DD), first of the month).
    type: str
  end_date:
    description: Only rows dated before this date (C(YYYY-MM-DD), first of the month).
    type: str
  migrated:
    description: Only migrated tables.
    type: bool
    default: false
  errored:
    description: Only errored tables.
    type: bool
    default: false
  list:
    description: Also return one entry per table in RV(tables).
    type: bool
    default: false
  months:
    description: Also return the totals per month in RV(months).
    type: bool
    default: false
  errors:
    description: Also return each errored table with its SQLSTATE and message in RV(errors).
    type: bool
    default: false
  error_log:
    description: The JSON-lines error log read for RV(errors) and the report (default C(<path>.errors.jsonl)).
    type: path
  report_path:
    description:
      - Write a self-contained HTML report of the copy to this file (summary, a chart of data
        copied against time, a chart of throughput per table size, the slowest tables, the
        errors, the months). Needs the Python package matplotlib on the host.
    type: path
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
seealso:
  - module: icds.citus_migration.migrate_tables
'''

EXAMPLES = r'''
- name: Show progress of the copy
  icds.citus_migration.migration_status:
    path: /opt/migration/icds-ucr.db
  register: status

- name: List the tables that failed
  icds.citus_migration.migration_status:
    path: /opt/migration/icds-ucr.db
    errored: true
    list: true

- name: Write the HTML report beside the manifest
  icds.citus_migration.migration_status:
    path: /opt/migration/icds-ucr.db
    report_path: /opt/migration/icds-ucr.report.html
'''

RETURN = r'''
stats:
  description: Totals over the selected rows.
  returned: always
  type: dict
  sample:
    total: 222
    migrated: 100
    migrated_pct: 45.0
    errored: 2
    errored_pct: 0.9
    running: 4
    pending: 116
    rows_copied: 1300000
    bytes_copied: 530000000
summary:
  description: The stats in the old tool's text layout.
  returned: always
  type: str
  sample: "Total: 222\nMigrated: 100 (45.0%)\nErrored: 2 (0.9%)"
live:
  description:
    - What a copy of this manifest running now on this host is doing (null when none runs);
      the same as C(migrate_tables status --json) gives under C(live).
  returned: always
  type: dict
  sample:
    fraction: 0.72
    rate_bytes_per_s: 12582912.0
    eta_s: 4.2
    tables: {total: 222, copied: 180, already_copied: 5, errored: 3, in_flight: 2, left: 34}
    bytes: {total_estimate: 1073741824, copied_estimate: 773094113}
    workers:
      - {worker: 1, source_table: child_health_monthly_2020-01-01, bytes_sent: 325058560,
         estimate_bytes: 723517440, fraction: 0.45, elapsed_s: 83.0}
    last_error: null
months:
  description: Totals per month (only with O(months)); tables without a date under C((no date)).
  returned: when O(months=true)
  type: list
  elements: dict
  sample:
    - {month: '2020-01', tables: 40, migrated: 38, running: 1, errored: 1, left: 1,
       rows_copied: 120000, bytes_copied: 52000000}
errors:
  description: The errored tables with SQLSTATE and message from the error log (only with O(errors)).
  returned: when O(errors=true)
  type: list
  elements: dict
  sample:
    - {source_table: agg_awc_2020-03-01_1, date: '2020-03-01', sqlstate: '22001', attempts: 1,
       message: 'value too long for type character varying(3)', failed_at: '2020-05-01T10:00:00.000000Z'}
report:
  description: The absolute path of the HTML report written (only with O(report_path)).
  returned: when O(report_path) is set
  type: str
  sample: /opt/migration/icds-ucr.report.html
tables:
  description: One entry per selected table (only with O(list)).
  returned: when O(list=true)
  type: list
  elements: dict
  sample:
    - id: 1
      source_table: agg_awc
      date: null
      target_table: agg_awc
      migrated: true
      errored: false
      state: migrated
      rows_copied: 1000
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import Manifest
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.selection import (
    parse_month_start, select_for_status)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest import status as status_report
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.error_report import (
    errored_tables, read_error_log)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.live_file import current_run
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.months import month_totals
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.report_html import write_report
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.error_log import default_error_log


def main():
    module = AnsibleModule(argument_spec=dict(
        path=dict(type='path', required=True, aliases=['db_path', 'manifest']),
        start_date=dict(type='str'),
        end_date=dict(type='str'),
        migrated=dict(type='bool', default=False),
        errored=dict(type='bool', default=False),
        list=dict(type='bool', default=False),
        months=dict(type='bool', default=False),
        errors=dict(type='bool', default=False),
        error_log=dict(type='path'),
        report_path=dict(type='path'),
    ), supports_check_mode=True)
    p = module.params
    try:
        start = parse_month_start(p['start_date'], 'start_date')
        end = parse_month_start(p['end_date'], 'end_date')
        with Manifest.open(p['path'], readonly=True) as manifest:
            rows = select_for_status(manifest.rows(), start, end, p['migrated'], p['errored'])
    except MigrationError as exc:
        module.fail_json(msg=str(exc))
    live = current_run(p['path'])
    stats = status_report.stats(rows)
    result = dict(changed=False, stats=stats, summary=status_report.format_stats(stats, live),
                  live=live)
    if p['list']:
        result['tables'] = status_report.list_json(rows, None, live)
    if p['months']:
        result['months'] = month_totals(rows)
    log = None
    if p['errors'] or p['report_path']:
        log = read_error_log(p['error_log'] or default_error_log(p['path']))
    if p['errors']:
        result['errors'] = errored_tables(rows, log)
    if p['report_path']:
        result['changed'] = True
        result['report'] = p['report_path']
        if not module.check_mode:
            try:
                result['report'] = write_report(p['report_path'], p['path'], rows, log)
            except MigrationError as exc:
                module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
