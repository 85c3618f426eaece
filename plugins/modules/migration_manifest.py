#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: migration_manifest
short_description: Generate or extend the migration manifest from the source database
description:
  - Runbook migration step 3. Lists the tables of the SOURCE database (the module's connection
    options point at the source; nothing is written to any database) and writes one row per
    table to copy into the SQLite migration manifest, in the old tool's format.
  - Table families are described by the table plan (O(plan), by default the shipped ICDS plan).
    For each family, its parent comes first (no date, no target), then its children sorted by
    name. A child of a drop-child family targets its parent; a child of a keep-child family
    targets its own name, written out; a parent and a plain table target their own name
    (target NULL).
  - Compatibility with the old tool's manifest. The old generator wrote NULL ("same name")
    as the target of a keep-child child; this module writes the child's own name. The copy
    is the same, but the old tool's C(status list) shows the name in its Target Table column
    where it showed nothing.
  - A row's date is the smallest C(YYYY-MM-DD) in the table name, else the smallest date in its
    CHECK constraints, else the lower bound of its partition bound.
  - Unlike the old tool, the module may be re-run on an existing manifest (for example after
    new monthly tables appeared on the source) it adds rows only for source tables not yet in
    the manifest and never modifies existing rows.
  - In check mode nothing is written, not even a new manifest file; RV(added) shows what would
    be added.
version_added: 0.1.0
author:
  - icds.citus_migration maintainers (@icds)
extends_documentation_fragment:
  - icds.citus_migration.postgres
  - icds.citus_migration.table_plan
options:
  path:
    description:
      - Path of the SQLite migration manifest. Created (mode 0600) when missing; its directory
        must exist.
    type: path
    required: true
    aliases: [ db_path, manifest ]
  unclassified:
    description:
      - What to do with source tables no plan rule fits. V(error) fails listing them and writes
        nothing; V(warn) writes the other rows and warns.
    type: str
    default: error
    choices: [ error, warn ]
attributes:
  check_mode:
    description: Reports in RV(added) what would be added; writes nothing, not even a new file.
    support: full
  diff_mode:
    description: No diff is returned.
    support: none
notes:
  - The connection options (O(login_host), O(login_db), ...) are those of the SOURCE
    database, not of the Citus coordinator.
  - O(ucr_folder) only affects the validation warnings of this module.
seealso:
  - module: icds.citus_migration.migrate_tables
  - module: icds.citus_migration.migration_status
'''

EXAMPLES = r'''
- name: Generate the manifest for the ICDS reporting database
  icds.citus_migration.migration_manifest:
    login_host: pg0
    login_user: commcarehq
    login_db: commcarehq_icds_ucr
    path: /opt/migration/icds-ucr.db
    ucr_folder: /home/cchq/www/icds/current/custom/icds_reports/ucr/data_sources
  register: manifest

- name: Preview what a re-run after a new month would add
  icds.citus_migration.migration_manifest:
    login_host: pg0
    login_db: commcarehq_icds_ucr
    path: /opt/migration/icds-ucr.db
    unclassified: warn
  check_mode: true
'''

RETURN = r'''
added:
  description: The rows added (or, in check mode, that would be added), in manifest order.
  returned: always
  type: list
  elements: dict
  sample:
    - {source_table: child_health_monthly, date: null, target_table: null,
       family: child_health_monthly, kind: drop_child}
    - {source_table: child_health_monthly_2020-01-01, date: '2020-01-01',
       target_table: child_health_monthly, family: child_health_monthly, kind: drop_child}
added_count:
  description: Number of rows in RV(added).
  returned: always
  type: int
  sample: 2
total:
  description: Rows in the manifest after the run (in check mode, after a real run).
  returned: always
  type: int
  sample: 222
ignored:
  description: Source tables the plan ignores (never copied), children included.
  returned: always
  type: list
  elements: str
  sample: [django_migrations, ucr_enikshay_static-usage_989180d9]
unclassified:
  description: Source tables that fit no rule of the plan (not copied).
  returned: always
  type: list
  elements: str
  sample: [auth_user]
'''

from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.generator import (
    UNCLASSIFIED_CHOICES, manifest_row_count, plan_manifest, write_manifest,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import (
    connect, params_from_module_options,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_module import (
    fail_json_on_error, postgres_module,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_plan import load_plan


def main():
    module = postgres_module(dict(
        path=dict(type='path', required=True, aliases=['db_path', 'manifest']),
        unclassified=dict(type='str', default='error', choices=list(UNCLASSIFIED_CHOICES)),
    ), source=False, table_plan=True)
    p = module.params
    with fail_json_on_error(module):
        plan = load_plan(p['plan'], p['ucr_folder'])
        conn = connect(params_from_module_options(p), role='source database')
        try:
            manifest_plan = plan_manifest(conn, plan, p['schema'])
        finally:
            conn.close()
        added = write_manifest(p['path'], manifest_plan, check_mode=module.check_mode,
                               unclassified=p['unclassified'])
        total = manifest_row_count(p['path'])
        if module.check_mode:
            total += len(added)
    for warning in manifest_plan.warnings:
        module.warn(warning)
    if manifest_plan.unclassified:
        module.warn('%d source table(s) fit no rule of the plan and are not copied: %s'
                    % (len(manifest_plan.unclassified), ', '.join(manifest_plan.unclassified[:50])))
    module.exit_json(changed=bool(added), added=[row.as_dict() for row in added],
                     added_count=len(added), total=total, ignored=manifest_plan.ignored,
                     unclassified=manifest_plan.unclassified)


if __name__ == '__main__':
    main()
