# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How a large table is cut into segments, stored on the target so that every runner and
every re-run copies the same segments, each exactly once.

A table with a usable key (key_ranges.usable_key) is cut into ranges of its leading key
column, bounds from a sample of the source: an UPDATE never moves a row to another range,
so the ranges may be read at different times on a live source.

A table without one is cut into ctid block ranges, which must all be read under ONE source
snapshot (a row an UPDATE moves to another block would otherwise be read twice or not at
all). The runner that plans such a table exports a snapshot from a source transaction it
keeps open (``SharedSnapshot``) and holds a session-level lock on the target for as long
(``ledger.try_hold_snapshot``): a free lock means that snapshot is gone. A run that finds a
ctid plan whose snapshot is gone and some of whose parts are copied starts the table again
from scratch: in one target transaction it deletes the table's rows on the target and its
ledger rows, and stores the new snapshot in the plan.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import math
from dataclasses import dataclass
from typing import Callable, List, Optional

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - modules report the missing library
    sql = None

from ansible_collections.icds.citus_migration.plugins.module_utils.copy import ledger
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.key_ranges import (
    KeyRange, is_key_part, plan_bounds, ranges_from_bounds, usable_key)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.table_copy import (
    CopyTask, abort_target, source_blocks, split_ranges)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError


def segment_count(size: int, segment_size: int, split_parts: Optional[int] = None) -> int:
    """Segments of a table of ``size`` bytes: ``split_parts`` when given, else about one per
    ``segment_size`` bytes."""
    if split_parts:
        return split_parts
    return max(1, int(math.ceil(size / float(max(1, segment_size)))))


def describe_parts(parts: List[str]) -> str:
    """How a table is split, for people: 'key id, 8 segments' or 'ctid, 4 parts under one
    snapshot'."""
    if parts and is_key_part(parts[0]):
        return 'key %s, %d segments' % (KeyRange.decode(parts[0]).column, len(parts))
    return 'ctid, %d parts under one snapshot' % len(parts)


def new_parts(src_conn, task: CopyTask, segments: int) -> List[str]:
    """A new plan of about ``segments`` parts: key ranges when the table has a usable key,
    else ctid block ranges. Reads the source only."""
    with src_conn.cursor() as scur:
        key = usable_key(scur, task.source_schema, task.source_table)
    nblocks = source_blocks(src_conn, task.source_schema, task.source_table)
    if key is None:
        return split_ranges(nblocks, segments)
    with src_conn.cursor() as scur:
        bounds = plan_bounds(scur, task.source_schema, task.source_table, key[0], segments,
                             nblocks)
    src_conn.rollback()
    return [r.encode() for r in ranges_from_bounds(key[0], bounds)]


class SharedSnapshot:
    """A source snapshot exported for a table's ctid parts, alive while this object is open:
    a source transaction kept open, and the holder lock on a target connection."""

    def __init__(self, src_conn, tgt_conn, snapshot_id: str):
        self.src = src_conn
        self.tgt = tgt_conn
        self.id = snapshot_id

    def close(self) -> None:
        for conn in (self.src, self.tgt):
            try:
                conn.close()  # ends the exporting transaction and frees the session lock
            except Exception:  # pylint: disable=broad-except
                pass


@dataclass
class SplitPlan:
    parts: List[str]
    snapshot: Optional[str] = None  # the ctid parts' shared snapshot
    holder: Optional[SharedSnapshot] = None  # set when this runner keeps that snapshot
    restarted: bool = False  # the old attempt's rows and ledger rows were removed


def _export(connect_source: Callable, connect_target: Callable, source_id: str,
            table: str) -> Optional[SharedSnapshot]:
    """A new exported snapshot with its holder lock, or None when another live runner holds
    the table's snapshot."""
    tgt = connect_target()
    try:
        tgt.autocommit = True
        with tgt.cursor() as cur:
            if not ledger.try_hold_snapshot(cur, source_id, table):
                tgt.close()
                return None
        src = connect_source()
    except BaseException:
        tgt.close()
        raise
    try:
        with src.cursor() as cur:
            cur.execute('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ')
            cur.execute('SELECT pg_export_snapshot()')
            snapshot_id = cur.fetchone()[0]
    except BaseException:
        src.close()
        tgt.close()
        raise
    return SharedSnapshot(src, tgt, snapshot_id)


