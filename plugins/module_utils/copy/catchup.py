# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Drift catch-up in proportion to the change (``migrate --recopy-drifted``, the
``migrate_tables`` module's ``recopy_drifted``, ``compare_tables`` with ``segments``).

For every migrated manifest row: compare its rows segment by segment
(``validate.segment_checksum``), narrow the differing segments to rows, and replace only
those rows on the target (``copy.range_repair``). A table without a usable key is compared
as a whole and, only when it differs, re-copied whole (``recopy.recopy_one``). A dry run
compares and reports without writing anything.

Tables are handled ``parallel`` at once; each worker owns one source and one target
connection (plus the comparison's second thread on the source). The manifest is not changed:
the rows stay migrated.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

try:
    import psycopg2
except ImportError:  # pragma: no cover - modules report the missing library
    psycopg2 = None

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import (
    MigrationError)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import (
    ConnParams, connect)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy import ledger
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.columns import (
    match_columns, read_columns_many)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.range_repair import (
    RepairJob, RepairOutcome, ensure_repair_log, repair, repair_many, repair_rows)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.recopy import (
    RecopyItem, recopy_one)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.runner import RunOptions
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.run_context import (
    ConnectionPair, RunFacts, log_failure)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.table_copy import (
    ByteCounter, CopyFailed, resolve)
from ansible_collections.icds.citus_migration.plugins.module_utils.validate import compare
from ansible_collections.icds.citus_migration.plugins.module_utils.validate.segment_checksum import (
    FAMILY_STRIDE, ROW_BATCH_ROWS, Comparer, Scope, Side, TableDrift, both, bucket_sums,
    differing_buckets, family_rows, fine_buckets, family_sums, hashable_types, multiset_diff, physical_rows,
    planned_bounds, row_hashes, stored_bounds)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.key_ranges import KeyRange, usable_keys
from ansible_collections.icds.citus_migration.plugins.module_utils.validate.changed_rows import (
    ChangeComparer, changes_fine, compare_by_changes, hunted_rows, keyless_changes, source_changes, source_snapshot,
    usable_since)

TEXT_KEY_TYPES = ('text', 'varchar', 'bpchar')


@dataclass
class CatchupResult:
    """One manifest row's catch-up (or, in a dry run, its drift)."""

    id: int
    source_table: str
    target_table: str
    kind: str
    status: str  # equal | drifted (dry run) | repaired | recopied | errored | skipped
    key: Optional[str] = None  # None: no usable key, compared as a whole
    # how: 'changes' (values of the rows changed on the source since the copy, keys of all:
    # validate.changed_rows), 'rows' (every row's values), 'whole' (no usable key)
    compared: Optional[str] = None
    segments: int = 0
    differing_segments: int = 0
    ranges_differing: int = 0
    rows_to_repair: int = 0  # changed + missing + extra rows found (keyless: all source rows)
    rows_deleted: int = 0
    rows_copied: int = 0
    transactions: int = 0
    source_rows: Optional[int] = None
    target_rows: Optional[int] = None
    seconds: float = 0.0
    error: Optional[str] = None
    sqlstate: Optional[str] = None
    ranges: List[str] = field(default_factory=list)  # the differing ranges (first 20)

    @property
    def rows_repaired(self) -> int:
        return self.rows_copied + self.rows_deleted

    def as_dict(self) -> Dict[str, object]:
        out = dict(self.__dict__)
        out['rows_repaired'] = self.rows_repaired
        out['match'] = self.status == 'equal'
        return out


@dataclass
class CatchupItem:
    recopy: RecopyItem
    scope: Optional[Scope] = None
    skip: Optional[str] = None  # why nothing is compared (a partitioned source: no own rows)
    # the repair's column mapping, from the columns read for the plan (None: resolved later)
    resolved: Optional[tuple] = None


KEYLESS_ROWS = 500000  # a keyless table up to this size is repaired row by row, a bigger one re-copied
FAMILY_SCAN_MEMBERS = 64  # slices per target scan (CASE branches tried in order per row)


PENDING_ROWS = 2000  # a table with at most this many differing rows is repaired with others
PENDING_TABLES = 32  # tables per shared repair transaction (the lock covers all of them)
PENDING_BATCH_ROWS = 10000  # differing rows per shared repair transaction


def _pending_full(pending: list) -> bool:
    return (len(pending) >= PENDING_TABLES
            or sum(d.rows_to_repair for _i, _r, d in pending) >= PENDING_BATCH_ROWS - PENDING_ROWS)


def _totals(sums: Dict[object, tuple]) -> tuple:
    return (sum(n for n, _s in sums.values()), sum(s for _n, s in sums.values()))


def family_units(items: Sequence[CatchupItem]) -> List[List[CatchupItem]]:
    """Items grouped for one target scan: the slices of one target table (drop-child children
    and the parent's own rows) that compare the same columns, at most FAMILY_SCAN_MEMBERS at
    a time; every other item alone. In the order of their first item."""
    units: List[List[CatchupItem]] = []
    open_units: Dict[tuple, List[CatchupItem]] = {}
    for item in items:
        scope = item.scope
        if scope is None or item.recopy.error or item.skip or not scope.predicate:
            units.append([item])
            continue
        key = (scope.target_table, scope.target_only, tuple(scope.columns), scope.hash_mode)
        unit = open_units.get(key)
        if unit is None or len(unit) >= FAMILY_SCAN_MEMBERS:
            unit = open_units[key] = []
            units.append(unit)
        unit.append(item)
    return units


def same_collation(src_conn, tgt_conn) -> bool:
    """Do both databases sort text alike (so key ranges hold the same rows on both)?"""
    values = []
    for conn in (src_conn, tgt_conn):
        with conn.cursor() as cur:
            cur.execute('SELECT datcollate, datctype FROM pg_catalog.pg_database '
                        'WHERE datname = current_database()')
            values.append(cur.fetchone())
        conn.rollback()
    return values[0] == values[1]


def plan_catchup(src_conn, tgt_conn, items: Sequence[RecopyItem], options: RunOptions
                 ) -> List[CatchupItem]:
    """Each re-copy item's scope: its compared columns and usable key (from the source)."""
    names = [i.row.source_table for i in items]
    with src_conn.cursor() as cur:
        src_cols = read_columns_many(cur, options.source_schema, names)
    src_conn.rollback()
    with tgt_conn.cursor() as cur:
        tgt_cols = read_columns_many(cur, options.target_schema, [i.row.target for i in items])
    tgt_conn.rollback()
    text_keys_ok = same_collation(src_conn, tgt_conn)
    record_hash = all(server_version(c) >= 140000 for c in (src_conn, tgt_conn))
    planned = [i for i in items if not i.error]
    with src_conn.cursor() as cur:
        keys = usable_keys(cur, options.source_schema, [i.row.source_table for i in planned])
    src_conn.rollback()
    hashable: set = set()
    if record_hash:
        with src_conn.cursor() as cur:
            hashable = hashable_types(cur, [c.type_name for cols in src_cols.values() for c in cols])
        src_conn.rollback()
    out = []
    for item in items:
        row = item.row
        if item.error:
            out.append(CatchupItem(item))
            continue
        scols, tcols = src_cols.get(row.source_table), tgt_cols.get(row.target)
        if scols is None or tcols is None:
            item.error = ("source table '%s' does not exist" % row.source_table if scols is None
                          else "target table '%s' does not exist" % row.target)
            out.append(CatchupItem(item))
            continue
        if scols[0].relkind == 'p':
            out.append(CatchupItem(item, skip='partitioned on the source: its partitions '
                                              'hold its rows and are compared as their own rows'))
            continue
        columns = compare._common_columns([scols], tcols)
        scope = Scope(row.source_table, row.target, item.kind, item.only, item.predicate, columns)
        try:
            resolved = (match_columns(row.source_table, row.target, scols, tcols), False)
        except MigrationError:
            resolved = None  # the repair resolves it again and reports the error
        key = keys.get(row.source_table)
        if key is not None and set(key.columns) <= set(columns) and (
                key.type_name not in TEXT_KEY_TYPES or text_keys_ok):
            scope.key, scope.key_type = key.column, key.type_name
            scope.key_columns, scope.key_types = key.columns, key.types
        src_types = {c.name: c.type_name for c in scols}
        tgt_types = {c.name: c.type_name for c in tcols}
        if record_hash and all(src_types[c] == tgt_types[c] and src_types[c] in hashable for c in columns):
            scope.hash_mode = 'record'
        out.append(CatchupItem(item, scope, resolved=resolved))
    return out


def server_version(conn) -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('server_version_num')::int")
        version = cur.fetchone()[0]
    conn.rollback()
    return version


class _Conns(threading.local):
    pair = None  # the worker thread's ConnectionPair (repair, re-copy, target side)
    side = None  # its second source connection (the comparison's source side)


class Catchup:
    """Compare and repair planned items; ``run`` returns one CatchupResult per item."""

    def __init__(self, source: ConnParams, target: ConnParams, options: RunOptions,
                 facts: RunFacts, runner: str, dry_run: bool = False,
                 on_result: Optional[Callable[[CatchupResult], None]] = None,
                 error_log: str = ''):
        self.source, self.target = source, target
        self.options = options
        self.source_id = facts.source_id
        self.runner = runner
        self.error_log = error_log
        self.dry_run = dry_run
        self.on_result = on_result
        self._local = _Conns()
        self._all: List[object] = []
        self._lock = threading.Lock()
        self.estimates: Dict[str, tuple] = facts.estimates
        self.plans: Dict[str, List[str]] = {}
        self.target_citus = facts.target_is_citus
        self.citus_tables: set = set()  # target tables Citus distributes (or replicates)
        # per source table, the copy snapshot xmin its rows are compared against (only the
        # rows changed since are compared by value: validate.changed_rows); absent: all rows
        self.since: Dict[str, int] = {}
        # the source's snapshot xmin before any comparison of this run (see _advance)
        self.horizon: Optional[int] = None
        self.ledger_has_xmin = False  # the ledger records copy snapshots (read_split_plans)
        self.warnings: List[str] = []
        self.by_changes = not options.compare_all_rows
        self._log_ready = False  # the repair log (and ledger) exist: created before the first write

    def run(self, items: Sequence[CatchupItem]) -> List[CatchupResult]:
        """Every item's result, in the order of ``items``."""
        units = family_units(items)
        workers = max(1, min(self.options.parallel, len(units) or 1))
        done: Dict[int, CatchupResult] = {}
        # the biggest first: the last unit to start then is a small one, so the workers
        # finish together instead of one scanning the biggest table alone at the end
        queue = iter(sorted(units, key=self._unit_bytes, reverse=True))

        def work() -> List[CatchupResult]:
            out: List[CatchupResult] = []
            pending: list = []  # (item, result, drift) of small tables repaired together
            try:
                while True:
                    with self._lock:
                        unit = next(queue, None)
                    if unit is None:
                        break
                    out.extend(self.unit(unit, pending))
                    if _pending_full(pending):
                        self._repair_pending(pending)
                        pending = []
            finally:
                if pending:
                    self._repair_pending(pending)
            return out

        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for fut in [pool.submit(work) for dummy in range(workers)]:
                    for res in fut.result():
                        done[res.id] = res
            if not self.dry_run:
                self._advance(done.values())
        finally:
            for conn in self._all:
                if isinstance(conn, ConnectionPair):
                    conn.reset()
                elif not conn.closed:
                    conn.close()
        return [done[i.recopy.row.id] for i in items if i.recopy.row.id in done]

    def _advance(self, results) -> None:
        """Record, for every table now equal to the source, the xmin of a source snapshot
        taken before the run compared anything (``horizon``, read by read_split_plans): every
        source row older than that was compared (or is unchanged since the copy) and is on the
        target, so the next catch-up compares only what changed after it
        (validate.changed_rows). A table this run compared by every row's values (no
        recorded snapshot yet) gets one too, so a ledger from an earlier version stops
        costing full comparisons.

        Only by a catch-up that repaired something: one that found nothing writes nothing."""
        results = list(results)
        if not any(r.status in ('repaired', 'recopied') for r in results):
            return
        horizons = {r.source_table: self.horizon for r in results if r.status in ('equal', 'repaired')}
        if not horizons or self.horizon is None or not self.ledger_has_xmin:
            return
        try:
            conn = connect(self.target, 'target')
            try:
                with conn.cursor() as cur:
                    ledger.advance_source_xmin(cur, self.options.ledger_schema, self.source_id, horizons)
                conn.commit()
            finally:
                conn.close()
        except (MigrationError, psycopg2.Error) as exc:  # the repairs stand; the next catch-up compares more
            self.warnings.append('the catch-up horizon of %d tables was not recorded (the next catch-up '
                                 'compares their changes since their copy again): %s'
                                 % (len(horizons), ' '.join(str(exc).split())))

    def _unit_bytes(self, unit: Sequence[CatchupItem]) -> int:
        return sum(self.estimates.get(i.recopy.row.source_table, (0, 0))[1] for i in unit)

    def unit(self, items: Sequence[CatchupItem], pending: Optional[list] = None) -> List[CatchupResult]:
        """One table, or the slices of one target table compared with one target scan.
        ``pending``: a table with few differing rows leaves its repair there (the worker
        repairs several such tables in one target transaction)."""
        if len(items) == 1:
            return [self.one(items[0], deferred=pending, pending_rows=PENDING_ROWS)]
        try:
            firsts = self._family_first_pass(items)
        except MigrationError:
            self._drop_connections()
            firsts = [None] * len(items)  # each slice compared on its own (and its error reported)
        deferred: list = []  # (item, result, drift) of slices to repair together
        results = [self.one(item, first, deferred) for item, first in zip(items, firsts)]
        if deferred:
            self._repair_together(deferred)
        return results

    def _repair_together(self, deferred: list) -> None:
        """The differing rows of several slices of one target table, batched into shared
        target transactions (one lock and commit for many slices with few changes each)."""
        started = time.monotonic()
        try:
            outcomes, seconds = self._repair_jobs(deferred)
        except MigrationError as exc:
            self._drop_connections()
            outcomes, seconds = [exc] * len(deferred), time.monotonic() - started
        self._settle_repairs(deferred, outcomes, seconds)

    def _settle_repairs(self, entries: list, outcomes: list, seconds: float) -> None:
        """Record each entry's repair outcome (or failure), its share of ``seconds``, and
        report it."""
        share = seconds / len(entries)
        for (item, result, _drift), outcome in zip(entries, outcomes):
            if isinstance(outcome, MigrationError):
                self._failed(item, result, outcome)
            else:
                self._record_repair(result, outcome)
            result.seconds = round(result.seconds + share, 3)
            if self.on_result is not None:
                self.on_result(result)

    def _repair_pending(self, pending: list) -> None:
        """The differing rows of several small tables of one worker: one target transaction
        per group of the same target settings (one lock statement, one commit). When such a
        shared transaction fails, each table is repaired again on its own, so a table's
        failure is reported for it alone."""
        groups: Dict[tuple, list] = {}
        for entry in pending:
            groups.setdefault(tuple(entry[0].recopy.target_settings), []).append(entry)
        for group in groups.values():
            if len(group) == 1:
                self._repair_together(group)
                continue
            try:
                outcomes = self._repair_jobs(group)
            except MigrationError:
                self._drop_connections()
                for entry in group:
                    self._repair_together([entry])
                continue
            self._settle_repairs(group, *outcomes)

    def _repair_jobs(self, deferred: list) -> tuple:
        """(outcomes, seconds) of repairing the deferred entries with ``repair_many``."""
        started = time.monotonic()
        src, _src2, tgt = self._connections()
        jobs = []
        for item, _result, drift in deferred:
            task = item.recopy.task(self.options)
            jobs.append(RepairJob(task, item.scope, (item.resolved or resolve(src, tgt, task))[0], drift.ranges))
        outcomes = repair_many(src, tgt, jobs, self.options.ledger_schema, self.source_id,
                               self.runner, ByteCounter())
        return outcomes, time.monotonic() - started

    def _rows_repairable(self, scope: Scope, drift: TableDrift) -> bool:
        """A keyless table is repaired row by row (matched by row hash) when its target is a
        plain table (ctid identifies a row; not on a Citus distributed or reference table)
        and it is small enough to read its row hashes; else it is copied again whole."""
        return (scope.target_table not in self.citus_tables
                and max(drift.source_rows, drift.target_rows) <= KEYLESS_ROWS)

    def _keyless_by_changes(self, scope: Scope) -> bool:
        """A keyless table compared by changes: its copy snapshot is known and its target rows
        can be repaired row by row (a plain table, small enough: see _rows_repairable)."""
        rows = self.estimates.get(scope.source_table, (0, 0))[0]
        return (scope.source_table in self.since and scope.target_table not in self.citus_tables
                and rows <= KEYLESS_ROWS)

    def _bounds(self, side: Side, scope: Scope) -> List[str]:
        """The scope's segment bounds; sets its sub-buckets per segment for its rows."""
        est_rows, nbytes = self.estimates.get(scope.source_table, (0, 0))
        bounds = stored_bounds(self.plans.get(scope.source_table), scope.key)
        if bounds is None:
            bounds = planned_bounds(side, scope, est_rows, nbytes // 8192)
        scope.fine = fine_buckets(est_rows, len(bounds) + 1)
        return bounds

    def _changes_buckets(self, scope: Scope) -> None:
        """Sets the buckets of a scope compared by changes: one segment of buckets of about
        CHANGES_ROWS rows by key hash alone. That comparison finds rows by key hash, not by
        key range, and ``width_bucket`` on a text key costs a fifth of such a scan (its
        collation's comparisons, several per row) on both sides; no bounds to plan either."""
        scope.fine = changes_fine(self.estimates.get(scope.source_table, (0, 0))[0])

    def _family_first_pass(self, items: Sequence[CatchupItem]) -> list:
        """(bounds, (source sums, target sums), prefetched rows or None) of each slice: the
        sources one by one in a thread while the target table is scanned once for all of
        them; then, when the differing slices are small enough, their rows read the same way
        (one more target scan) for the row-level diff."""
        src, src2, tgt = self._connections()
        side_src = Side(src2, self.options.source_schema, 'source')
        side_tgt = Side(tgt, self.options.target_schema, 'target', self.target_citus,
                        items[0].recopy.target_settings)
        scopes = [i.scope for i in items]
        for sc in scopes:
            sc.rows = self.estimates.get(sc.source_table, (0, 0))[0]
        by_changes = all(sc.key and sc.source_table in self.since for sc in scopes) \
            and len({sc.key_columns for sc in scopes}) == 1
        if by_changes:
            for sc in scopes:
                self._changes_buckets(sc)
            return self._family_by_changes(side_src, side_tgt, scopes)
        bounds = [self._bounds(side_src, sc) if sc.key else [] for sc in scopes]
        sources, targets = both(
            lambda: [bucket_sums(side_src, sc, 'source', b, fine=bool(sc.key)) for sc, b in zip(scopes, bounds)],
            lambda: family_sums(side_tgt, scopes, bounds))
        firsts = [[b, (sm, tm), None] for b, sm, tm in zip(bounds, sources, targets)]
        wanted = {i: differing_buckets(sm, tm) for i, (sm, tm) in enumerate(zip(sources, targets))
                  if scopes[i].key and sm != tm}
        rows = sum(max(sources[i].get(b, (0, 0))[0], targets[i].get(b, (0, 0))[0])
                   for i, buckets in wanted.items() for b in buckets)
        same_key = len({scopes[i].key_columns for i in wanted}) == 1
        if wanted and same_key and rows <= ROW_BATCH_ROWS:
            members = sorted(wanted)
            src_rows, tgt_rows = both(
                lambda: [row_hashes(side_src, scopes[i], 'source', KeyRange(scopes[i].key), bounds[i],
                                    wanted[i], True) for i in members],
                lambda: family_rows(side_tgt, scopes, bounds,
                                    [i * FAMILY_STRIDE + b for i in members for b in wanted[i]]))
            for i, srows in zip(members, src_rows):
                firsts[i][2] = (srows, tgt_rows[i])
        return firsts

    def _family_by_changes(self, side_src: Side, side_tgt: Side, scopes: Sequence[Scope]) -> List[TableDrift]:
        """The slices of one target table compared by changes (validate.changed_rows): the
        sources one by one in a thread while the target table is scanned once (key hashes);
        then, with one more target scan, the target rows that settle the flagged buckets
        (validate.changed_rows.hunted_rows)."""
        sources, targets = both(
            lambda: [source_changes(side_src, sc, self.since[sc.source_table]) for sc in scopes],
            lambda: family_sums(side_tgt, scopes, [[] for dummy in scopes], value='key'))
        comparers = [ChangeComparer(side_src, side_tgt, sc) for sc in scopes]
        for comparer, sums, tsums in zip(comparers, sources, targets):
            comparer.flagged(sums, tsums)
        wanted = [c.wanted() for c in comparers]
        needed = any(hashes or whole for hashes, whole in wanted)
        rows = hunted_rows(side_tgt, scopes, wanted) if needed else [{} for dummy in scopes]
        return [c.settle(r) for c, r in zip(comparers, rows)]

    def _connections(self):
        """(source, second source, target) of this worker thread, (re)opened when needed."""
        local = self._local
        if local.pair is None:
            local.pair = ConnectionPair(self.source, self.target)
            with self._lock:
                self._all.append(local.pair)
        src, tgt = local.pair.ensure()
        if local.side is None or local.side.closed:
            local.side = connect(self.source, 'source')
            local.side.set_session(readonly=True)
            with self._lock:
                self._all.append(local.side)
        return src, local.side, tgt

    def _drop_connections(self) -> None:
        if self._local.pair is not None:
            self._local.pair.reset()
        if self._local.side is not None and not self._local.side.closed:
            self._local.side.close()

    def one(self, item: CatchupItem, first=None, deferred: Optional[list] = None,
            pending_rows: Optional[int] = None) -> CatchupResult:
        """Compare one row and repair it (``deferred``: leave its range repair to the caller,
        which repairs several slices together and then reports them)."""
        row = item.recopy.row
        result = CatchupResult(row.id, row.source_table, row.target, item.recopy.kind, 'equal')
        started = time.monotonic()
        waiting = False
        try:
            if item.recopy.error:
                result.status, result.error = 'errored', item.recopy.error
            elif item.skip:
                result.status, result.error = 'skipped', item.skip
            else:
                waiting = self._catch_up(item, result, first, deferred, pending_rows)
        except MigrationError as exc:
            self._drop_connections()  # a connection may be broken or mid-transaction
            self._failed(item, result, exc)
        result.seconds = round(time.monotonic() - started, 3)
        if self.on_result is not None and not waiting:
            self.on_result(result)
        return result

    def _failed(self, item: CatchupItem, result: CatchupResult, exc: MigrationError) -> None:
        row = item.recopy.row
        result.status, result.error = 'errored', str(exc)
        result.sqlstate = getattr(exc, 'sqlstate', None)
        if self.error_log:
            log_failure(self.error_log, row, exc, 'catch-up: compare and repair %s -> %s' % (
                row.source_table, row.target), None, self.source, self.target, self.runner)

    def _catch_up(self, item: CatchupItem, result: CatchupResult, first=None,
                  deferred: Optional[list] = None, pending_rows: Optional[int] = None) -> bool:
        """Compare, then repair; True when the repair was left to the caller (``deferred``;
        ``pending_rows``: only when at most that many rows differ)."""
        src, src2, tgt = self._connections()
        scope = item.scope
        result.key = scope.key
        comparer = Comparer(Side(src2, self.options.source_schema, 'source'),
                            Side(tgt, self.options.target_schema, 'target', self.target_citus,
                                 item.recopy.target_settings),
                            scope)
        result.compared = 'whole' if scope.key is None else 'rows'
        keyless = None  # (rows to copy, rows to delete) of a keyless table compared by changes
        if scope.key is None and first is None and self._keyless_by_changes(scope):
            result.compared = 'changes'
            est_rows = self.estimates.get(scope.source_table, (0, 0))[0]
            drift, *keyless = keyless_changes(comparer.src, comparer.tgt, scope, self.since[scope.source_table],
                                              fine_buckets(est_rows, 1))
        elif scope.key is None:
            drift = comparer.whole(first[1] if first else None)
        elif isinstance(first, TableDrift):  # compared by changes with its family
            drift, result.compared = first, 'changes'
        elif first is not None:
            comparer.prefetched = first[2]
            drift = comparer.segments(first[0], first[1])
        elif scope.source_table in self.since:
            result.compared = 'changes'
            self._changes_buckets(scope)
            drift = compare_by_changes(comparer.src, comparer.tgt, scope, self.since[scope.source_table], both)
        else:
            drift = comparer.segments(self._bounds(comparer.src, scope))
        self._record_drift(result, drift)
        if keyless is not None:
            result.rows_to_repair = len(keyless[0]) + len(keyless[1])
        if not drift.differs:
            return False
        if self.dry_run:
            result.status = 'drifted'
            return False
        with self._lock:
            if not self._log_ready:
                ensure_repair_log(tgt, self.options.ledger_schema)
                self._log_ready = True
        if scope.key is None and not self._rows_repairable(scope, drift):
            done = recopy_one(src, tgt, item.recopy, self.options, self.source_id, self.runner)
            result.status = 'recopied'
            result.rows_copied = done.rows or 0
            result.rows_deleted = drift.target_rows
            result.transactions = 1
            return False
        if deferred is not None and scope.key is not None and (
                pending_rows is None or drift.rows_to_repair <= pending_rows):
            deferred.append((item, result, drift))
            return True
        task = item.recopy.task(self.options)
        mapping, _partitioned = item.resolved or resolve(src, tgt, task)
        try:
            if scope.key is None:
                copy, delete = keyless or multiset_diff(*both(
                    lambda: physical_rows(comparer.src, scope, 'source'),
                    lambda: physical_rows(comparer.tgt, scope, 'target')))
                result.rows_to_repair = len(copy) + len(delete)
                outcome = repair_rows(src, tgt, task, scope, mapping, copy, delete,
                                      self.options.ledger_schema, self.source_id, self.runner)
            else:
                outcome = repair(src, tgt, task, scope, mapping, drift.ranges,
                                 self.options.ledger_schema, self.source_id, self.runner, ByteCounter())
        except CopyFailed as exc:
            if exc.sqlstate == '42501' and exc.side == 'target':
                exc.args = (str(exc).replace('(the target role needs INSERT on it)',
                                             '(repairing needs SELECT, INSERT, DELETE and LOCK on it)'),)
            raise
        self._record_repair(result, outcome)
        return False

    @staticmethod
    def _record_drift(result: CatchupResult, drift: TableDrift) -> None:
        result.segments = drift.segments
        result.differing_segments = drift.differing_segments
        result.source_rows, result.target_rows = drift.source_rows, drift.target_rows
        if drift.whole is not None:
            result.ranges_differing = int(drift.whole)
            result.rows_to_repair = drift.source_rows if drift.whole else 0
        else:
            result.ranges_differing = len(drift.ranges)
            result.rows_to_repair = drift.rows_to_repair
            result.ranges = [r.range.describe() for r in drift.ranges[:20]]

    @staticmethod
    def _record_repair(result: CatchupResult, outcome: RepairOutcome) -> None:
        result.status = 'repaired'
        result.rows_deleted = outcome.rows_deleted
        result.rows_copied = outcome.rows_copied
        result.transactions = outcome.transactions


def read_split_plans(catchup: Catchup, src_conn, tgt_conn, items: Sequence[CatchupItem]) -> None:
    """The stored split plans of the compared tables (their key ranges are the segments),
    the copy snapshots their changes are told by, and which target tables Citus distributes."""
    names = [i.recopy.row.source_table for i in items if i.scope is not None]
    with tgt_conn.cursor() as cur:
        if names and ledger.split_plan_table_exists(cur, catchup.options.ledger_schema):
            catchup.plans = ledger.split_plans(cur, catchup.options.ledger_schema,
                                               catchup.source_id, names)
        catchup.ledger_has_xmin = ledger.ledger_exists(cur, catchup.options.ledger_schema) \
            and ledger.has_source_xmin(cur, catchup.options.ledger_schema)
        if catchup.by_changes and catchup.ledger_has_xmin:
            # one source snapshot: its xmax orders the copies' xmins, its xmin is the horizon
            # this run's comparisons start from (recorded by _advance)
            horizon, next_xid = source_snapshot(src_conn)
            xmins = ledger.source_xmins(cur, catchup.options.ledger_schema, catchup.source_id, names) if names else {}
            catchup.since = {t: x for t, x in xmins.items() if usable_since(x, next_xid)}
            if not catchup.dry_run:
                catchup.horizon = horizon
        if catchup.target_citus:
            cur.execute('SELECT c.relname FROM pg_dist_partition p JOIN pg_catalog.pg_class c ON c.oid = p.logicalrelid '
                        'JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s',
                        (catchup.options.target_schema,))
            catchup.citus_tables = {r[0] for r in cur.fetchall()}
    tgt_conn.rollback()
