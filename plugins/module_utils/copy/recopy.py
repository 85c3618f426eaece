# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drift catch-up: copy again tables that are already migrated, replacing their rows on the
target atomically.

Rows written to the source after a table was copied (before the mirrors were enabled) show
as drift in ``compare_tables``. ``migrate --recopy T...`` (or ``--recopy-drifted``, which
runs the comparison and picks every migrated row that differs) replaces the table's rows on
the target in ONE target transaction: its advisory lock, the deletion of its rows, the COPY
and its ledger row. A failure leaves the old rows (and the old ledger row) in place.

Which target rows are "the table's rows" is decided exactly as ``compare`` slices them
(``compare.plan_comparisons``): a same-named table is all of ``ONLY target``; a drop-child
child is the rows of the parent satisfying the child's own CHECK constraints (read from the
source catalog); a drop-child parent's own rows are the target rows outside every child's
slice. A family ``compare`` cannot slice (a child without a CHECK of its own, or two
children with the same CHECK) is refused with the reason.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - modules report the missing library
    sql = None

from ansible_collections.icds.citus_migration.plugins.module_utils.validate import compare
from ansible_collections.icds.citus_migration.plugins.module_utils.copy import ledger
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.columns import (
    read_columns_many)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.runner import (
    RunOptions, RunReport, TableResult, small_table_settings)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.run_context import (
    ConnectionPair, RunFacts, log_failure, read_facts, runner_label)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.error_log import (
    default_error_log)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import (
    MigrationError, SelectionError)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import (
    Manifest, ManifestRow, utc_now)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import (
    ConnParams, connect, connection_pair)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.table_copy import (
    ByteCounter, CopyFailed, CopyTask, abort_target, configure_target_transaction, copy_and_record,
    copy_statements, resolve)


@dataclass
class RecopyItem:
    """One manifest row to re-copy and the target rows it replaces."""

    row: ManifestRow
    kind: str = 'table'  # 'table' | 'slice' (as compare slices it)
    predicate: Optional[str] = None  # target rows of the slice; None: all of the table
    only: bool = True  # DELETE FROM ONLY
    error: Optional[str] = None
    target_settings: Tuple[Tuple[str, str], ...] = ()  # as the copy of this table would get

    def task(self, options: RunOptions) -> CopyTask:
        return CopyTask(self.row.source_table, self.row.target, options.source_schema,
                        options.target_schema, target_settings=self.target_settings)

    def delete_statement(self, target_schema: str) -> 'sql.Composed':
        # the predicate is a CHECK expression from the source catalog (columns only), as in
        # compare: it cannot carry a name from the manifest
        return sql.SQL('DELETE FROM {}{}.{}{}').format(
            sql.SQL('ONLY ') if self.only else sql.SQL(''), sql.Identifier(target_schema),
            sql.Identifier(self.row.target),
            sql.SQL(' WHERE {}').format(sql.SQL(self.predicate)) if self.predicate else sql.SQL(''))


def select_named(rows: Sequence[ManifestRow], names: Sequence[str],
                 recopy_label: str = '--recopy') -> List[ManifestRow]:
    """The migrated manifest rows named by ``names`` (manifest order); errors name the table."""
    wanted = []
    for name in names:
        named = [r for r in rows if r.source_table == name]
        if not named:
            raise SelectionError("table '%s' is not in the manifest" % name)
        if not any(r.migrated for r in named):
            raise SelectionError("table '%s' is not migrated yet: copy it with migrate, "
                                 "%s only replaces copied tables" % (name, recopy_label))
        wanted.extend(r for r in named if r.migrated)
    ids = {r.id for r in wanted}
    return [r for r in rows if r.id in ids]


def slice_predicates(src_conn, schema: str, children: Sequence[str]) -> Dict[str, Optional[str]]:
    """Each drop-child child's slice predicate, read as compare reads it."""
    exprs: Dict[str, List[str]] = {}
    if children:
        with src_conn.cursor() as cur:
            cur.execute(compare.SLICE_EXPRESSIONS_SQL, {'schema': schema, 'names': list(children)})
            for rel, expr, _kind, _name in cur.fetchall():
                if expr:
                    exprs.setdefault(rel, []).append(expr)
        src_conn.rollback()
    return {c: compare.check_predicate(exprs.get(c, [])) for c in children}


