#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: migrate_tables
short_description: Copy the tables of a migration manifest to the target, exactly once
description:
  - Runbook migration step 4. Copies every selected row of the SQLite migration manifest from
    the source PostgreSQL database to the target (a Citus coordinator or plain PostgreSQL),
    streaming C(COPY ... TO STDOUT) on the source into C(COPY ... FROM STDIN) on the target over
    two connections, with no shell, no temporary file and no rewriting of the data.
  - Each table is copied in one target transaction that also writes a row in a ledger table on
    the target (schema O(ledger_schema)); the ledger, not the manifest, decides whether a table
    was copied, so a crash or a second runner never copies a table twice. A per-table advisory
    lock keeps concurrent runners off the same table.
  - Selection follows the old C(migrate_tables.py) tool. Rows not migrated, and not errored
    unless O(retry_errors). With both dates C(start <= date < end) (dateless rows excluded);
    with O(start_date) only, dateless rows or C(date >= start); with O(end_date) only,
    C(date < end).
  - Every selected table is checked before anything is copied (the target table exists and has
    every source column). With O(stop_on_error), a problem fails the task and nothing is copied.
  - A source table larger than O(split_threshold) on disk is copied in segments of about
    O(segment_size) bytes (O(split_parts) forces their number), spread over the parallel copies
    like separate tables. A table with a primary key (or a unique index on NOT NULL columns) led
    by an integer, numeric, text, uuid, date or timestamp column is cut into ranges of that
    column, bounds from a sample of the source; an UPDATE never moves a row out of its range, so
    the copy is exact on a source that is written to. A table without one is cut into ctid block
    ranges, all read under one source snapshot that the runner exports and keeps while the
    table's parts run; if that snapshot is gone (the runner died) before every part is copied,
    the next run removes the table's copied rows and starts it again under a new snapshot.
  - The split plan is stored on the target (table C(copy_split_plan) in O(ledger_schema)) before
    the first segment is copied; every later run and every other runner reuses it, and each
    segment has its own target transaction and ledger row, so each is copied exactly once. The
    first and last ranges are open-ended, so rows added after planning are copied too. The
    manifest row is migrated when every segment is copied, errored when one failed (a re-run
    copies only the missing segments).
  - The manifest file is updated with the outcome of each table. Failures are also appended as
    JSON lines to O(error_log).
  - For long runs, use C(async) and poll M(icds.citus_migration.migration_status) to show
    progress.
version_added: 0.1.0
author: icds.citus_migration maintainers (@icds)
extends_documentation_fragment:
  - icds.citus_migration.postgres
  - icds.citus_migration.postgres.source
  - icds.citus_migration.postgres.schemas
