#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: sync_sequences
short_description: Move the target's sequences at least as far as the source's after the copy
description:
  - COPY writes the ids of serial and identity columns without advancing the target's
    sequences, and the source keeps handing out ids until the cutover. Unless the target's
    sequences are moved on, the first insert into the target after the cutover reuses an id
    that was copied and fails with a duplicate key.
  - For every sequence owned by a column of a source table (serial or identity), finds the
    sequence owned by the same table and column on the target and, when it is behind (lower
    for an ascending sequence, higher for a descending one, or never used), sets it to the
    source's last value. A target sequence is never moved backwards, also when it passed the
    source's value between the check and the change.
  - Run it after the copy and again right before the cutover; re-running changes nothing
    when the sequences are in step.
version_added: 0.1.0
author:
  - ICDS Citus migration maintainers (@icds)
extends_documentation_fragment:
  - icds.citus_migration.postgres
  - icds.citus_migration.postgres.source
options:
  tables:
    description: Only the sequences owned by these tables. Default is every table of O(schema).
    type: list
    elements: str
  schema:
    description: Schema of the tables, on the source and on the target.
    type: str
    default: public
notes:
  - Check mode reports the sequences that would move, and changes nothing.
  - The top-level connection options are the target (the Citus coordinator); O(source) is the
    source database.
  - Needs C(SELECT) on the source sequences (or ownership) to read their values, and
    C(UPDATE) on the target sequences.
'''

EXAMPLES = r'''
- name: Move the target's sequences past the source's
  icds.citus_migration.sync_sequences:
    login_host: citus0
    login_db: icds_ucr_citus
    login_user: commcarehq
    source:
      login_host: pg0
      login_db: commcarehq_icds_ucr
      login_user: commcarehq
  register: sequences
'''

RETURN = r'''
changed_sequences:
  description: The target sequences moved (in check mode, that would be moved).
  returned: always
  type: list
  elements: dict
  sample:
    - table: django_migrations
      column: id
      sequence: django_migrations_id_seq
      source_last_value: 412
      target_last_value: 398
      set_to: 412
in_step:
  description: C(table.column) of the sequences already at or past the source's value.
  returned: always
  type: list
  elements: str
missing_on_target:
  description:
    - C(table.column) of source sequences whose table is on the target without an owned
      sequence for that column (left alone; worth a look).
  returned: always
  type: list
  elements: str
not_on_target:
  description: C(table.column) of source sequences whose table is not on the target (not migrated).
  returned: always
  type: list
  elements: str
unused_on_source:
  description: C(table.column) of source sequences never used (or not readable), left alone.
  returned: always
  type: list
  elements: str
'''

from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import (
    connection_pair, source_target_from_module_options,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_module import (
    fail_json_on_error, postgres_module,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.sequences import (
    apply_sequence_sync, plan_sequence_sync, read_owned_sequences, read_table_names,
)


def main():
    module = postgres_module(dict(
        tables=dict(type='list', elements='str'),
        schema=dict(type='str', default='public'),
    ))
    p = module.params
    result = dict(changed=False, changed_sequences=[], in_step=[], missing_on_target=[],
                  unused_on_source=[], not_on_target=[])
    with fail_json_on_error(module, result, unexpected=True):
        with connection_pair(*source_target_from_module_options(p)) as (src, tgt):
            plan = plan_sequence_sync(read_owned_sequences(src, p['schema'], p['tables']),
                                      read_owned_sequences(tgt, p['schema'], p['tables']),
                                      read_table_names(tgt, p['schema']))
            moved = plan.changes
            if plan.changes and not module.check_mode:
                moved = apply_sequence_sync(tgt, plan.changes, p['schema'])
        result.update(changed=bool(moved), changed_sequences=[c.as_dict() for c in moved],
                      in_step=plan.in_step, missing_on_target=plan.missing_on_target,
                      unused_on_source=plan.unused_on_source,
                      not_on_target=plan.not_on_target)
        if moved:
            result['diff'] = dict(
                before=''.join('%s: %s\n' % (c.sequence, c.target_last_value) for c in moved),
                after=''.join('%s: %s\n' % (c.sequence, c.set_to) for c in moved))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
