#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: citus_child_tables
short_description: Create on the target the child tables of the parents that keep their children
description:
  - Runbook migration step 2. For every keep-child parent of the table plan (for example
    C(agg_awc)), creates on the target each child table that exists on the source and not on
    the target, with the child's own CHECK constraints, defaults and indexes. Inheritance
    children are created with C(INHERITS (parent)); partitions of a declaratively partitioned
    parent with C(PARTITION OF parent FOR VALUES ...) and the same bounds.
  - Also creates the partitions of declaratively partitioned drop-child parents, so that rows
    copied into the parent have a partition to land in (Citus distributes them with the parent).
  - Re-runnable, only adds what is missing; nothing is executed when nothing is missing.
  - The parents must exist on the target (run M(icds.citus_migration.citus_bootstrap) first);
    keep-child parents must be local tables (Citus refuses inheritance on distributed tables).
  - Children are created in batches of O(batch_size) statements, one transaction per batch.
version_added: 0.1.0
author:
  - ICDS Citus migration maintainers (@icds)
extends_documentation_fragment:
  - icds.citus_migration.postgres
  - icds.citus_migration.postgres.source
  - icds.citus_migration.table_plan
options:
  parents:
    description:
      - Only the children of these parents. Each must be a keep-child parent (or a
        partitioned drop-child parent) of the plan. Default is every such parent.
    type: list
    elements: str
  batch_size:
    description: About how many DDL statements run in one transaction (one round trip).
    type: int
    default: 500
notes:
  - Check mode returns the exact statements that would run, and changes nothing. In check mode
    a parent that does not exist on the target yet (a dry run of the whole runbook, where
    M(icds.citus_migration.citus_bootstrap) only reported it) is a warning, not an error, and
    its children are planned as if it existed.
  - The top-level connection options are the target (the Citus coordinator); O(source) is the
    source database.
'''

EXAMPLES = r'''
- name: Create the missing monthly children of the aggregate tables on the coordinator
  icds.citus_migration.citus_child_tables:
    login_host: citus0
    login_db: icds_ucr_citus
    login_user: commcarehq
    source:
      login_host: pg0
      login_db: commcarehq_icds_ucr
      login_user: commcarehq
    parents: [agg_awc, agg_child_health]
  register: children
'''

RETURN = r'''
parents:
  description: The parents whose children were considered.
  returned: always
  type: list
  elements: str
  sample: ["agg_awc", "agg_child_health"]
created:
  description: Children created (in check mode, the children that would be created).
  returned: always
  type: list
  elements: str
  sample: ["agg_awc_2020-01-01_1", "agg_awc_2020-01-01_2"]
existing_count:
  description: Children of these parents that already existed on the target.
  returned: always
  type: int
statements:
  description:
    - The SQL statements run (in check mode, that would run), at most the first 1000.
  returned: always
  type: list
  elements: str
statement_count:
  description: Number of statements run (or that would run), also when RV(statements) is cut.
  returned: always
  type: int
statements_truncated:
  description: True when RV(statements) holds only the first 1000 statements.
  returned: always
  type: bool
batches:
  description: Transactions run (0 in check mode).
  returned: always
  type: int
'''

from ansible_collections.icds.citus_migration.plugins.module_utils.schema.child_tables import (
    DEFAULT_BATCH_SIZE, apply_children, plan_children,
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
        parents=dict(type='list', elements='str'),
        batch_size=dict(type='int', default=DEFAULT_BATCH_SIZE),
    ), table_plan=True)
    p = module.params
    with fail_json_on_error(module):
        plan = load_plan(p['plan'], p['ucr_folder'])
        with connection_pair(*source_target_from_module_options(p)) as (src, tgt):
            cplan = plan_children(src, tgt, plan, parents=p['parents'], schema=p['schema'],
                                  allow_missing_parents=module.check_mode)
            result = apply_children(tgt, cplan, batch_size=p['batch_size'],
                                    check_mode=module.check_mode)
    exit_with_warnings(module, result.as_dict())


if __name__ == '__main__':
    main()