options:
  path:
    description:
      - Path of the SQLite migration manifest, on the host that runs the copy.
      - While the copy runs, C(<path>.live.json) beside it says what it does now (data done,
        rate, ETA, tables in flight); M(icds.citus_migration.wait_for_copy) and
        M(icds.citus_migration.migration_status) read it.
    type: path
    required: true
    aliases: [ db_path, manifest ]
  parallel:
    description: Number of tables (or parts of split tables) copied at once. From 1 to 64.
    type: int
    default: 1
  split_threshold:
    description:
      - Source tables larger than this on disk are copied in parts (see the description).
      - A size such as V(1GB) or V(500MB) (1024-based), or a number of bytes.
    type: str
    default: 1GB
  segment_size:
    description:
      - About how much of a split table one segment holds (the unit of copy, commit and resume).
      - A size such as V(256MB) (1024-based), or a number of bytes.
    type: str
    default: 256MB
  split_parts:
    description:
      - Number of segments a split table is copied in, whatever its size. Defaults to one per
        O(segment_size). From 1 to 1024.
    type: int
  small_table_threshold:
    description:
      - Citus target only. A source table smaller than this on disk is written through one
        connection per worker instead of one per shard (C(citus.max_adaptive_executor_pool_size)
        is 1 for its transaction). Citus opens and closes a connection per shard for every
        COPY, which costs a small table more than the parallel write gains. Re-copies
        (O(recopy), O(recopy_drifted)) follow the same rule.
      - A size such as V(64MB) (1024-based), or a number of bytes; V(0) turns it off.
    type: str
    default: 64MB
  stop_on_error:
    description:
      - Stop starting new tables after the first failure (tables in flight finish).
      - V(false) copies every other table and records the failures.
    type: bool
    default: true
  retry_errors:
    description: Also copy rows that failed before.
    type: bool
    default: false
  start_date:
    description: Only rows dated on or after this date (C(YYYY-MM-DD), truncated to the first of the month).
    type: str
  end_date:
    description: Only rows dated before this date (C(YYYY-MM-DD), truncated to the first of the month).
    type: str
  table:
    description: Copy only this source table. Fails if it is not in the manifest or is already migrated.
    type: str
  ledger_schema:
    description: Schema of the exactly-once ledger table C(copy_ledger) on the target. Created if missing.
    type: str
    default: icds_citus_migration
  error_log:
    description: JSON-lines file failures are appended to. Defaults to the manifest path plus C(.errors.jsonl).
    type: path
  source_id:
    description:
      - Name of the source database in the ledger. Defaults to the source database name and its
        cluster system identifier (when the role may read it).
      - Set it when the same source is reached under different names.
    type: str
  recopy:
    description:
      - Drift catch-up. Copy these migrated source tables again, replacing their rows on the
        target in one target transaction each (delete, copy, ledger row); a failure leaves the
        old rows. A same-named table is emptied (C(DELETE FROM ONLY)); a drop-child child's
        slice of its parent is the rows matching the child's own CHECK constraints on the
        source, as M(icds.citus_migration.compare_tables) slices it.
      - The usual selection (O(table), O(start_date), O(end_date)) does not apply.
    type: list
    elements: str
  recopy_drifted:
    description:
      - Drift catch-up in proportion to the change. Compare every (other) migrated table segment
        by segment (key ranges of its primary key or a NOT NULL unique key; per segment the row
        count and an order-independent hash, one grouped scan per side, source and target at
        the same time), narrow the differing segments down to the rows and replace only those
        rows on the target, a batch of ranges per target transaction that holds a short
        C(SHARE ROW EXCLUSIVE) lock on the target table (see docs/runbook.md for the guarantee
        beside mirrored writes). A table without a usable key is compared as a whole and, only
        when it differs, repaired row by row (matched by row hash; a plain target table) or
        copied again, as O(recopy) (a Citus distributed or reference table, or a big one).
      - Only the values of the rows changed on the source since their copy are compared (the
        copy records the xmin of the source snapshot it read; an older row is in the copy as it
        is), the keys of every row (so deleted rows are found); a row changed on the target
        alone is left to validation, or to O(compare_all_rows).
      - O(parallel) tables are compared and repaired at once.
      - In check mode the drift is compared and returned, nothing is written.
    type: bool
    default: false
  compare_all_rows:
    description:
      - With O(recopy_drifted), compare the values of every row, not only of the rows changed
        on the source since their copy. Slower (every row is hashed on both sides); it also finds
        rows changed on the target alone, as validation does.
      - Tables copied by an earlier version of this collection (no copy snapshot in the ledger)
        are always compared this way.
    type: bool
    default: false
  fail_on_error:
    description: Fail the task when any table failed. With V(false) the failures are only returned.
    type: bool
    default: true
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Returns the tables that would be copied and the statements; writes nothing, not even the ledger.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
notes:
  - The top-level connection options are the target (the Citus coordinator); O(source) is the source.
  - Passwords are never logged; prefer a pgpass file on the host that runs the copy.
seealso:
  - module: icds.citus_migration.migration_status
  - module: icds.citus_migration.migration_manifest
'''

EXAMPLES = r'''
- name: Copy every table of the manifest, four at a time
  icds.citus_migration.migrate_tables:
    path: /opt/migration/icds-ucr.db
    parallel: 4
    login_host: citus0
    login_db: icds_ucr_citus
    login_user: commcarehq
    source:
      login_host: pg0
      login_db: commcarehq_icds_ucr
      login_user: commcarehq
  async: 86400
  poll: 0
  register: copy_job

- name: Copy one month only, keep going after failures
  icds.citus_migration.migrate_tables:
    path: /opt/migration/icds-ucr.db
    start_date: '2020-03-01'
    end_date: '2020-04-01'
    stop_on_error: false
    source: "{{ icds_source_connection }}"

- name: Copy again the tables written to on the source after their copy
  icds.citus_migration.migrate_tables:
    path: /opt/migration/icds-ucr.db
    recopy_drifted: true
    source: "{{ icds_source_connection }}"

- name: Dry run
  icds.citus_migration.migrate_tables:
    path: /opt/migration/icds-ucr.db
    source: "{{ icds_source_connection }}"
  check_mode: true
  register: would_copy