def plan_recopy(src_conn, tgt_conn, rows: Sequence[ManifestRow],
                all_rows: Sequence[ManifestRow], options: RunOptions) -> List[RecopyItem]:
    """What each selected row's re-copy deletes on the target."""
    families = compare.drop_child_families(all_rows)
    children = sorted({c for kids in families.values() for c in kids})
    predicates = slice_predicates(src_conn, options.source_schema, children)
    with tgt_conn.cursor() as cur:
        tgt_cols = read_columns_many(cur, options.target_schema, [r.target for r in rows])
    tgt_conn.rollback()
    by_name = {r.source_table: r for r in rows}
    items = []
    for plan in compare.plan_comparisons(rows, all_rows, predicates):
        if plan.kind == 'group':
            for member in plan.members:
                if member in by_name:
                    items.append(RecopyItem(by_name[member], 'group', error=(
                        'cannot re-copy %s alone: %s' % (member, plan.note))))
            continue
        row = by_name[plan.source_table]
        partitioned = (tgt_cols.get(row.target) or [None])[0]
        only = plan.target_only and not (partitioned is not None and partitioned.relkind == 'p')
        items.append(RecopyItem(row, plan.kind, plan.predicate, only))
    order = {r.id: i for i, r in enumerate(rows)}
    return sorted(items, key=lambda item: order[item.row.id])


def recopy_one(src_conn, tgt_conn, item: RecopyItem, options: RunOptions, source_id: str,
               runner: str, counter: Optional[ByteCounter] = None) -> TableResult:
    """Replace one row's target rows in one target transaction (rolled back on failure)."""
    row = item.row
    counter = counter or ByteCounter()
    started = time.monotonic()
    task = item.task(options)
    mapping, partitioned = resolve(src_conn, tgt_conn, task)
    copy_out, copy_in = copy_statements(task, mapping, partitioned)
    schema = options.ledger_schema
    tcur = tgt_conn.cursor()
    try:
        configure_target_transaction(tcur, task)
        ledger.lock(tcur, source_id, row.source_table)
        tcur.execute(item.delete_statement(options.target_schema))
        ledger.forget_table(tcur, schema, source_id, row.source_table)
        rows = copy_and_record(src_conn, tcur, task, mapping, (copy_out, copy_in), counter,
                               schema, source_id, runner)
        tgt_conn.commit()
    except BaseException as exc:
        failed = abort_target(tgt_conn, exc)
        if not isinstance(failed, CopyFailed):
            raise
        if failed.sqlstate == '42501' and failed.side == 'target':
            failed.args = (str(failed).replace('(the target role needs INSERT on it)',
                                               '(re-copying needs DELETE, SELECT and INSERT on it)'),)
        raise failed
    finally:
        tcur.close()
    return TableResult(row.id, row.source_table, row.target, 'copied', rows, counter.value,
                       time.monotonic() - started, mapping.binary)


