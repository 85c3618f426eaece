# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the copy of every selected manifest row: parallel, resumable, exactly once.

The CLI and the ``migrate_tables`` module are thin fronts over ``MigrationRun``.
Only the main thread touches the manifest; worker threads each own one source and one
target connection and copy one table (or one part of a table) at a time.

Large tables: a source table bigger than ``split_threshold`` bytes is copied in segments of
about ``segment_size`` bytes (``split_parts`` forces their number): key ranges when it has a
usable key, else ctid ranges read under one shared snapshot (see ``split_plan``). Each segment
is its own job, target transaction and ledger row, spread over the workers like separate
tables. The split plan is stored on the target before the first segment is copied, so every
runner and every re-run copies the same segments, each exactly once. The manifest row becomes
migrated when every segment is in the ledger, errored when one failed (a re-run copies only
the missing segments; a ctid-split table whose snapshot is gone starts again from scratch).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - modules report the missing library
    sql = None

from ansible_collections.icds.citus_migration.plugins.module_utils.common import defaults
from ansible_collections.icds.citus_migration.plugins.module_utils.copy import ledger
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.error_log import (
    default_error_log)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.columns import (
    match_columns, read_columns_many)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import (
    MigrationError, SelectionError, TableMappingError)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import (
    Manifest, ManifestRow, utc_now)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.writer import (
    ManifestWriter,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import (
    ConnParams, connect, connection_pair)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.progress import Progress
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.run_context import (
    ConnectionPair, log_failure, read_facts, runner_label)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.selection import (
    parse_month_start, select_for_copy)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.table_copy import (
    ByteCounter, CopyTask, SnapshotGone, copy_statements, diagnose, partitioned_tables, resolve,
    copy_table)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.key_ranges import is_key_part
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.split_plan import (
    SplitPlan, describe_parts, new_parts, plan_split, segment_count)

MAX_PARALLEL = 64
MAX_SPLIT_PARTS = 1024
MAX_RESTARTS = 3  # times a run takes a ctid-split table's snapshot again (see _restart)
DEFAULT_SPLIT_THRESHOLD = defaults.SPLIT_THRESHOLD  # size texts: validate() parses them
DEFAULT_SEGMENT_SIZE = defaults.SEGMENT_SIZE
DEFAULT_SMALL_TABLE_THRESHOLD = defaults.SMALL_TABLE_THRESHOLD
SMALL_TABLE_SETTINGS = (('citus.max_adaptive_executor_pool_size', '1'),)


def small_table_settings(target_is_citus: bool, size: int, threshold: int,
                         part: str = '') -> tuple:
    """The target settings for one copy: one connection per worker for a whole table under
    ``threshold`` bytes on Citus (a small COPY otherwise opens a connection per shard)."""
    if target_is_citus and not part and size < threshold:
        return SMALL_TABLE_SETTINGS
    return ()


_SIZE_RE = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$', re.IGNORECASE)
_UNITS = {'': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30, 't': 1 << 40, 'p': 1 << 50}


def parse_size(value, flag: str = '--split-threshold') -> int:
    """Bytes from an int or a size such as ``1GB``, ``512MB``, ``1.5g`` (1024-based)."""
    if isinstance(value, bool):
        raise SelectionError('%s must be a size such as 1GB, got %r' % (flag, value))
    if isinstance(value, int):
        if value < 0:
            raise SelectionError('%s must not be negative, got %d' % (flag, value))
        return value
    match = _SIZE_RE.match(str(value))
    if not match:
        raise SelectionError("%s must be a size such as 1GB or 500MB (bytes if no unit), got '%s'"
                             % (flag, value))
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


@dataclass
class RunOptions:
    parallel: int = defaults.PARALLEL
    stop_on_error: bool = True
    retry_errors: bool = False
    start_date: Optional[str] = None
    end_date: Optional[str] = None
    table: Optional[str] = None
    source_schema: str = defaults.SCHEMA
    target_schema: str = defaults.SCHEMA
    ledger_schema: str = ledger.DEFAULT_LEDGER_SCHEMA
    error_log: Optional[str] = None  # None: <manifest>.errors.jsonl; '': no log
    source_id: Optional[str] = None
    split_threshold: object = DEFAULT_SPLIT_THRESHOLD  # bytes, or a size text such as '1GB'
    split_parts: Optional[int] = None  # None: one segment per segment_size bytes
    segment_size: object = DEFAULT_SEGMENT_SIZE  # bytes, or a size text such as '256MB'
    small_table_threshold: object = DEFAULT_SMALL_TABLE_THRESHOLD  # bytes or size text; 0: off
    # the catch-up compares every row's values, not only the rows changed since the copy
    compare_all_rows: bool = False
    # how errors name an option: 'cli' (--start-date) or 'module' (start_date)
    option_style: str = 'cli'

    def label(self, option: str) -> str:
        """The name the user gave ``option`` under, for error messages."""
        return option if self.option_style == 'module' else '--' + option.replace('_', '-')

    def validate(self) -> None:
        if not isinstance(self.parallel, int) or isinstance(self.parallel, bool) \
                or self.parallel < 1 or self.parallel > MAX_PARALLEL:
            raise SelectionError('%s must be a whole number from 1 to %d, got %r'
                                 % (self.label('parallel'), MAX_PARALLEL, self.parallel))
        self.start_date = parse_month_start(self.start_date, self.label('start_date'))
        self.end_date = parse_month_start(self.end_date, self.label('end_date'))
        if self.start_date and self.end_date and self.start_date >= self.end_date:
            raise SelectionError('%s %s is not before %s %s' % (
                self.label('start_date'), self.start_date, self.label('end_date'), self.end_date))
        self.split_threshold = parse_size(
            DEFAULT_SPLIT_THRESHOLD if self.split_threshold is None else self.split_threshold,
            self.label('split_threshold'))
        self.segment_size = parse_size(
            DEFAULT_SEGMENT_SIZE if self.segment_size is None else self.segment_size,
            self.label('segment_size'))
        if self.segment_size < 1:
            raise SelectionError('%s must be at least 1 byte, got 0' % self.label('segment_size'))
        self.small_table_threshold = parse_size(
            DEFAULT_SMALL_TABLE_THRESHOLD if self.small_table_threshold is None
            else self.small_table_threshold, self.label('small_table_threshold'))
        if self.split_parts is not None and (
                not isinstance(self.split_parts, int) or isinstance(self.split_parts, bool)
                or self.split_parts < 1 or self.split_parts > MAX_SPLIT_PARTS):
            raise SelectionError('%s must be a whole number from 1 to %d, got %r'
                                 % (self.label('split_parts'), MAX_SPLIT_PARTS, self.split_parts))

    def segments_for(self, size: int) -> int:
        """Segments a table of ``size`` bytes is split into (``split_parts`` forces it)."""
        return segment_count(size, self.segment_size, self.split_parts)


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
    parts: Optional[int] = None  # number of segments when the table was copied in segments
    split: Optional[str] = None  # how: 'key id, 8 segments' or 'ctid, 4 parts under one snapshot'
    segments_done: Optional[int] = None  # of those segments, how many are copied

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

    def job_started(self, worker_index: int, row: ManifestRow, part: str,
                    estimate_bytes: int, counter: ByteCounter) -> None:
        """A worker took one job (a whole table, or one part of it); ``counter`` counts the
        bytes it streams, live; ``estimate_bytes`` is its share of the source size on disk."""
        pass

    def job_finished(self, worker_index: int, row: ManifestRow, part: str, status: str,
                     nbytes: Optional[int]) -> None:
        """The worker's job ended: 'copied', 'already_copied', 'errored', or 'busy' / 'split'
        (the job goes back to the queue)."""
        pass

    def table_finished(self, result: TableResult, progress: Progress) -> None:
        pass

    def tick(self, progress: Progress) -> None:
        pass

    def finished(self, report: RunReport, progress: Progress) -> None:
        pass


class _Worker:
    """One pair of connections, used by one thread at a time."""

    def __init__(self, run: 'MigrationRun', index: int):
        self.run = run
        self.index = index
        self.conns = ConnectionPair(run.source, run.target)
        self.counter = ByteCounter()
        self.lock = threading.Lock()

    def copy(self, task: CopyTask, wait_for_lock: bool, resolved=None):
        try:
            src, tgt = self.conns.ensure()
            return copy_table(src, tgt, task, self.run.source_id,
                              self.run.runner, self.run.options.ledger_schema,
                              wait_for_lock, self.counter, resolved)
        except BaseException:
            self.reset()
            raise

    def cancel(self) -> None:
        self.conns.cancel()

    def reset(self) -> None:
        self.conns.reset()


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
        self._writer: Optional[ManifestWriter] = None
        self.source_id = ''
        self.rows: List[ManifestRow] = []
        self.estimates: Dict[int, tuple] = {}
        self.target_is_citus = False
        self.problems: Dict[int, str] = {}
        self.resolved: Dict[int, tuple] = {}  # id -> (ColumnMapping, partitioned) from prepare

    # -- preparation -----------------------------------------------------------------
    def prepare(self, readonly: bool = False) -> List[ManifestRow]:
        """Validate options, open the manifest, reach both servers, select the rows."""
        self.options.validate()
        self.manifest = Manifest.open(self.manifest_path, readonly=readonly)
        self.rows = select_for_copy(self.manifest.rows(), self.options.start_date,
                                    self.options.end_date, self.options.table,
                                    self.options.retry_errors)
        with connection_pair(self.source, self.target) as (src, tgt):
            facts = read_facts(src, tgt, self.source, self.options.source_id,
                               self.options.source_schema, [r.source_table for r in self.rows])
            self.source_id, self.target_is_citus = facts.source_id, facts.target_is_citus
            self.estimates = {r.id: facts.estimates.get(r.source_table, (0, 0)) for r in self.rows}
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
        return self.rows

    def _check_mappings(self, src, tgt) -> Dict[int, str]:
        """Every selected table checked up front, in three catalog queries: id -> problem.

        The mappings are kept for the copies (``self.resolved``): a copy then needs no
        catalog query of its own."""
        names = [r.source_table for r in self.rows]
        with src.cursor() as scur, tgt.cursor() as tcur:
            src_cols = read_columns_many(scur, self.options.source_schema, names)
            tgt_cols = read_columns_many(tcur, self.options.target_schema,
                                         [r.target for r in self.rows])
            partitioned = partitioned_tables(scur, self.options.source_schema, names)
        src.rollback()
        tgt.rollback()
        problems = {}
        self.resolved = {}
        for row in self.rows:
            try:
                mapping = match_columns(row.source_table, row.target,
                                        src_cols.get(row.source_table), tgt_cols.get(row.target))
                self.resolved[row.id] = (mapping, row.source_table in partitioned)
            except TableMappingError as exc:
                problems[row.id] = str(exc)
        return problems

    def task_for(self, row: ManifestRow, part: str = '', snapshot: Optional[str] = None) -> CopyTask:
        settings = small_table_settings(self.target_is_citus, self.estimates.get(row.id, (0, 0))[1],
                                        self.options.small_table_threshold, part)
        return CopyTask(row.source_table, row.target, self.options.source_schema,
                        self.options.target_schema, part, snapshot if part else None, settings)

    def segments(self, row: ManifestRow) -> int:
        return self.options.segments_for(self.estimates.get(row.id, (0, 0))[1])

    def wants_split(self, row: ManifestRow) -> bool:
        """Over the size threshold (bytes on disk of the source table) and more than one
        segment."""
        size = self.estimates.get(row.id, (0, 0))[1]
        return size > self.options.split_threshold and self.segments(row) > 1

    def dry_run(self) -> List[Dict[str, object]]:
        """What a real run would do per row, touching nothing (statements or the error).

        A table that would be copied in parts lists them under ``parts`` (the stored plan if
        there is one, else the plan a run would store now); ``copy_out`` then holds one
        statement per part, one per line."""
        plan = []
        with connection_pair(self.source, self.target) as (src, tgt):
            with tgt.cursor() as cur:
                has_ledger = ledger.ledger_exists(cur, self.options.ledger_schema)
                has_plans = has_ledger and ledger.split_plan_table_exists(
                    cur, self.options.ledger_schema)
                stored = ledger.split_plans(cur, self.options.ledger_schema, self.source_id,
                                            [r.source_table for r in self.rows]) if has_plans else {}
                segments_done = {t: set(ledger.done_parts(cur, self.options.ledger_schema,
                                                          self.source_id, t)) & set(p)
                                 for t, p in stored.items()}
            tgt.rollback()
            for row in self.rows:
                task = self.task_for(row)
                item = {'id': row.id, 'source_table': row.source_table,
                        'target_table': row.target, 'date': row.date}
                try:
                    mapping, partitioned = resolve(src, tgt, task)
                    done = None
                    if has_ledger:
                        with tgt.cursor() as cur:
                            done = ledger.lookup(cur, self.options.ledger_schema,
                                                 self.source_id, row.source_table)
                        tgt.rollback()
                        item['already_copied'] = done is not None
                    parts = stored.get(row.source_table)
                    if parts is None and done is None and self.wants_split(row):
                        parts = new_parts(src, task, self.segments(row))
                    if parts:
                        outs = [copy_statements(self.task_for(row, p), mapping)[0].as_string(src)
                                for p in parts]
                        item['parts'] = list(parts)
                        item['split'] = describe_parts(parts)
                        item['segments_done'] = len(segments_done.get(row.source_table, ()))
                        item['copy_out'] = '\n'.join(outs)
                    else:
                        item['copy_out'] = copy_statements(task, mapping,
                                                           partitioned)[0].as_string(src)
                    item['copy_in'] = copy_statements(task, mapping)[1].as_string(tgt)
                    item['format'] = 'binary' if mapping.binary else 'text'
                except MigrationError as exc:
                    item['error'] = str(exc)
                plan.append(item)
        return plan

    # -- the run ---------------------------------------------------------------------
    def _plan_splits(self, groups: Dict[int, '_Group']) -> None:
        """Give every table that is (or must be) copied in segments its stored segments."""
        if not self.rows:
            return
        with connection_pair(self.source, self.target) as (src, tgt):
            with tgt.cursor() as cur:
                stored = ledger.split_plans(cur, self.options.ledger_schema, self.source_id,
                                            [r.source_table for r in self.rows])
            tgt.rollback()
            for row in self.rows:
                if row.source_table in stored or self.wants_split(row):
                    # a ctid plan's snapshot is exported when the table starts (_take_snapshot):
                    # held from now on, it would hold back VACUUM for tables queued late
                    groups[row.id].adopt(self._plan(src, tgt, row, hold=False))

    def _adopt_plan(self, group: '_Group') -> List[str]:
        """A whole-table copy found a split plan stored by another runner: use it."""
        with connection_pair(self.source, self.target) as (src, tgt):
            group.adopt(self._plan(src, tgt, group.row))
        group.snapshot_ready = True
        return group.parts

    def _take_snapshot(self, group: '_Group') -> bool:
        """Before the first part of a ctid-split table: its shared snapshot (a new one, or
        the one another live runner keeps; the table starts again from scratch when parts
        were copied under one that is gone). False when its lock stayed busy."""
        with connection_pair(self.source, self.target) as (src, tgt):
            plan = self._plan(src, tgt, group.row)
        if plan is None:
            return False
        group.release()
        group.snapshot, group.holder, group.snapshot_ready = plan.snapshot, plan.holder, True
        return True

    def _plan(self, src, tgt, row: ManifestRow, hold: bool = True) -> Optional[SplitPlan]:
        """The stored (or a new) split plan of a table; with ``hold``, with its shared
        snapshot if it is ctid-split."""
        if not hold:
            return plan_split(src, tgt, self.task_for(row), self.source_id, self.runner,
                              self.segments(row), self.options.ledger_schema)

        def connect_source():
            return connect(self.source, 'source')

        def connect_target():
            return connect(self.target, 'target')

        return plan_split(src, tgt, self.task_for(row), self.source_id, self.runner,
                          self.segments(row), self.options.ledger_schema,
                          connect_source=connect_source, connect_target=connect_target,
                          restart_delete=lambda: self._restart_delete(src, row))

    def _restart_delete(self, src, row: ManifestRow):
        """The statement removing a table's rows on the target before it is copied again
        from scratch: all of ONLY the target, or a drop-child child's slice of its parent."""
        if row.target == row.source_table:
            return sql.SQL('DELETE FROM ONLY {}.{}').format(
                sql.Identifier(self.options.target_schema), sql.Identifier(row.target))
        from ansible_collections.icds.citus_migration.plugins.module_utils.copy.recopy import (
            slice_predicates)  # recopy imports this module
        predicate = slice_predicates(src, self.options.source_schema,
                                     [row.source_table])[row.source_table]
        if not predicate:
            raise MigrationError('cannot copy %s again from scratch: it has no CHECK constraint '
                                 'telling its rows in %s apart' % (row.source_table, row.target))
        # the predicate is a CHECK expression from the source catalog, as in recopy
        return sql.SQL('DELETE FROM {}.{} WHERE {}').format(
            sql.Identifier(self.options.target_schema), sql.Identifier(row.target),
            sql.SQL(predicate))

    def run(self, confirm: Optional[Callable[[ManifestRow], bool]] = None) -> RunReport:
        if self.manifest is None:
            raise RuntimeError('MigrationRun.run() before prepare()')
        opts = self.options
        progress = Progress(self.estimates)
        report = RunReport(selected=len(self.rows))
        groups = {row.id: _Group(row) for row in self.rows}
        error_log = default_error_log(self.manifest_path) if opts.error_log is None else opts.error_log
        started = time.monotonic()
        self._plan_splits(groups)
        self._writer = ManifestWriter(self.manifest_path)
        workers = [_Worker(self, i) for i in range(opts.parallel)]
        free = list(workers)
        pending = deque(_Job(groups[row.id], part) for row in self.rows
                        for part in groups[row.id].parts)
        deferred = deque()
        in_flight = {}
        stopping = stopping_after = False
        finished: List[_Group] = []
        self.events.started(progress)
        pool = ThreadPoolExecutor(max_workers=opts.parallel, thread_name_prefix='copy')
        completed = False
        try:
            while True:
                starting = []
                while free and not stopping and (pending or (deferred and not pending)):
                    if pending:
                        job, wait_lock = pending.popleft(), False
                    else:
                        job, wait_lock = deferred.popleft(), True
                    group = job.group
                    if group.skipped:
                        continue
                    if not group.started:
                        if confirm is not None and not confirm(group.row):
                            group.skipped = True
                            report.results.append(TableResult(
                                group.row.id, group.row.source_table, group.row.target, 'skipped'))
                            continue
                        if group.needs_snapshot() and not self._take_snapshot(group):
                            deferred.append(job)
                            continue
                        group.started = True
                        group.t0 = (time.monotonic(), utc_now())
                        starting.append(group)
                    elif not job.part and wait_lock:
                        starting.append(group)
                    worker = free.pop()
                    group.in_flight += 1
                    worker.counter = ByteCounter()
                    self.events.job_started(worker.index, group.row, job.part,
                                            self._job_estimate(group), worker.counter)
                    fut = pool.submit(worker.copy,
                                      self.task_for(group.row, job.part, group.snapshot),
                                      wait_lock, self.resolved.get(group.row.id))
                    in_flight[fut] = (job, worker)
                # queued for the writer thread, after the jobs are handed out: the workers
                # never wait for a manifest commit (an fsync each)
                self._writer.check()
                for group in starting:
                    self._writer.mark_running(group.row.id, self.runner)
                    if group.parts != ['']:
                        self._writer.mark_segments(group.row.id, group.segments_done,
                                                   len(group.parts))
                    if not group.announced:
                        group.announced = True
                        self.events.table_started(group.row)
                if finished:
                    for group in finished:
                        self._report(group, report, progress)
                    if stopping_after:
                        stopping = True
                    finished, stopping_after = [], False
                    continue
                if not in_flight:
                    break
                done, dummy = wait(list(in_flight), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    job, worker = in_flight.pop(fut)
                    free.append(worker)
                    self._job_finished(worker, job, fut)
                    job.group.in_flight -= 1
                    complete = self._settle(job, fut, error_log, pending, deferred)
                    if job.group.error is not None and opts.stop_on_error:
                        stopping = True
                    if complete:
                        finished.append(job.group)
                        if job.group.error is not None and opts.stop_on_error:
                            stopping_after = True
                progress.inflight_bytes = sum(w.counter.value for dummy, w in in_flight.values())
                self.events.tick(progress)
            # groups left incomplete (stopped after an error elsewhere or in one of their parts)
            for group in groups.values():
                if group.started and not group.finished and not group.skipped:
                    result = self._finish(group, incomplete=True)
                    report.results.append(result)
                    if result.status == 'errored':
                        progress.finished(result.id, False)
                    self.events.table_finished(result, progress)
            completed = True
        except KeyboardInterrupt:
            stopping = True
            for job, worker in in_flight.values():
                worker.cancel()
            wait(list(in_flight))
            for group in groups.values():
                if group.started and not group.finished and not group.skipped:
                    group.finished = True
                    self._writer.mark_pending(group.row.id)
                    report.results.append(TableResult(group.row.id, group.row.source_table,
                                                      group.row.target, 'interrupted'))
            raise
        finally:
            pool.shutdown(wait=True)
            for worker in workers:
                worker.reset()
            for group in groups.values():
                group.release()
            self._close_writer(raise_errors=completed)
            report.stopped_early = stopping and bool(pending or deferred)
            report.elapsed_s = time.monotonic() - started
            self.events.finished(report, progress)
        return report

    def _job_estimate(self, group: '_Group') -> int:
        """The source bytes on disk one job of ``group`` covers (its share if in parts)."""
        return self.estimates.get(group.row.id, (0, 0))[1] // max(1, len(group.parts))

    def _job_finished(self, worker: '_Worker', job: '_Job', fut) -> None:
        exc = fut.exception()
        outcome = None if exc is not None else fut.result()
        self.events.job_finished(worker.index, job.group.row, job.part,
                                 'errored' if outcome is None else outcome.status,
                                 None if outcome is None else outcome.nbytes)

    def _close_writer(self, raise_errors: bool) -> None:
        """Commit every queued manifest update. A write failure is raised unless another
        exception is already on its way out (that one is the cause; both end the run)."""
        writer, self._writer = self._writer, None
        if raise_errors:
            writer.close()
            return
        try:
            writer.close()
        except Exception:  # pylint: disable=broad-except
            pass

    def _report(self, group: '_Group', report: RunReport, progress: Progress) -> None:
        result = self._finish(group)
        report.results.append(result)
        ok = result.status in ('copied', 'already_copied')
        progress.finished(result.id, ok, result.rows, result.bytes)
        self.events.table_finished(result, progress)

    def _settle(self, job: '_Job', fut, error_log: str, pending: deque,
                deferred: deque) -> bool:
        """Account one finished job; True when its table is complete (every part settled)."""
        group = job.group
        if job.generation != group.generation:  # of an attempt the table started again from
            return group.left == 0 and group.in_flight == 0
        try:
            outcome = fut.result()
        except SnapshotGone as exc:
            if group.restarts < MAX_RESTARTS and self._restart(group, pending, deferred):
                return False
            self._log_error(group.row, self.task_for(group.row, job.part), exc, error_log)
            group.error = group.error or exc
            group.left -= 1
            group.failed += 1
            return group.left == 0 and group.in_flight == 0
        except MigrationError as exc:
            self._log_error(group.row, self.task_for(group.row, job.part), exc, error_log)
            group.error = group.error or exc
            group.left -= 1
            group.failed += 1
            return group.left == 0 and group.in_flight == 0
        except Exception as exc:  # unexpected: still recorded, never a silent loss
            exc = diagnose(exc, 'runner')
            self._log_error(group.row, self.task_for(group.row, job.part), exc, error_log)
            group.error = group.error or exc
            group.left -= 1
            group.failed += 1
            return group.left == 0 and group.in_flight == 0
        if outcome.status == 'busy':
            if not job.part:
                self._writer.mark_pending(group.row.id)
            deferred.append(job)
            return False
        if outcome.status == 'split':
            parts = self._adopt_plan(group)
            if parts != ['']:
                pending.extendleft(reversed([_Job(group, p, group.generation) for p in parts]))
            else:
                deferred.append(job)
            return False
        group.left -= 1
        if group.parts != ['']:
            group.segments_done += 1
            self._writer.mark_segments(group.row.id, group.segments_done, len(group.parts))
        group.rows += outcome.rows or 0
        group.nbytes += outcome.nbytes or 0
        group.binary = outcome.binary if outcome.binary is not None else group.binary
        if outcome.status == 'copied':
            group.copied = True
        elif group.copied_by is None:
            group.copied_by = outcome.copied_by
        if not job.part and outcome.duration_s is not None:
            group.duration = outcome.duration_s
        return group.left == 0 and group.in_flight == 0

    def _restart(self, group: '_Group', pending: deque, deferred: deque) -> bool:
        """A part found the table's shared snapshot gone (the runner keeping it ended): take
        the table's snapshot again (a new one, starting the table again from scratch, or a
        live runner's) and queue every part again; results of the jobs already handed out
        no longer count. False when the table's lock stayed busy."""
        group.restarts += 1
        group.release()  # ours, if it was ours: its lock must be free for the new one
        with connection_pair(self.source, self.target) as (src, tgt):
            plan = self._plan(src, tgt, group.row)
        if plan is None:
            return False
        group.snapshot, group.holder, group.snapshot_ready = plan.snapshot, plan.holder, True
        group.generation += 1
        group.left = len(group.parts)
        group.segments_done = group.rows = group.nbytes = group.failed = 0
        group.copied = False
        for queue in (pending, deferred):
            keep = [j for j in queue if j.group is not group]
            queue.clear()
            queue.extend(keep)
        pending.extendleft(reversed([_Job(group, p, group.generation) for p in group.parts]))
        return True

    def _finish(self, group: '_Group', incomplete: bool = False) -> TableResult:
        """Record a table whose jobs are all settled (or abandoned) in the manifest."""
        group.finished = True
        group.release()
        row = group.row
        nparts = len(group.parts) if group.parts != [''] else None
        split = describe_parts(group.parts) if nparts else None
        if group.error is not None:
            exc = group.error
            message = str(exc)
            if nparts:
                message = '%d of %d parts not copied; first failure: %s' % (
                    group.failed + group.left, nparts, message)
            sqlstate = getattr(exc, 'sqlstate', None)
            self._writer.mark_errored(row.id, message, sqlstate)
            return TableResult(row.id, row.source_table, row.target, 'errored', error=message,
                               sqlstate=sqlstate, parts=nparts, split=split,
                               segments_done=group.segments_done if nparts else None)
        if incomplete:
            self._writer.mark_pending(row.id)
            return TableResult(row.id, row.source_table, row.target, 'interrupted',
                               parts=nparts, split=split,
                               segments_done=group.segments_done if nparts else None)
        duration = group.duration if group.duration is not None else \
            time.monotonic() - group.t0[0]
        status = 'copied' if group.copied else 'already_copied'
        self._writer.mark_migrated(row.id, group.rows, group.nbytes, group.t0[1], utc_now(),
                                   duration, self.runner if group.copied else group.copied_by)
        return TableResult(row.id, row.source_table, row.target, status, group.rows,
                           group.nbytes, duration, group.binary, parts=nparts, split=split,
                           segments_done=group.segments_done if nparts else None)

    def _log_error(self, row: ManifestRow, task: CopyTask, exc: MigrationError,
                   error_log: str) -> None:
        command = 'COPY %s.%s TO STDOUT | COPY %s.%s FROM STDIN' % (
            task.source_schema, task.source_table, task.target_schema, task.target_table)
        if task.part:
            command = 'COPY (SELECT ... FROM ONLY %s.%s WHERE %s) TO STDOUT | COPY %s.%s FROM STDIN' % (
                task.source_schema, task.source_table, task.part, task.target_schema,
                task.target_table)
        log_failure(error_log, row, exc, command, task.part, self.source, self.target, self.runner)

    def close(self) -> None:
        if self.manifest is not None:
            self.manifest.close()


@dataclass(eq=False)
class _Group:
    """The jobs of one manifest row: one whole-table job, or one job per part."""

    row: ManifestRow
    parts: List[str] = field(default_factory=lambda: [''])
    left: int = -1
    in_flight: int = 0
    failed: int = 0
    started: bool = False
    announced: bool = False
    finished: bool = False
    skipped: bool = False
    t0: tuple = (0.0, '')
    rows: int = 0
    nbytes: int = 0
    binary: Optional[bool] = None
    copied: bool = False
    copied_by: Optional[str] = None
    duration: Optional[float] = None
    error: Optional[MigrationError] = None
    segments_done: int = 0  # segments settled as copied (by any runner)
    snapshot: Optional[str] = None  # the shared source snapshot of its ctid parts
    holder: Optional[object] = None  # split_plan.SharedSnapshot kept by this runner
    snapshot_ready: bool = False  # snapshot (and holder) taken for this run
    generation: int = 0  # attempts started again after the shared snapshot was gone
    restarts: int = 0

    def __post_init__(self) -> None:
        self.left = len(self.parts)

    def set_parts(self, parts: List[str]) -> None:
        self.parts = list(parts)
        self.left = len(self.parts)

    def adopt(self, plan: Optional[SplitPlan]) -> None:
        """Copy in the plan's segments (or whole when there is no plan)."""
        self.release()
        if plan is None:
            self.set_parts([''])
            return
        self.set_parts(plan.parts)
        self.segments_done = 0
        self.snapshot = plan.snapshot
        self.holder = plan.holder

    def needs_snapshot(self) -> bool:
        return not self.snapshot_ready and self.parts != [''] and not is_key_part(self.parts[0])

    def release(self) -> None:
        """Let go of the table's shared snapshot (its parts are all settled)."""
        if self.holder is not None:
            self.holder.close()
            self.holder = None


@dataclass(eq=False)
class _Job:
    group: _Group
    part: str = ''
    generation: int = 0  # the group's attempt it belongs to (see MigrationRun._restart)
