#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: citus_bootstrap
short_description: Create the parent and plain tables on the Citus target and distribute them
description:
  - Runbook migration step 1. For every top-level table of the source that the table plan
    classifies as C(drop_child), C(keep_child) or C(plain) (not C(ignore)), creates the table on
    the target with the source definition (columns, types, defaults, identity and serial
    sequences, CHECK, primary key and unique constraints, indexes, partitioning clause).
  - Applies the plan's O(plan) primary keys (Citus needs unique keys to include the distribution
    column, ICDS used C(supervisor_id, doc_id)), then distributes each table as the plan says
    with C(create_distributed_table) (hash) or C(create_reference_table); keep-child parents stay
    local because Citus refuses inheritance with distributed tables.
  - Re-runnable. Existing tables are never altered and are reported in RV(existing); an existing
    local table the plan wants distributed is distributed; an existing table distributed
    differently from the plan is an error naming the table, the actual and the wanted
    distribution.
  - The shard count is not passed, so Citus uses C(citus.shard_count) as set on the coordinator.
  - Each table is created and distributed in its own transaction.
  - Foreign keys are not created (each one is reported as a warning).
version_added: 0.1.0
author:
  - ICDS Citus migration maintainers (@icds)
extends_documentation_fragment:
  - icds.citus_migration.postgres
  - icds.citus_migration.postgres.source
  - icds.citus_migration.table_plan
options:
  tables:
    description:
      - Only these top-level tables (each must be a parent or plain table of the plan that
        exists on the source). Default is every such table.
    type: list
    elements: str
  distribution:
    description:
      - V(auto) distributes when the target database has the citus extension; otherwise the
        tables are only created and RV(skipped_distribution) says why.
      - V(required) fails, creating nothing, when the target has no citus extension.
      - V(skip) only creates the tables.
    type: str
    choices: [ auto, required, skip ]
    default: auto
notes:
  - Check mode returns the exact statements that would run, and changes nothing.
  - A created table is the source's table, except for what RV(changes) lists (also in check
    mode; with C(--diff), per table, the source's definition and the target's). A primary_key
    of the plan that does not contain every column of the source's primary key is refused,
    naming the table and both keys (the target would lose a uniqueness the source guarantees).
  - The top-level connection options are the target (the Citus coordinator); O(source) is the
    source database.
'''

EXAMPLES = r'''
- name: Create and distribute the ICDS tables on the Citus coordinator
  icds.citus_migration.citus_bootstrap:
    login_host: citus0
    login_db: icds_ucr_citus
    login_user: commcarehq
    source:
      login_host: pg0
      login_db: commcarehq_icds_ucr
      login_user: commcarehq
    ucr_folder: /home/cchq/www/icds/current/custom/icds_reports/ucr/data_sources
    distribution: required
  register: bootstrap
'''

RETURN = r'''
created_tables:
  description: Tables created by this run (in check mode, the tables that would be created).
  returned: always
  type: list
  elements: str
  sample: ["agg_awc", "ucr_icds-cas_static-child_health_cases_a46c129f"]
distributed:
  description: Tables distributed by this run, with method (hash or reference) and column.
  returned: always
  type: dict
  sample: {"child_health_monthly": {"method": "hash", "column": "supervisor_id"},
           "awc_location": {"method": "reference", "column": null}}
existing:
  description: Tables of the plan that already existed on the target (left unchanged).
  returned: always
  type: list
  elements: str
existing_distribution:
  description: For existing tables, their distribution on the target before this run.
  returned: always
  type: dict
  sample: {"awc_location": "reference", "agg_awc": "local"}
skipped_distribution:
  description:
    - Set when tables were created but not distributed; null otherwise.
    - C(reason) says why, C(tables) maps each table to the distribution the plan wants.
  returned: always
  type: dict
  sample: {"reason": "the citus extension is not created in the target database",
           "tables": {"awc_location": "reference"}}
statements:
  description: The SQL statements run (in check mode, the statements that would run). No secrets.
  returned: always
  type: list
  elements: str
changes:
  description:
    - Every way a table created by this run (in check mode, that would be created) differs
      from its source table. Each item has C(table) and C(change), one of
      C(primary_key) (with C(action) C(added), C(extended) or C(reordered), C(before) and
      C(after) columns and the plan C(rule)), C(not_null) (C(column), made NOT NULL by the
      new key) or C(unique_dropped) (C(constraint), C(columns); a UNIQUE identical to the new
      primary key). Each change is also reported as a warning.
  returned: always
  type: list
  elements: dict
  sample: [{"table": "icds_dashboard_growth_monitoring_forms", "change": "primary_key",
            "action": "extended", "before": ["case_id"],
            "after": ["supervisor_id", "case_id", "month"],
            "rule": "rule #22 (name 'icds_dashboard_growth_monitoring_forms')"},
           {"table": "icds_dashboard_growth_monitoring_forms", "change": "not_null",
            "column": "supervisor_id", "reason": "column of the primary key"}]
unclassified:
  description: Top-level source tables no plan rule matches (not created).
  returned: always
  type: list
  elements: str
citus_version:
  description: Version of the citus extension in the target database, null when absent.
  returned: always
  type: str
'''

from ansible_collections.icds.citus_migration.plugins.module_utils.schema.bootstrap import (
    apply_bootstrap, changes_diff, describe_change, plan_bootstrap,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import (
    connection_pair, source_target_from_module_options,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_module import (
    exit_with_warnings, fail_json_on_error, postgres_module,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_plan import load_plan


def main():
    module = postgres_module(dict(
        tables=dict(type='list', elements='str'),
        distribution=dict(type='str', default='auto', choices=['auto', 'required', 'skip']),
    ), table_plan=True)
    p = module.params
    with fail_json_on_error(module):
        plan = load_plan(p['plan'], p['ucr_folder'])
        with connection_pair(*source_target_from_module_options(p)) as (src, tgt):
            bplan = plan_bootstrap(src, tgt, plan, tables=p['tables'],
                                   distribution=p['distribution'], schema=p['schema'])
            result = apply_bootstrap(tgt, bplan, check_mode=module.check_mode)
    values = result.as_dict()
    # (a folded UNIQUE is already among the engine's warnings)
    values['warnings'] = values['warnings'] + [
        "table '%s': %s" % (c['table'], describe_change(c)) for c in result.changes
        if c['change'] != 'unique_dropped']
    if module._diff and result.changes:
        values['diff'] = changes_diff(result.changes)
    exit_with_warnings(module, values)


if __name__ == '__main__':
    main()