class RecopyRun:
    """``prepare`` (select and plan), then ``dry_run`` or ``run``."""

    def __init__(self, manifest_path: str, source: ConnParams, target: ConnParams,
                 options: RunOptions, tables: Sequence[str] = (), drifted: bool = False):
        self.manifest_path = manifest_path
        self.source = source.with_application_name('icds.citus_migration (source)')
        self.target = target.with_application_name('icds.citus_migration (target)')
        self.options = options
        self.tables = list(tables or [])
        self.drifted = drifted
        self.runner = runner_label()
        self.manifest: Optional[Manifest] = None
        self.items: List[RecopyItem] = []
        self.catchup_items: list = []  # drifted: every other migrated row (copy.catchup)
        self.catchup_results: list = []
        self.catchup_warnings: List[str] = []
        self.on_result = None  # callback for each catch-up result (progress display)
        self.source_id = ''
        self.facts: Optional[RunFacts] = None

    def prepare(self, readonly: bool = False) -> List[RecopyItem]:
        self.options.validate()
        if not self.tables and not self.drifted:
            raise SelectionError('nothing to re-copy: name tables or ask for the drifted ones')
        if self.tables and not self.drifted and self.options.parallel > 1:
            raise SelectionError('%s re-copies the named tables one at a time: drop %s (it applies '
                                 'to %s, which compares and repairs that many tables at once)' % (
                                     self.options.label('recopy'), self.options.label('parallel'),
                                     self.options.label('recopy_drifted')))
        if self.options.table or self.options.start_date or self.options.end_date:
            label = self.options.label
            raise SelectionError('%s / %s select tables themselves: drop %s, %s and %s' % (
                label('recopy'), label('recopy_drifted'), label('table'), label('start_date'),
                label('end_date')))
        self.manifest = Manifest.open(self.manifest_path, readonly=readonly)
        all_rows = self.manifest.rows()
        rows = select_named(all_rows, self.tables, self.options.label('recopy')) if self.tables else []
        with connection_pair(self.source, self.target) as (src, tgt):
            self.facts = read_facts(src, tgt, self.source, self.options.source_id,
                                    self.options.source_schema,
                                    [r.source_table for r in all_rows if r.migrated])
            self.source_id = self.facts.source_id
            self.items = plan_recopy(src, tgt, rows, all_rows, self.options) if rows else []
            if self.drifted:
                seen = {r.id for r in rows}
                rest = [r for r in all_rows if r.migrated and r.id not in seen]
                planned = plan_recopy(src, tgt, rest, all_rows, self.options) if rest else []
                from ansible_collections.icds.citus_migration.plugins.module_utils.copy import (
                    catchup)  # here: catchup builds on this module
                self.catchup_items = catchup.plan_catchup(src, tgt, planned, self.options)
            self._small_tables_on_citus()
            problems = [i.error for i in self.items if i.error]
            if problems and self.options.stop_on_error and not readonly:
                raise SelectionError('%d of %d tables cannot be re-copied, nothing was '
                                     'changed: %s' % (len(problems), len(self.items),
                                                      '; '.join(problems[:5])))
            if self.items and not readonly:
                ledger.ensure_ledger(tgt, self.options.ledger_schema)
        return self.items

    def _small_tables_on_citus(self) -> None:
        """Give each item the settings its copy by ``migrate`` would get."""
        items = self.items + [c.recopy for c in self.catchup_items]
        if not self.facts.target_is_citus:
            return
        sizes = self.facts.estimates
        for item in items:
            item.target_settings = small_table_settings(
                True, sizes.get(item.row.source_table, (0, 0))[1],
                self.options.small_table_threshold)

    def catch_up(self, dry_run: bool = False) -> list:
        """Compare every other migrated row segment by segment and repair what differs
        (``dry_run``: compare and report only). Results in manifest order."""
        if not self.catchup_items:
            return []
        from ansible_collections.icds.citus_migration.plugins.module_utils.copy import (
            catchup)  # here: catchup builds on this module
        worker = catchup.Catchup(self.source, self.target, self.options, self.facts,
                                 self.runner, dry_run, self.on_result,
                                 default_error_log(self.manifest_path) if self.options.error_log is None
                                 else self.options.error_log)
        with connection_pair(self.source, self.target) as (src, tgt):
            catchup.read_split_plans(worker, src, tgt, self.catchup_items)
        self.catchup_results = worker.run(self.catchup_items)
        self.catchup_warnings = worker.warnings
        return self.catchup_results

    def dry_run(self) -> List[Dict[str, object]]:
        """The statements each re-copy would run, in its one target transaction."""
        out = []
        src = connect(self.source, 'source')
        try:
            for item in self.items:
                entry = {'id': item.row.id, 'source_table': item.row.source_table,
                         'target_table': item.row.target, 'date': item.row.date,
                         'slice': item.kind}
                if item.error:
                    entry['error'] = item.error
                else:
                    task = item.task(self.options)
                    entry['delete'] = item.delete_statement(self.options.target_schema).as_string(src)
                    entry.update(self._copy_sql(src, task))
                out.append(entry)
        finally:
            src.close()
        return out

    def _copy_sql(self, src, task: CopyTask) -> Dict[str, str]:
        tgt = connect(self.target, 'target')
        try:
            mapping, partitioned = resolve(src, tgt, task)
            out, into = copy_statements(task, mapping, partitioned)
            return {'copy_out': out.as_string(src), 'copy_in': into.as_string(tgt)}
        except MigrationError as exc:
            return {'error': str(exc)}
        finally:
            tgt.close()

    def run(self, confirm: Optional[Callable[[ManifestRow], bool]] = None) -> RunReport:
        if self.manifest is None:
            raise RuntimeError('run() before prepare()')
        report = RunReport(selected=len(self.items))
        error_log = (default_error_log(self.manifest_path) if self.options.error_log is None
                     else self.options.error_log)
        started = time.monotonic()
        conns = ConnectionPair(self.source, self.target)
        try:
            for item in self.items:
                row = item.row
                if report.failed and self.options.stop_on_error:
                    report.stopped_early = True
                    break
                if item.error:
                    report.results.append(TableResult(row.id, row.source_table, row.target,
                                                      'errored', error=item.error))
                    continue
                if confirm is not None and not confirm(row):
                    report.results.append(TableResult(row.id, row.source_table, row.target,
                                                      'skipped'))
                    continue
                t0 = utc_now()
                try:
                    src, tgt = conns.ensure()
                    result = recopy_one(src, tgt, item, self.options, self.source_id,
                                        self.runner)
                except MigrationError as exc:
                    conns.reset()
                    self._log(item, exc, error_log)
                    report.results.append(TableResult(
                        row.id, row.source_table, row.target, 'errored', error=str(exc),
                        sqlstate=getattr(exc, 'sqlstate', None)))
                    continue
                # the row stays migrated; its facts now describe the new copy
                self.manifest.mark_migrated(row.id, result.rows, result.bytes, t0, utc_now(),
                                            result.duration_s, self.runner)
                report.results.append(result)
        finally:
            conns.reset()
            report.elapsed_s = time.monotonic() - started
        return report

    def _log(self, item: RecopyItem, exc: MigrationError, error_log: str) -> None:
        log_failure(error_log, item.row, exc, 'recopy: %s; COPY %s.%s TO STDOUT | COPY %s.%s FROM STDIN' % (
            item.kind, self.options.source_schema, item.row.source_table,
            self.options.target_schema, item.row.target), None, self.source, self.target, self.runner)

    def close(self) -> None:
        if self.manifest is not None:
            self.manifest.close()