'''

RETURN = r'''
selected:
  description: Number of manifest rows selected.
  returned: always
  type: int
  sample: 222
copied:
  description: Tables copied by this run (with O(recopy) / O(recopy_drifted), the same as RV(recopied)).
  returned: always
  type: int
  sample: 220
recopied:
  description: Tables re-copied whole (O(recopy), and drifted tables without a usable key that cannot be repaired row by row), as the CLI's C(recopied).
  returned: when recopy or recopy_drifted is set
  type: int
  sample: 1
repaired:
  description: Drifted tables whose differing rows were replaced (in check mode, would be).
  returned: when recopy or recopy_drifted is set
  type: int
  sample: 127
rows_repaired:
  description: Rows deleted plus rows copied by the repairs (in check mode, rows that differ).
  returned: when recopy or recopy_drifted is set
  type: int
  sample: 3649
already_copied:
  description:
    - Tables the target ledger shows as copied earlier (for example by a run that crashed before
      updating the manifest); marked migrated without copying.
  returned: always
  type: int
  sample: 2
errored:
  description: Tables that failed.
  returned: always
  type: int
  sample: 0
stopped_early:
  description: Whether the run stopped starting tables after a failure.
  returned: always
  type: bool
  sample: false
elapsed_s:
  description: Seconds the run took.
  returned: always
  type: float
  sample: 73.2
rows_copied:
  description: Rows copied by this run.
  returned: always
  type: int
  sample: 2800000
tables:
  description:
    - One entry per table handled (in check mode, per table that would be copied).
    - With O(recopy) in check mode, each named table's entry has the C(delete),
      C(copy_out) and C(copy_in) statements of its one transaction.
    - With O(recopy_drifted), each compared table's entry has C(status) (equal, drifted in check
      mode, repaired, recopied, errored, skipped), C(key), C(segments), C(differing_segments),
      C(ranges_differing), C(ranges), C(rows_to_repair), C(rows_deleted), C(rows_copied),
      C(rows_repaired), C(transactions), C(source_rows), C(target_rows), C(seconds).
  returned: always
  type: list
  elements: dict
  sample:
    - id: 3
      source_table: child_health_monthly_2020-01-01
      target_table: child_health_monthly
      status: copied
      rows: 1200
      bytes: 230400
      duration_s: 0.4
      binary: true
      error: null
      sqlstate: null
      parts: null
      split: null