def plan_split(src_conn, tgt_conn, task: CopyTask, source_id: str, runner: str, segments: int,
               ledger_schema: str = ledger.DEFAULT_LEDGER_SCHEMA, lock_timeout_ms: int = 10000,
               connect_source: Optional[Callable] = None,
               connect_target: Optional[Callable] = None,
               restart_delete: Optional[Callable[[], 'sql.Composable']] = None) -> Optional[SplitPlan]:
    """The segments a large table is copied in: the stored plan if there is one, else a new
    plan of about ``segments`` key ranges (or ctid ranges under a new shared snapshot),
    stored now (first planner wins).

    ``connect_source``/``connect_target`` open the connections of a shared snapshot for a
    table without a usable key; without them a new ctid plan is stored with no snapshot (a
    later call with them gives it one before any part is copied); ``restart_delete`` makes the statement removing the
    table's rows on the target when it must start again (default: all of ONLY the target).

    Returns None when the table must be copied whole: it was already copied whole, or
    another runner holds its lock (copying it whole) beyond ``lock_timeout_ms``.
    Commits the target transaction.
    """
    tcur = tgt_conn.cursor()
    holder = None
    try:
        tcur.execute('SET LOCAL lock_timeout = %s', ('%dms' % lock_timeout_ms,))
        try:
            ledger.lock(tcur, source_id, task.source_table)
        except Exception as exc:
            if getattr(exc, 'pgcode', None) == '55P03':  # lock_not_available
                tgt_conn.rollback()
                return None
            raise
        tcur.execute('SET LOCAL lock_timeout = 0')  # a restart waits for parts in flight
        stored = ledger.split_plan(tcur, ledger_schema, source_id, task.source_table)
        if stored is not None:
            plan = _reuse(tcur, task, source_id, runner, stored, ledger_schema,
                          connect_source, connect_target, restart_delete)
            holder = plan.holder
            tgt_conn.commit()
            return plan
        if ledger.lookup(tcur, ledger_schema, source_id, task.source_table, '') is not None:
            tgt_conn.rollback()
            return None
        parts = new_parts(src_conn, task, segments)
        if is_key_part(parts[0]):
            ledger.record_split_plan(tcur, ledger_schema, source_id, task.source_table, parts,
                                     runner)
            tgt_conn.commit()
            return SplitPlan(parts)
        if connect_source is None or connect_target is None:  # the snapshot comes later
            ledger.record_split_plan(tcur, ledger_schema, source_id, task.source_table, parts,
                                     runner)
            tgt_conn.commit()
            return SplitPlan(parts)
        holder = _new_snapshot(task, source_id, connect_source, connect_target)
        ledger.record_split_plan(tcur, ledger_schema, source_id, task.source_table, parts,
                                 runner, holder.id)
        tgt_conn.commit()
        return SplitPlan(parts, holder.id, holder)
    except BaseException as exc:
        if holder is not None:
            holder.close()
        raise abort_target(tgt_conn, exc)
    finally:
        tcur.close()


def _new_snapshot(task: CopyTask, source_id: str, connect_source: Callable,
                  connect_target: Callable) -> SharedSnapshot:
    holder = _export(connect_source, connect_target, source_id, task.source_table)
    if holder is None:  # cannot happen under the table lock with no plan stored; be exact
        raise MigrationError('%s: another runner holds its source snapshot but stored no '
                             'plan' % task.source_table)
    return holder


def _reuse(tcur, task: CopyTask, source_id: str, runner: str, parts: List[str],
           ledger_schema: str, connect_source: Optional[Callable],
           connect_target: Optional[Callable],
           restart_delete: Optional[Callable[[], 'sql.Composable']]) -> SplitPlan:
    """A stored plan, with a live snapshot for its ctid parts still to copy (under the
    table's lock)."""
    if parts and is_key_part(parts[0]):
        return SplitPlan(parts)
    done = ledger.done_parts(tcur, ledger_schema, source_id, task.source_table)
    dummy, snapshot = ledger.plan_snapshot(tcur, ledger_schema, source_id, task.source_table)
    if all(p in done for p in parts):
        return SplitPlan(parts, snapshot)
    if connect_source is None or connect_target is None:  # dry run: show the plan as stored
        return SplitPlan(parts, snapshot)
    holder = _export(connect_source, connect_target, source_id, task.source_table)
    if holder is None:  # another live runner keeps the snapshot: read under it too
        return SplitPlan(parts, snapshot)
    try:
        # first: waits for any part still being copied under the old snapshot (it reads
        # the plan row FOR SHARE), whose rows the statements below then see and remove
        ledger.set_plan_snapshot(tcur, ledger_schema, source_id, task.source_table, holder.id,
                                 runner)
        done = ledger.done_parts(tcur, ledger_schema, source_id, task.source_table)
        restarted = bool(done)
        if restarted:  # parts read under a snapshot that is gone: start again from scratch
            tcur.execute(restart_delete() if restart_delete is not None else sql.SQL(
                'DELETE FROM ONLY {}.{}').format(sql.Identifier(task.target_schema),
                                                 sql.Identifier(task.target_table)))
            ledger.forget_parts(tcur, ledger_schema, source_id, task.source_table)
    except BaseException:
        holder.close()
        raise
    return SplitPlan(parts, holder.id, holder, restarted)
