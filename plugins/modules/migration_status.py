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
  - Never changes anything; the manifest is opened read-only.
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


def main():
    module = AnsibleModule(argument_spec=dict(
        path=dict(type='path', required=True, aliases=['db_path', 'manifest']),
        start_date=dict(type='str'),
        end_date=dict(type='str'),
        migrated=dict(type='bool', default=False),
        errored=dict(type='bool', default=False),
        list=dict(type='bool', default=False),
    ), supports_check_mode=True)
    p = module.params
    try:
        start = parse_month_start(p['start_date'], 'start_date')
        end = parse_month_start(p['end_date'], 'end_date')
        with Manifest.open(p['path'], readonly=True) as manifest:
            rows = select_for_status(manifest.rows(), start, end, p['migrated'], p['errored'])
    except MigrationError as exc:
        module.fail_json(msg=str(exc))
    stats = status_report.stats(rows)
    result = dict(changed=False, stats=stats, summary=status_report.format_stats(stats))
    if p['list']:
        result['tables'] = [r.as_dict() for r in rows]
    module.exit_json(**result)


if __name__ == '__main__':
    main()
