# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the copy of every selected manifest row: parallel, resumable, exactly once.

The CLI and the ``migrate_tables`` module are thin fronts over ``MigrationRun``.
Only the main thread touches the manifest; worker threads each own one source and one
target connection and copy one table at a time.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import socket
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from ansible_collections.icds.citus_migration.plugins.module_utils import ledger
from ansible_collections.icds.citus_migration.plugins.module_utils.error_log import (
    append_error, default_error_log)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy_columns import (
    match_columns, read_columns_many)
from ansible_collections.icds.citus_migration.plugins.module_utils.errors import (
    MigrationError, SelectionError, TableMappingError)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest import (
    Manifest, ManifestRow, utc_now)
from ansible_collections.icds.citus_migration.plugins.module_utils.pg_connection import (
    ConnParams, connect)
from ansible_collections.icds.citus_migration.plugins.module_utils.progress import Progress
from ansible_collections.icds.citus_migration.plugins.module_utils.selection import (
    parse_month_start, select_for_copy)
from ansible_collections.icds.citus_migration.plugins.module_utils.source_stats import (
    table_estimates)
from ansible_collections.icds.citus_migration.plugins.module_utils.table_copy import (
    ByteCounter, CopyFailed, CopyTask, copy_statements, diagnose, resolve_mapping, copy_table)

MAX_PARALLEL = 64


@dataclass
class RunOptions:
    parallel: int = 1
    stop_on_error: bool = True
    retry_errors: bool = False
    start_date: Optional[str] = None
    end_date: Optional[str] = None
    table: Optional[str] = None
    source_schema: str = 'public'
    target_schema: str = 'public'
    ledger_schema: str = ledger.DEFAULT_LEDGER_SCHEMA
    error_log: Optional[str] = None  # None: <manifest>.errors.jsonl; '': no log
    source_id: Optional[str] = None

    def validate(self) -> None:
        if not isinstance(self.parallel, int) or isinstance(self.parallel, bool) \
                or self.parallel < 1 or self.parallel > MAX_PARALLEL:
            raise SelectionError('--parallel must be a whole number from 1 to %d, got %r'
                                 % (MAX_PARALLEL, self.parallel))
        self.start_date = parse_month_start(self.start_date, '--start-date')
        self.end_date = parse_month_start(self.end_date, '--end-date')


@dataclass
class TableResult:
    id: int
    source_table: str
    target_table: str
    status: str  # copied | already_copied | errored | skipped | interrupted
    rows: Optional[int] = None
    bytes: Optional[int] = None
    duration_s: Optional[float] = None
    binary: Optional[bool] = None
    error: Optional[str] = None
    sqlstate: Optional[str] = None

    def as_dict(self) -> Dict[str, object]:
        return dict(self.__dict__)


@dataclass
class RunReport:
    selected: int
    results: List[TableResult] = field(default_factory=list)
    stopped_early: bool = False
    elapsed_s: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> int:
        return self.count('errored')

    @property
    def changed(self) -> bool:
        return self.count('copied') > 0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.count('interrupted') else 0


class RunEvents:
    """Hooks a front end may override to show progress."""

    def started(self, progress: Progress) -> None:
        pass

    def table_started(self, row: ManifestRow) -> None:
        pass

    def table_finished(self, result: TableResult, progress: Progress) -> None:
        pass

    def tick(self, progress: Progress) -> None:
        pass

    def finished(self, report: RunReport, progress: Progress) -> None:
        pass


def runner_label() -> str:
    return '%s:%d' % (socket.gethostname(), os.getpid())


def source_identity(conn, params: ConnParams) -> str:
    """Stable name of the source database for the ledger: dbname plus the cluster's
    system identifier when the role may read it (it tells two same-named databases apart)."""
    with conn.cursor() as cur:
        cur.execute('SELECT current_database()')
        dbname = cur.fetchone()[0]
        try:
            cur.execute('SELECT system_identifier::text FROM pg_control_system()')
            sysid = cur.fetchone()[0]
        except Exception:
            conn.rollback()
            sysid = None
    conn.rollback()
    return '%s@%s' % (dbname, sysid) if sysid else dbname


class _Worker:
    """One pair of connections, used by one thread at a time."""

    def __init__(self, run: 'MigrationRun', index: int):
        self.run = run
        self.index = index
        self.src = None
        self.tgt = None
        self.counter = ByteCounter()
        self.lock = threading.Lock()

    def _ensure(self) -> None:
        if self.src is None or self.src.closed:
            self.src = connect(self.run.source, 'source')
            self.src.set_session(readonly=True)
        if self.tgt is None or self.tgt.closed:
            self.tgt = connect(self.run.target, 'target')

    def copy(self, task: CopyTask, wait_for_lock: bool):
        self.counter = ByteCounter()
        try:
            self._ensure()
            return copy_table(self.src, self.tgt, task, self.run.source_id,
                              self.run.runner, self.run.options.ledger_schema,
                              wait_for_lock, self.counter)
        except BaseException:
            self.reset()
            raise

    def cancel(self) -> None:
        for conn in (self.src, self.tgt):
            try:
                if conn is not None and not conn.closed:
                    conn.cancel()
            except Exception:
                pass

    def reset(self) -> None:
        for conn in (self.src, self.tgt):
            try:
                if conn is not None:
                    conn.close()
            except Exception:
                pass
        self.src = self.tgt = None


