#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: compare_tables
short_description: Compare copied tables between the source and the target, and watch for new rows
description:
  - Validation after the copy (runbook migration step 4 and post-migration step 2). For each
    table of the migration manifest (or of O(tables)), counts the rows on the source and on
    the target and, with O(checksums), compares an order-independent checksum of the rows.
  - A table copied table-to-table (plain tables, keep-child parents and children) is compared
    with C(FROM ONLY) on both sides.
  - A drop-child child was copied into its parent, so on the target it is a slice of the
    parent; the slice is the target parent's rows matching the child's own CHECK constraints
    on the source (kind C(slice)). The drop-child parent's own rows are compared with the
    target parent's rows outside every child's slice.
  - When a family cannot be sliced (a child with no CHECK constraint of its own, or two
    children with the same CHECK), the parent and its children are summed on the source and
    compared once with the target parent's total (kind C(group)).
  - A missing table or a failing query is reported in the entry's C(error) and counts as
    drift; it does not stop the other comparisons.
  - With O(wait_for_new_rows), also polls until rows with a timestamp at or after a start
    time appear in both databases (after the mirrors were enabled), and fails when a table
    saw none on either side before the timeout.
  - With O(segments), compares each migrated manifest row key range by key range (per segment
    the row count and an order-independent hash, one grouped scan per side, both sides at the
    same time), narrows the differing segments down to the rows, and returns per table the
    segments compared, the ranges that differ and the rows to repair; with O(repair), replaces
    those rows on the target (as M(icds.citus_migration.migrate_tables) with C(recopy_drifted)).
  - Without O(repair), never writes anything; every query runs in a read-only transaction.
version_added: 0.1.0
author:
  - icds.citus_migration maintainers (@icds)
extends_documentation_fragment:
  - icds.citus_migration.postgres
  - icds.citus_migration.postgres.source
  - icds.citus_migration.postgres.schemas