'''

from ansible_collections.icds.citus_migration.plugins.module_utils.common import defaults
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import (
    HAS_PSYCOPG2, source_target_from_module_options)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_argspec import schemas_argument_spec
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_module import (
    fail_json_on_error, postgres_module)

if HAS_PSYCOPG2:
    from ansible_collections.icds.citus_migration.plugins.module_utils.copy.runner import MigrationRun
    from ansible_collections.icds.citus_migration.plugins.module_utils.copy.run_options import (
        empty_result, run_options, run_result)
    from ansible_collections.icds.citus_migration.plugins.module_utils.copy.recopy import RecopyRun
    from ansible_collections.icds.citus_migration.plugins.module_utils.copy.live_state import LiveState
    from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.live_file import live_path

LIVE_INTERVAL_S = 2.0


def recopy(module, run) -> None:
    """O(recopy) / O(recopy_drifted): named tables re-copied whole, every other migrated table
    compared by segments and its differing rows repaired (check mode: compared only)."""
    p = module.params
    result = dict(changed=False, recopied=0, repaired=0, rows_repaired=0, **empty_result())
    try:
        with fail_json_on_error(module, result, unexpected=True):
            items = run.prepare(readonly=module.check_mode)
            result['selected'] = len(items) + len(run.catchup_items)
            if module.check_mode:
                plan = run.dry_run()
                drift = run.catch_up(dry_run=True)
                result['tables'] = plan + [r.as_dict() for r in drift]
                result['recopied'] = sum(1 for i in plan if 'error' not in i)
                result['repaired'] = sum(1 for r in drift if r.status == 'drifted')
                result['rows_repaired'] = sum(r.rows_to_repair for r in drift)
                result['copied'] = result['recopied']
                result['changed'] = bool(result['recopied'] or result['repaired'])
                problems = [i['error'] for i in plan if 'error' in i] + [
                    '%s: %s' % (r.source_table, r.error) for r in drift if r.status == 'errored']
                if problems and p['fail_on_error']:
                    module.fail_json(msg='%d tables cannot be compared or re-copied: %s' % (
                        len(problems), '; '.join(problems[:5])), **result)
                module.exit_json(**result)
            report = run.run() if items else None
            if not (report and report.failed and p['stop_on_error']):
                run.catch_up()
    finally:
        run.close()
    named = report.results if report else []
    caught = run.catchup_results
    result.update(
        recopied=sum(1 for r in named if r.status == 'copied') + sum(1 for r in caught if r.status == 'recopied'),
        repaired=sum(1 for r in caught if r.status == 'repaired'),
        rows_repaired=sum(r.rows_repaired for r in caught),
        errored=sum(1 for r in named if r.status == 'errored') + sum(1 for r in caught if r.status == 'errored'),
        stopped_early=bool(report and report.stopped_early),
        elapsed_s=round((report.elapsed_s if report else 0.0) + sum(r.seconds for r in caught), 3),
        rows_copied=sum(r.rows or 0 for r in named if r.status == 'copied') + sum(r.rows_copied for r in caught),
        tables=[r.as_dict() for r in named] + [r.as_dict() for r in caught])
    result['copied'] = result['recopied']
    result['changed'] = bool(result['recopied'] or result['repaired'])
    for warning in run.catchup_warnings:
        module.warn(warning)
    if result['errored'] and p['fail_on_error']:
        failed = [r for r in named + caught if r.status == 'errored']
        module.fail_json(msg='%d of %d tables failed: %s' % (
            len(failed), result['selected'],
            '; '.join('%s: %s' % (r.source_table, r.error) for r in failed[:5])), **result)
    module.exit_json(**result)


def main():
    module = postgres_module(dict(
        path=dict(type='path', required=True, aliases=['db_path', 'manifest']),
        parallel=dict(type='int', default=defaults.PARALLEL),
        split_threshold=dict(type='str', default=defaults.SPLIT_THRESHOLD),
        split_parts=dict(type='int'),
        segment_size=dict(type='str', default=defaults.SEGMENT_SIZE),
        small_table_threshold=dict(type='str', default=defaults.SMALL_TABLE_THRESHOLD),
        stop_on_error=dict(type='bool', default=True),
        retry_errors=dict(type='bool', default=False),
        start_date=dict(type='str'),
        end_date=dict(type='str'),
        table=dict(type='str'),
        ledger_schema=dict(type='str', default=defaults.LEDGER_SCHEMA),
        error_log=dict(type='path'),
        source_id=dict(type='str'),
        recopy=dict(type='list', elements='str'),
        recopy_drifted=dict(type='bool', default=False),
        compare_all_rows=dict(type='bool', default=False),
        fail_on_error=dict(type='bool', default=True),
        **schemas_argument_spec()
    ))
    p = module.params
    with fail_json_on_error(module, dict(changed=False)):
        options = run_options(p, 'module')
    source, target = source_target_from_module_options(p)
    if p['recopy'] or p['recopy_drifted']:
        recopy(module, RecopyRun(p['path'], source, target, options, p['recopy'] or [],
                                 p['recopy_drifted']))
    # <path>.live.json: what the run does now, for wait_for_copy and migration_status
    events = None if module.check_mode else LiveState(snapshot_file=live_path(p['path']),
                                                      snapshot_interval=LIVE_INTERVAL_S,
                                                      parallel=p['parallel'])
    run = MigrationRun(p['path'], source, target, options, events)
    result = dict(changed=False, **empty_result())
    try:
        with fail_json_on_error(module, result, unexpected=True):
            rows = run.prepare(readonly=module.check_mode)
            result['selected'] = len(rows)
            if module.check_mode:
                plan = run.dry_run()
                result['tables'] = plan
                result['changed'] = any(not item.get('already_copied') and 'error' not in item
                                        for item in plan)
                problems = [i for i in plan if 'error' in i]
                if problems and p['fail_on_error']:
                    module.fail_json(msg='%d tables cannot be copied: %s' % (
                        len(problems), '; '.join(i['error'] for i in problems[:5])), **result)
                module.exit_json(**result)
            report = run.run()
    finally:
        run.close()

    result.update(run_result(report), changed=report.changed)
    if report.failed and p['fail_on_error']:
        failed = [r for r in report.results if r.status == 'errored']
        module.fail_json(msg='%d of %d tables failed: %s' % (
            len(failed), report.selected,
            '; '.join('%s: %s' % (r.source_table, r.error) for r in failed[:5])), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