class MigrationRun:
    """Selects manifest rows and copies them. Use ``prepare`` then ``run`` (or ``dry_run``)."""

    def __init__(self, manifest_path: str, source: ConnParams, target: ConnParams,
                 options: RunOptions, events: Optional[RunEvents] = None):
        self.manifest_path = manifest_path
        self.source = source.with_application_name('icds.citus_migration (source)')
        self.target = target.with_application_name('icds.citus_migration (target)')
        self.options = options
        self.events = events or RunEvents()
        self.runner = runner_label()
        self.manifest: Optional[Manifest] = None
        self.source_id = ''
        self.rows: List[ManifestRow] = []
        self.estimates: Dict[int, tuple] = {}
        self.problems: Dict[int, str] = {}

    # -- preparation -----------------------------------------------------------------
    def prepare(self, readonly: bool = False) -> List[ManifestRow]:
        """Validate options, open the manifest, reach both servers, select the rows."""
        self.options.validate()
        self.manifest = Manifest.open(self.manifest_path, readonly=readonly)
        self.rows = select_for_copy(self.manifest.rows(), self.options.start_date,
                                    self.options.end_date, self.options.table,
                                    self.options.retry_errors)
        src = connect(self.source, 'source')
        try:
            tgt = connect(self.target, 'target')
            try:
                self.source_id = self.options.source_id or source_identity(src, self.source)
                est = table_estimates(src, [r.source_table for r in self.rows],
                                      self.options.source_schema)
                self.estimates = {r.id: est.get(r.source_table, (0, 0)) for r in self.rows}
                self.problems = self._check_mappings(src, tgt)
                if self.problems and self.options.stop_on_error and not readonly:
                    shown = list(self.problems.values())[:5]
                    more = len(self.problems) - len(shown)
                    raise TableMappingError(
                        '%d of %d selected tables cannot be copied, nothing was copied: %s%s' % (
                            len(self.problems), len(self.rows), '; '.join(shown),
                            ' (and %d more)' % more if more else ''))
                if not readonly and self.rows:
                    ledger.ensure_ledger(tgt, self.options.ledger_schema)
            finally:
                tgt.close()
        finally:
            src.close()
        return self.rows

    def _check_mappings(self, src, tgt) -> Dict[int, str]:
        """Every selected table checked up front, in two catalog queries: id -> problem."""
        with src.cursor() as scur, tgt.cursor() as tcur:
            src_cols = read_columns_many(scur, self.options.source_schema,
                                         [r.source_table for r in self.rows])
            tgt_cols = read_columns_many(tcur, self.options.target_schema,
                                         [r.target for r in self.rows])
        src.rollback()
        tgt.rollback()
        problems = {}
        for row in self.rows:
            try:
                match_columns(row.source_table, row.target, src_cols.get(row.source_table),
                              tgt_cols.get(row.target))
            except TableMappingError as exc:
                problems[row.id] = str(exc)
        return problems

    def task_for(self, row: ManifestRow) -> CopyTask:
        return CopyTask(row.source_table, row.target, self.options.source_schema,
                        self.options.target_schema)

    def dry_run(self) -> List[Dict[str, object]]:
        """What a real run would do per row, touching nothing (statements or the error)."""
        plan = []
        src = connect(self.source, 'source')
        tgt = connect(self.target, 'target')
        try:
            with tgt.cursor() as cur:
                has_ledger = ledger.ledger_exists(cur, self.options.ledger_schema)
            for row in self.rows:
                task = self.task_for(row)
                item = {'id': row.id, 'source_table': row.source_table,
                        'target_table': row.target, 'date': row.date}
                try:
                    mapping = resolve_mapping(src, tgt, task)
                    out, into = copy_statements(task, mapping)
                    item['copy_out'] = out.as_string(src)
                    item['copy_in'] = into.as_string(tgt)
                    item['format'] = 'binary' if mapping.binary else 'text'
                    if has_ledger:
                        with tgt.cursor() as cur:
                            done = ledger.lookup(cur, self.options.ledger_schema,
                                                 self.source_id, row.source_table)
                        tgt.rollback()
                        item['already_copied'] = done is not None
                except MigrationError as exc:
                    item['error'] = str(exc)
                plan.append(item)
        finally:
            src.close()
            tgt.close()
        return plan

    # -- the run ---------------------------------------------------------------------
    def run(self, confirm: Optional[Callable[[ManifestRow], bool]] = None) -> RunReport:
        assert self.manifest is not None, 'prepare() first'
        opts = self.options
        progress = Progress(self.estimates)
        report = RunReport(selected=len(self.rows))
        workers = [_Worker(self, i) for i in range(opts.parallel)]
        free = list(workers)
        pending = deque(self.rows)
        deferred = deque()
        in_flight = {}
        stopping = False
        error_log = default_error_log(self.manifest_path) if opts.error_log is None else opts.error_log
        self.events.started(progress)
        started = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=opts.parallel, thread_name_prefix='copy')
        try:
            while True:
                while free and not stopping and (pending or (deferred and not pending)):
                    if pending:
                        row, wait_lock = pending.popleft(), False
                    else:
                        row, wait_lock = deferred.popleft(), True
                    if confirm is not None and not wait_lock and not confirm(row):
                        report.results.append(TableResult(row.id, row.source_table, row.target,
                                                          'skipped'))
                        continue
                    worker = free.pop()
                    self.manifest.mark_running(row.id, self.runner)
                    self.events.table_started(row)
                    fut = pool.submit(worker.copy, self.task_for(row), wait_lock)
                    in_flight[fut] = (row, worker, (time.monotonic(), utc_now()))
                if not in_flight:
                    break
                done, _ = wait(list(in_flight), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    row, worker, t0 = in_flight.pop(fut)
                    free.append(worker)
                    result = self._settle(row, fut, t0, error_log, deferred)
                    if result is None:
                        continue
                    report.results.append(result)
                    ok = result.status in ('copied', 'already_copied')
                    progress.finished(row.id, ok, result.rows, result.bytes)
                    self.events.table_finished(result, progress)
                    if not ok and opts.stop_on_error:
                        stopping = True
                progress.inflight_bytes = sum(w.counter.value for _, w, _ in in_flight.values())
                self.events.tick(progress)
        except KeyboardInterrupt:
            stopping = True
            for row, worker, _ in in_flight.values():
                worker.cancel()
            wait(list(in_flight))
            for fut, (row, worker, _) in in_flight.items():
                self.manifest.mark_pending(row.id)
                report.results.append(TableResult(row.id, row.source_table, row.target,
                                                  'interrupted'))
            raise
        finally:
            pool.shutdown(wait=True)
            for worker in workers:
                worker.reset()
            report.stopped_early = stopping and bool(pending or deferred)
            report.elapsed_s = time.monotonic() - started
            self.events.finished(report, progress)
        return report

    def _settle(self, row: ManifestRow, fut, t0: tuple, error_log: str,
                deferred: deque) -> Optional[TableResult]:
        """Record one finished copy in the manifest; None when it must be retried later."""
        finished = utc_now()
        try:
            outcome = fut.result()
        except MigrationError as exc:
            return self._failed(row, exc, error_log)
        except Exception as exc:  # unexpected: still recorded, never a silent loss
            return self._failed(row, diagnose(exc, 'runner'), error_log)
        if outcome.status == 'busy':
            self.manifest.mark_pending(row.id)
            deferred.append(row)
            return None
        duration = outcome.duration_s if outcome.duration_s is not None else time.monotonic() - t0[0]
        started_at = t0[1]
        self.manifest.mark_migrated(row.id, outcome.rows, outcome.nbytes, started_at,
                                    finished, duration,
                                    outcome.copied_by if outcome.status == 'already_copied'
                                    else self.runner)
        return TableResult(row.id, row.source_table, row.target, outcome.status, outcome.rows,
                           outcome.nbytes, duration, outcome.binary)

    def _failed(self, row: ManifestRow, exc: MigrationError, error_log: str) -> TableResult:
        sqlstate = getattr(exc, 'sqlstate', None)
        message = str(exc)
        self.manifest.mark_errored(row.id, message, sqlstate)
        task = self.task_for(row)
        append_error(error_log, {
            'time': utc_now(), 'manifest_id': row.id, 'source_table': row.source_table,
            'target_table': row.target, 'date': row.date, 'sqlstate': sqlstate,
            'message': message, 'detail': getattr(exc, 'detail', None),
            'context': getattr(exc, 'context', None), 'hint': getattr(exc, 'hint', None),
            'command': 'COPY %s.%s TO STDOUT | COPY %s.%s FROM STDIN' % (
                task.source_schema, task.source_table, task.target_schema, task.target_table),
            'source': self.source.describe(), 'target': self.target.describe(),
            'runner': self.runner,
        })
        return TableResult(row.id, row.source_table, row.target, 'errored', error=message,
                           sqlstate=sqlstate)

    def close(self) -> None:
        if self.manifest is not None:
            self.manifest.close()