options:
  path:
    description:
      - Path of the SQLite migration manifest. Its rows say which tables to compare and how
        (source table, target table).
      - Without it, O(tables) lists the tables to compare.
    type: path
    aliases: [ db_path, manifest ]
  tables:
    description:
      - With O(path), only compare these source tables of the manifest (names).
      - Without O(path), the tables to compare. Each entry is a name (same name on both
        sides) or a dict with keys C(source) and C(target). An entry whose target differs
        from its source is compared as a drop-child slice of the target table; the parent's
        own rows are then the target rows outside the slices of the children listed, so list
        every child of such a parent.
    type: list
    elements: raw
  checksums:
    description:
      - Also compare an order-independent checksum of the rows (over the columns the source
        and the target have in common). Reads every row once on each side.
      - Columns whose types differ between the sides (json and jsonb, numeric scales) may
        print differently and then make the checksums differ.
    type: bool
    default: false
  segments:
    description:
      - Compare the manifest's migrated rows segment by segment (key ranges of the primary key
        or of a NOT NULL unique key) down to the rows that differ, instead of one count (and
        checksum) per table. A table without such a key is compared as a whole (count and hash).
      - Needs O(path). Each entry of RV(tables) then has C(status) (equal, drifted, repaired,
        recopied, errored, skipped), C(key), C(segments), C(differing_segments),
        C(ranges_differing), C(ranges), C(rows_to_repair), C(rows_repaired), C(source_rows),
        C(target_rows).
    type: bool
    default: false
  repair:
    description:
      - With O(segments), replace the rows that differ on the target (only those rows; a table
        without a usable key is matched by row hash, or copied again whole on a Citus table), a batch of ranges per target transaction
        under a short C(SHARE ROW EXCLUSIVE) lock of the target table. Safe while the mirrors
        write (see docs/runbook.md). In check mode nothing is written.
    type: bool
    default: false
  compare_all_rows:
    description:
      - With O(segments), compare the values of every row (the default, a comparison that
        finds anything). V(false) compares the values of only the rows the source changed
        since their copy, and the keys of all (deleted rows), as the catch-up of
        M(icds.citus_migration.migrate_tables) O(icds.citus_migration.migrate_tables#module:recopy_drifted) does, about half the work; a
        row changed on the target alone is then not looked for. Tables whose copy did not record
        its source snapshot are compared row by row either way. A table compared by changes is
        one segment of buckets by key hash (its C(segments) is 1), not key ranges.
      - Each entry of RV(tables) says how in C(compared) (changes, rows, whole).
    type: bool
    default: true
  parallel:
    description: With O(segments), tables compared (and repaired) at once.
    type: int
    default: 1
  ledger_schema:
    description: With O(repair), schema of the copy ledger on the target (the repair log C(copy_repairs) lives there).
    type: str
    default: icds_citus_migration
  only_migrated:
    description:
      - With O(path), compare only the rows the manifest marks as migrated (the rest are not
        expected on the target yet).
    type: bool
    default: true
  fail_on_drift:
    description: Fail the task when any comparison does not match (or could not run).
    type: bool
    default: false
  rechecks:
    description:
      - How many more times a table that differs is compared again, O(recheck_interval) seconds
        apart, before it counts as drift (not with O(segments)).
      - With the mirrors on, the application writes each row to the source and then to the
        target, so a pair compared while it writes may differ for the moment between the two
        writes; a table that matches on any pass matches.
    type: int
    default: 0
  recheck_interval:
    description: Seconds between two comparisons of a table that differs (see O(rechecks)).
    type: float
    default: 2.0
  wait_for_new_rows:
    description:
      - Poll until rows with O(wait_for_new_rows.column) at or after
        O(wait_for_new_rows.since) exist in both databases, for every table listed.
      - The task fails when a table has none on either side when the timeout expires; the
        message names the tables and the sides that are missing.
    type: dict
    suboptions:
      tables:
        description:
          - Tables to watch, queried with their children (new rows land in child tables).
          - Each entry is a name (same on both sides) or a dict with keys C(source) and
            C(target).
        type: list
        elements: raw
        required: true
      column:
        description: Timestamp column that marks new rows, for example C(inserted_at).
        type: str
        required: true
      since:
        description: ISO timestamp; rows with the column at or after it count as new.
        type: str
        required: true
      timeout:
        description: Seconds to wait at most.
        type: int
        default: 300
      interval:
        description: Seconds between two polls.
        type: int
        default: 10
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads (unless O(repair)); check mode runs the same queries and returns the same results, and never repairs.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The top-level connection options are the target (the Citus coordinator); O(source) is the source.
  - Passwords are never logged; prefer a pgpass file.
  - On Citus, each query reads one table only (Citus refuses statements mixing local and
    distributed tables).
  - A source row whose slice predicate is NULL (for example a NULL C(month) in a child with
    C(CHECK (month = ...))) satisfies the CHECK but belongs to no slice on the target, so it shows
    as drift of that child and of the parent.
seealso:
  - module: icds.citus_migration.migrate_tables
  - module: icds.citus_migration.migration_status
'''

EXAMPLES = r'''
- name: Catch up with the source while the mirrors write (segment comparison, repair the rows that differ)
  icds.citus_migration.compare_tables:
    login_host: citus-coordinator
    login_db: icds_ucr
    source: {login_host: pg-icds, login_db: icds_ucr}
    path: /opt/migration/icds-ucr.db
    segments: true
    repair: true
    parallel: 4

- name: Compare every migrated table of the manifest, with checksums, fail on any drift
  icds.citus_migration.compare_tables:
    path: /opt/migration/icds-ucr.db
    checksums: true
    fail_on_drift: true
    login_host: citus0
    login_db: icds_ucr_citus
    login_user: commcarehq
    source:
      login_host: pg0
      login_db: commcarehq_icds_ucr
      login_user: commcarehq
  register: comparison

- name: Compare two tables without a manifest (a child copied into its parent)
  icds.citus_migration.compare_tables:
    tables:
      - icds_months
      - source: child_health_monthly_2020-01-01
        target: child_health_monthly
    source: "{{ icds_source_connection }}"

- name: After enabling the mirrors, check new rows arrive in both databases
  icds.citus_migration.compare_tables:
    source: "{{ icds_source_connection }}"
    wait_for_new_rows:
      tables:
        - ucr_icds-cas_static-child_health_cases_a46c129f
        - ucr_icds-cas_static-ls_vhnd_form_f2b97e26
      column: inserted_at
      since: "{{ mirrors_enabled_at }}"
      timeout: 1800
      interval: 60
'''

RETURN = r'''
tables:
  description: One entry per comparison.
  returned: always
  type: list
  elements: dict
  sample:
    - source_table: child_health_monthly_2020-01-01
      target_table: child_health_monthly
      kind: slice
      source_rows: 1200
      target_rows: 1200
      source_checksum: '-8398127309814011'
      target_checksum: '-8398127309814011'
      match: true
      predicate: "((month = '2020-01-01'::date))"
      error: null
      members: [child_health_monthly_2020-01-01]
      note: null
repaired:
  description: With O(segments) and O(repair), the source tables whose differing rows were replaced.
  returned: when segments is set
  type: list
  elements: str
  sample: [agg_awc_2020-02-01_1]
rows_repaired:
  description: With O(segments), rows deleted plus rows copied by the repairs.
  returned: when segments is set
  type: int
  sample: 42
rows_to_repair:
  description: With O(segments), rows that differ and were not repaired (without O(repair), or in check mode).
  returned: when segments is set
  type: int
  sample: 0
drift:
  description: Source tables (for a group, the target parent's name) that do not match or could not be compared.
  returned: always
  type: list
  elements: str
  sample: [agg_awc_2020-02-01_1]
matched_count:
  description: Number of comparisons that matched.
  returned: always
  type: int
  sample: 221
drift_count:
  description: Number of comparisons that did not match.
  returned: always
  type: int
  sample: 1
new_rows:
  description: Per watched table, what O(wait_for_new_rows) saw.
  returned: when O(wait_for_new_rows) is set
  type: list
  elements: dict
  sample:
    - source_table: ucr_icds-cas_static-child_health_cases_a46c129f
      target_table: ucr_icds-cas_static-child_health_cases_a46c129f
      seen_in_source: true
      seen_in_target: true
      source_rows: 12
      target_rows: 12
      source_first_row: '2024-05-01T10:00:03+00:00'
      target_first_row: '2024-05-01T10:00:03+00:00'
      source_seen_after_s: 0.1
      target_seen_after_s: 60.2
      timed_out: false
      error: null
      missing_on: []
'''

from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import (
    HAS_PSYCOPG2, connect, connection_pair, source_target_from_module_options)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_argspec import schemas_argument_spec
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_module import (
    fail_json_on_error, postgres_module)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import SelectionError
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import Manifest

if HAS_PSYCOPG2:
    from ansible_collections.icds.citus_migration.plugins.module_utils.validate import compare
    from ansible_collections.icds.citus_migration.plugins.module_utils.copy.recopy import RecopyRun
    from ansible_collections.icds.citus_migration.plugins.module_utils.copy.runner import RunOptions


def _selected_rows(p):
    """(rows to compare, rows expected on the target) from the manifest or O(tables)."""
    if not p['path']:
        rows = compare.rows_from_pairs(compare.table_pairs(p['tables'] or []))
        return rows, rows
    names = compare.table_pairs(p['tables'] or [])
    if any(s != t for s, t in names):
        raise SelectionError('with path, tables is a list of source table names')
    with Manifest.open(p['path'], readonly=True) as manifest:
        every = manifest.rows()
    expected = [r for r in every if r.migrated or not p['only_migrated']]
    if not names:
        return expected, expected
    known = {r.source_table for r in every}
    unknown = [s for s, _t in names if s not in known]
    if unknown:
        raise SelectionError('table(s) not in the manifest %s: %s' % (p['path'], ', '.join(unknown)))
    wanted = {s for s, _t in names}
    return [r for r in expected if r.source_table in wanted], expected


def _segments(module, source, target, result) -> list:
    """O(segments): the catch-up's comparison (and with O(repair), its repair) of the manifest's
    migrated rows; returns the results that still differ or failed."""
    p = module.params
    if not p['path']:
        raise SelectionError('segments needs the manifest (path): it compares manifest rows')
    options = RunOptions(parallel=p['parallel'], source_schema=p['source_schema'],
                         target_schema=p['target_schema'], ledger_schema=p['ledger_schema'],
                         error_log='', option_style='module', compare_all_rows=p['compare_all_rows'])
    writes = p['repair'] and not module.check_mode
    run = RecopyRun(p['path'], source, target, options, drifted=True)
    try:
        run.prepare(readonly=not writes)
        wanted = {s for s, _t in compare.table_pairs(p['tables'] or [])}
        if wanted:
            run.catchup_items = [i for i in run.catchup_items if i.recopy.row.source_table in wanted]
        results = run.catch_up(dry_run=not writes)
    finally:
        run.close()
    differing = [r for r in results if r.status in ('drifted', 'errored')]
    fixed = [r for r in results if r.status in ('repaired', 'recopied')]
    result.update(tables=[r.as_dict() for r in results],
                  drift=[r.source_table for r in differing + fixed],
                  matched_count=sum(1 for r in results if r.status in ('equal', 'skipped')),
                  drift_count=len(differing) + len(fixed),
                  repaired=[r.source_table for r in fixed],
                  rows_repaired=sum(r.rows_repaired for r in results),
                  rows_to_repair=sum(r.rows_to_repair for r in differing),
                  changed=bool(fixed) or (module.check_mode and p['repair'] and bool(differing)))
    return differing


def main():
    module = postgres_module(dict(
        path=dict(type='path', aliases=['db_path', 'manifest']),
        tables=dict(type='list', elements='raw'),
        checksums=dict(type='bool', default=False),
        segments=dict(type='bool', default=False),
        repair=dict(type='bool', default=False),
        compare_all_rows=dict(type='bool', default=True),
        parallel=dict(type='int', default=1),
        ledger_schema=dict(type='str', default='icds_citus_migration'),
        only_migrated=dict(type='bool', default=True),
        fail_on_drift=dict(type='bool', default=False),
        rechecks=dict(type='int', default=0),
        recheck_interval=dict(type='float', default=2.0),
        wait_for_new_rows=dict(type='dict', options=dict(
            tables=dict(type='list', elements='raw', required=True),
            column=dict(type='str', required=True),
            since=dict(type='str', required=True),
            timeout=dict(type='int', default=300),
            interval=dict(type='int', default=10),
        )),
        **schemas_argument_spec()
    ), required_one_of=[('path', 'tables', 'wait_for_new_rows')])
    p = module.params
    source, target = source_target_from_module_options(p)
    source = source.with_application_name('icds.citus_migration compare (source)')
    target = target.with_application_name('icds.citus_migration compare (target)')
    result = dict(changed=False, tables=[], drift=[], matched_count=0, drift_count=0)
    with fail_json_on_error(module, result, unexpected=True):
        comparisons = []
        if p['repair'] and not p['segments']:
            raise SelectionError('repair needs segments: true (only the segment comparison repairs)')
        if p['segments']:
            still = _segments(module, source, target, result)
            drifted = still
        elif p['path'] or p['tables']:
            rows, expected = _selected_rows(p)
            with connection_pair(source, target) as (src, tgt):
                comparisons = compare.compare_settled(
                    src, tgt, rows, rechecks=p['rechecks'], interval=p['recheck_interval'],
                    checksums=p['checksums'], schema_source=p['source_schema'],
                    schema_target=p['target_schema'], family_rows=expected)
        if not p['segments']:
            drifted = [c for c in comparisons if not c.match]
            result.update(tables=[c.as_dict() for c in comparisons],
                          drift=[c.source_table for c in drifted],
                          matched_count=len(comparisons) - len(drifted), drift_count=len(drifted))
        waiting = None
        if p['wait_for_new_rows']:
            w = p['wait_for_new_rows']
            new_rows = compare.wait_for_new_rows(
                lambda: connect(source, 'source'), lambda: connect(target, 'target'),
                w['tables'], w['column'], w['since'], w['timeout'], w['interval'],
                schema_source=p['source_schema'], schema_target=p['target_schema'])
            result['new_rows'] = [r.as_dict() for r in new_rows]
            waiting = compare.describe_waiting(new_rows)

    problems = []
    if p['fail_on_drift'] and drifted:
        shown = '; '.join(c.describe() if hasattr(c, 'describe') else '%s (%s)' % (
            c.source_table, c.error or '%d rows differ' % c.rows_to_repair) for c in drifted[:5])
        more = len(drifted) - 5
        problems.append('%d of %d tables drifted: %s%s' % (
            len(drifted), len(result['tables']), shown, ' (and %d more)' % more if more > 0 else ''))
    if waiting:
        problems.append('no new rows since %s within %ss in %s' % (
            p['wait_for_new_rows']['since'], p['wait_for_new_rows']['timeout'], waiting))
    if problems:
        module.fail_json(msg='. '.join(problems), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
