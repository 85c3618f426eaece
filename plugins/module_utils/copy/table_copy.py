# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copy one table: ``COPY ... TO STDOUT`` on the source streamed into ``COPY ... FROM STDIN``.

The bytes flow through an in-kernel pipe between a reader thread (source) and the target
COPY: no shell, no temporary file, no rewriting of the data. The target transaction holds
the table's advisory lock, the data and the ledger row; it commits only when the source
COPY finished cleanly and both sides agree on the row count.

A part of a large table (``CopyTask.part``) is a key range (``key:[...]``, see
key_ranges) copied with ``COPY (SELECT ... FROM ONLY t WHERE <range>) TO STDOUT``, or a
ctid block range (see ``split_ranges``)
``ctid:(a,0)-(b,0)``, copied with ``COPY (SELECT ... FROM ONLY t WHERE ctid >= '(a,0)' AND
ctid < '(b,0)') TO STDOUT``; PostgreSQL 14+ runs that as a TID range scan that reads only
those blocks. The last range is open-ended (``ctid:(a,0)-``) so rows in blocks added after
planning are still copied. Every ctid part of a table is read under one exported source
snapshot (``CopyTask.snapshot``): an UPDATE moves a row to another block, so parts read at
different times would read it twice or not at all.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fcntl
import os
import signal
import threading
import time
from dataclasses import dataclass
import re
from typing import List, Optional, Sequence, Tuple

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - modules report the missing library
    sql = None

from ansible_collections.icds.citus_migration.plugins.module_utils.copy import ledger
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.key_ranges import (
    KeyRange, is_key_part)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.columns import (
    ColumnMapping, match_columns, read_columns)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError

PART_PREFIX = 'ctid:'
_PART_RE = re.compile(r'^ctid:\((\d+),0\)-(?:\((\d+),0\))?$')
PIPE_SIZE = 1 << 20
CHUNK = 1 << 18
F_SETPIPE_SZ = getattr(fcntl, 'F_SETPIPE_SZ', 1031)
FAULT_ENV = 'ICDS_MIGRATION_FAULT'  # test-only: crash at a named point (see _fault)


class CopyFailed(MigrationError):
    """A table copy failed; carries the PostgreSQL diagnostics when there are any."""

    def __init__(self, message: str, sqlstate: Optional[str] = None,
                 detail: Optional[str] = None, context: Optional[str] = None,
                 hint: Optional[str] = None, side: Optional[str] = None):
        super().__init__(message)
        self.sqlstate = sqlstate
        self.detail = detail
        self.context = context
        self.hint = hint
        self.side = side


@dataclass
class CopyTask:
    source_table: str
    target_table: str
    source_schema: str = 'public'
    target_schema: str = 'public'
    part: str = ''
    # the exported source snapshot every ctid part of the table is read under (None: none)
    snapshot: Optional[str] = None
    # extra settings for the target transaction only (SET LOCAL), e.g. Citus connection use
    target_settings: Tuple[Tuple[str, str], ...] = ()


@dataclass
class CopyOutcome:
    status: str  # 'copied' | 'already_copied' | 'busy' | 'split' (a split plan exists)
    rows: Optional[int] = None
    nbytes: Optional[int] = None
    duration_s: Optional[float] = None
    binary: Optional[bool] = None
    copied_by: Optional[str] = None
    copied_at: Optional[str] = None


class ByteCounter:
    """Bytes that went through the current copy; read by the progress display."""

    def __init__(self) -> None:
        self.value = 0


class _CountingReader:
    """File-like end of the pipe handed to the target COPY; counts what passes."""

    def __init__(self, fd: int, counter: ByteCounter):
        self._file = os.fdopen(fd, 'rb', buffering=0)
        self._counter = counter

    def read(self, size: int = CHUNK) -> bytes:
        data = self._file.read(size)
        if data:
            self._counter.value += len(data)
        return data

    readline = read

    def close(self) -> None:
        self._file.close()


def split_ranges(nblocks: int, parts: int) -> List[str]:
    """``parts`` ctid block ranges covering blocks 0..nblocks; the last one open-ended."""
    parts = max(1, min(parts, max(1, nblocks)))
    bounds = [nblocks * i // parts for i in range(parts)]
    out = ['%s(%d,0)-(%d,0)' % (PART_PREFIX, a, b) for a, b in zip(bounds, bounds[1:])]
    out.append('%s(%d,0)-' % (PART_PREFIX, bounds[-1]))
    return out


def part_range(part: str) -> Tuple[int, Optional[int]]:
    """(first block, end block or None when open-ended) of a part made by split_ranges."""
    match = _PART_RE.match(part)
    if not match:
        raise MigrationError('not a ctid range part: %r' % part)
    return int(match.group(1)), (int(match.group(2)) if match.group(2) is not None else None)


def part_predicate(part: str) -> 'sql.Composable':
    """The WHERE condition of a part: a key range, or a ctid block range."""
    if is_key_part(part):
        return KeyRange.decode(part).predicate()
    first, end = part_range(part)
    where = sql.SQL('ctid >= {}::tid').format(sql.Literal('(%d,0)' % first))
    if end is not None:
        where = sql.SQL('{} AND ctid < {}::tid').format(where, sql.Literal('(%d,0)' % end))
    return where


def copy_statements(task: CopyTask, mapping: ColumnMapping, partitioned: bool = False):
    """(COPY TO on the source, COPY FROM on the target). A partitioned source table holds no
    rows itself (its partitions are copied as their own manifest rows): ``partitioned``
    copies ``FROM ONLY`` it, which is empty, as the old tool's pg_dump did."""
    cols = sql.SQL(', ').join(sql.Identifier(c) for c in mapping.columns)
    fmt = sql.SQL('(FORMAT binary)' if mapping.binary else '(FORMAT text)')
    if partitioned and not task.part:
        out = sql.SQL('COPY (SELECT {} FROM ONLY {}.{}) TO STDOUT {}').format(
            cols, sql.Identifier(task.source_schema), sql.Identifier(task.source_table), fmt)
    elif task.part:
        where = part_predicate(task.part)
        out = sql.SQL('COPY (SELECT {} FROM ONLY {}.{} WHERE {}) TO STDOUT {}').format(
            cols, sql.Identifier(task.source_schema), sql.Identifier(task.source_table),
            where, fmt)
    else:
        out = sql.SQL('COPY {}.{} ({}) TO STDOUT {}').format(
            sql.Identifier(task.source_schema), sql.Identifier(task.source_table), cols, fmt)
    into = sql.SQL('COPY {}.{} ({}) FROM STDIN {}').format(
        sql.Identifier(task.target_schema), sql.Identifier(task.target_table), cols, fmt)
    return out, into


def _fault(point: str) -> None:
    """Test-only crash hook: ICDS_MIGRATION_FAULT=<point> kills this process there."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def diagnose(exc: BaseException, side: str) -> CopyFailed:
    """Turn a psycopg2 error into CopyFailed with SQLSTATE, detail and context."""
    if isinstance(exc, CopyFailed):
        return exc
    diag = getattr(exc, 'diag', None)
    primary = getattr(diag, 'message_primary', None) if diag else None
    message = primary or ' '.join(str(exc).split()) or exc.__class__.__name__
    message += _privilege_hint(getattr(exc, 'pgcode', None), message, side)
    return CopyFailed('%s: %s' % (side, message), getattr(exc, 'pgcode', None),
                      getattr(diag, 'message_detail', None) if diag else None,
                      getattr(diag, 'context', None) if diag else None,
                      getattr(diag, 'message_hint', None) if diag else None, side)


# PostgreSQL's "permission denied for <object>" does not say which privilege: the copy
# needs exactly one per object kind and side (docs/copy-engine.md, "Least privilege").
_NEEDED = {('source', 'table'): 'SELECT', ('target', 'table'): 'INSERT',
           ('source', 'schema'): 'USAGE', ('target', 'schema'): 'USAGE'}


def _privilege_hint(sqlstate: Optional[str], message: str, side: str) -> str:
    if sqlstate != '42501' or not message.startswith('permission denied for '):
        return ''
    kind = message[len('permission denied for '):].split(' ', 1)[0]
    needed = _NEEDED.get((side, kind))
    return ' (the %s role needs %s on it)' % (side, needed) if needed else ''


def partitioned_tables(cur, schema: str, tables: List[str]) -> set:
    """Which of these tables are declaratively partitioned (one query)."""
    cur.execute("SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s) "
                "AND c.relkind = 'p'", (schema, list(tables)))
    return {r[0] for r in cur.fetchall()}


def resolve(src_conn, tgt_conn, task: CopyTask) -> Tuple[ColumnMapping, bool]:
    """Column mapping of the task, and whether the source table is partitioned."""
    with src_conn.cursor() as scur, tgt_conn.cursor() as tcur:
        mapping = match_columns(task.source_table, task.target_table,
                                read_columns(scur, task.source_schema, task.source_table),
                                read_columns(tcur, task.target_schema, task.target_table))
        scur.execute("SELECT relkind = 'p' FROM pg_catalog.pg_class WHERE oid = to_regclass(%s)",
                     (sql.SQL('{}.{}').format(sql.Identifier(task.source_schema),
                                              sql.Identifier(task.source_table)).as_string(scur),))
        rec = scur.fetchone()
    src_conn.rollback()
    tgt_conn.rollback()
    return mapping, bool(rec and rec[0])


def copy_table(src_conn, tgt_conn, task: CopyTask, source_id: str, runner: str,
               ledger_schema: str = ledger.DEFAULT_LEDGER_SCHEMA, wait_for_lock: bool = False,
               counter: Optional[ByteCounter] = None,
               resolved: Optional[Tuple[ColumnMapping, bool]] = None) -> CopyOutcome:
    """Copy one table (or one part of it) exactly once. Raises CopyFailed; both
    transactions end rolled back. A whole-table copy returns status 'split' without
    copying when the table has a split plan (it is copied in parts)."""
    counter = counter or ByteCounter()
    started = time.monotonic()
    mapping, partitioned = resolved or resolve(src_conn, tgt_conn, task)
    copy_out, copy_in = copy_statements(task, mapping, partitioned)
    tcur = tgt_conn.cursor()
    try:
        configure_target_transaction(tcur, task)
        if wait_for_lock:
            ledger.lock(tcur, source_id, task.source_table, task.part)
        elif not ledger.try_lock(tcur, source_id, task.source_table, task.part):
            tgt_conn.rollback()
            return CopyOutcome('busy')
        done = ledger.lookup(tcur, ledger_schema, source_id, task.source_table, task.part)
        if done is not None:
            tgt_conn.rollback()
            return CopyOutcome('already_copied', done.rows_copied, done.bytes_copied,
                               copied_by=done.runner, copied_at=done.copied_at)
        if not task.part and ledger.split_plan(tcur, ledger_schema, source_id,
                                               task.source_table) is not None:
            tgt_conn.rollback()
            return CopyOutcome('split')
        if task.snapshot is not None:
            read_under_shared_snapshot(src_conn, tcur, task, source_id, ledger_schema)
        elif task.part and not is_key_part(task.part):
            raise CopyFailed('%s: a ctid part is only read under the snapshot its table\'s '
                             'parts share, and this one has none' % task.source_table)
        rows = copy_and_record(src_conn, tcur, task, mapping, (copy_out, copy_in), counter,
                               ledger_schema, source_id, runner)
        _fault('before_target_commit')
        tgt_conn.commit()
    except BaseException as exc:
        raise abort_target(tgt_conn, exc)
    finally:
        tcur.close()
    _fault('after_target_commit')
    return CopyOutcome('copied', rows, counter.value, time.monotonic() - started, mapping.binary)


class SnapshotGone(CopyFailed):
    """The source snapshot a table's ctid parts share can no longer be imported."""


def read_under_shared_snapshot(src_conn, tcur, task: CopyTask, source_id: str,
                               ledger_schema: str) -> None:
    """Start the source transaction of a ctid part under the table's shared snapshot.

    The plan row is read FOR SHARE in the target transaction: a restart of the table
    (a new snapshot, see split_plan) waits until this part is committed or rolled back,
    and a part planned under an older snapshot is refused, so parts read under
    different snapshots never end up together on the target."""
    dummy, current = ledger.plan_snapshot(tcur, ledger_schema, source_id, task.source_table,
                                          for_share=True)
    if current != task.snapshot:
        raise SnapshotGone('%s: the table was restarted under another source snapshot; '
                           'run again to copy it' % task.source_table)
    src_conn.rollback()
    with src_conn.cursor() as scur:
        try:
            scur.execute('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ')
            scur.execute('SET TRANSACTION SNAPSHOT %s', (task.snapshot,))
        except Exception as exc:
            src_conn.rollback()
            if getattr(exc, 'pgcode', None) in ('22023', '0A000', '25001'):
                raise SnapshotGone(
                    '%s: the source snapshot its parts share is gone (the runner that held '
                    'it ended); run again to copy the table from scratch under a new one'
                    % task.source_table, getattr(exc, 'pgcode', None), side='source')
            raise diagnose(exc, 'source')


def configure_target_transaction(tcur, task: CopyTask) -> None:
    """SET LOCAL, in one round trip, what every copy transaction needs plus the task's own
    settings. The manifest is marked migrated once the commit returns: the commit must be
    durable then, even on a target running with synchronous_commit = off (a crash would
    otherwise lose a table the manifest says is copied)."""
    settings = (('synchronous_commit', 'on'),) + tuple(task.target_settings)
    tcur.execute('SELECT ' + ', '.join(['set_config(%s, %s, true)'] * len(settings)),
                 [v for pair in settings for v in pair])


def copy_and_record(src_conn, tcur, task: CopyTask, mapping: ColumnMapping, statements,
                    counter: ByteCounter, ledger_schema: str, source_id: str,
                    runner: str) -> Optional[int]:
    """Stream the task's rows (``statements``: from copy_statements) into the open target
    transaction, check that both sides counted the same rows and write the ledger row;
    returns the rows copied."""
    source_xmin = None
    if mapping.source_partitioned:
        src_rows = tgt_rows = 0  # its partitions are copied as rows of their own
    else:
        source_xmin = snapshot_xmin(src_conn)
        src_rows, tgt_rows = stream_copy(src_conn, tcur, statements[0], statements[1], counter)
    if src_rows is not None and tgt_rows is not None and src_rows != tgt_rows:
        raise CopyFailed('row count mismatch: source sent %d rows, target received %d'
                         % (src_rows, tgt_rows))
    rows = tgt_rows if tgt_rows is not None else src_rows
    ledger.record(tcur, ledger_schema, source_id, task.source_table, task.target_table,
                  rows, counter.value, runner, task.part, source_xmin)
    return rows


def snapshot_xmin(src_conn) -> Optional[int]:
    """The xmin (64-bit) of a snapshot taken in the source transaction just before its COPY:
    no later than the COPY's own (the same one under a shared snapshot), so every source row
    whose xmin precedes it is in the copy. None when the source cannot tell."""
    try:
        with src_conn.cursor() as scur:
            scur.execute('SELECT txid_snapshot_xmin(txid_current_snapshot())')
            return int(scur.fetchone()[0])
    except Exception as exc:  # a psycopg2 error: the source is gone or refuses
        raise diagnose(exc, 'source')


def abort_target(tgt_conn, exc: BaseException) -> BaseException:
    """Roll the target transaction back; the exception to raise (interrupts unchanged)."""
    _rollback_quietly(tgt_conn)
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return exc
    return diagnose(exc, 'target')


def _rollback_quietly(conn) -> None:
    try:
        if not conn.closed:
            conn.rollback()
    except Exception:  # the connection may be gone; closing it is the rollback
        pass


BINARY_TRAILER = b'\xff\xff'  # a binary COPY stream's end: a tuple of -1 fields


class _JoinedStreams:
    """Several binary COPY streams written as one: the first's header, every stream's rows,
    the last's trailer (the header of the others, and the trailer of all but the last, are
    dropped). ``start(i)`` before stream i, ``end()`` after it."""

    def __init__(self, out, streams: int):
        self.out, self.streams, self.index = out, streams, 0
        self._head = b''  # the start of a header being skipped
        self._skipping = False
        self._held = b''  # the last bytes written: the trailer, if the stream ends there

    def start(self, index: int) -> None:
        self.index, self._skipping, self._head, self._held = index, index > 0, b'', b''

    def write(self, data) -> int:
        size = len(data)
        data = bytes(data)
        if self._skipping:  # signature (11 bytes), flags (4), extension length (4) + extension
            self._head += data
            if len(self._head) < 19 or len(self._head) < 19 + int.from_bytes(self._head[15:19], 'big'):
                return size
            data = self._head[19 + int.from_bytes(self._head[15:19], 'big'):]
            self._skipping, self._head = False, b''
        if self.index < self.streams - 1:
            data = self._held + data
            self._held, data = data[-2:], data[:-2]
        if data:
            self.out.write(data)
        return size

    def end(self) -> None:
        if self.index < self.streams - 1 and self._held != BINARY_TRAILER:
            raise CopyFailed('a binary COPY stream did not end with its trailer')


def stream_copy(src_conn, tcur, copy_out, copy_in, counter: ByteCounter):
    """Run both COPYs concurrently through a pipe; returns (source rows, target rows)."""
    rows, target_rows = stream_copies(src_conn, tcur, [copy_out], copy_in, counter, binary=False)
    return rows[0], target_rows


def stream_copies(src_conn, tcur, copy_outs: Sequence, copy_in, counter: ByteCounter, binary: bool):
    """Like stream_copy, with several source COPYs (in turn, each in a snapshot of its own)
    into ONE target COPY; returns ([source rows of each], target rows). ``binary``: the
    streams are binary COPY data, joined as one stream (``_JoinedStreams``)."""
    read_fd, write_fd = os.pipe()
    try:
        fcntl.fcntl(write_fd, F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass
    reader = _CountingReader(read_fd, counter)
    outcome = {}
    cancel_sent = threading.Event()

    def produce() -> None:
        writer = os.fdopen(write_fd, 'wb', buffering=PIPE_SIZE)
        joined = _JoinedStreams(writer, len(copy_outs)) if binary and len(copy_outs) > 1 else None
        outcome['rows'] = []
        try:
            for i, copy_out in enumerate(copy_outs):
                if joined is not None:
                    joined.start(i)
                with src_conn.cursor() as scur:
                    scur.copy_expert(copy_out, joined or writer, size=CHUNK)
                    outcome['rows'].append(scur.rowcount if scur.rowcount >= 0 else None)
                if joined is not None:
                    joined.end()
                src_conn.rollback()
        except BaseException as exc:  # reported by the main thread
            outcome['error'] = exc
            outcome['after_cancel'] = cancel_sent.is_set()
        finally:
            try:
                writer.close()
            except OSError:
                pass

    thread = threading.Thread(target=produce, name='copy-out', daemon=True)
    thread.start()
    target_error = None
    try:
        tcur.copy_expert(copy_in, reader, size=CHUNK)
    except BaseException as exc:
        target_error = exc
    finally:
        reader.close()  # unblocks the producer (EPIPE) if the target stopped early
    if target_error is not None and thread.is_alive():
        cancel_sent.set()
        try:
            src_conn.cancel()
        except Exception:
            pass
    thread.join()
    source_error = outcome.get('error')
    # A source error caused by our own cancel or by the closed pipe is a consequence of the
    # target's failure; any other source error is the root cause, even when the target
    # failed too (it then saw the data end early: "COPY file signature not recognized").
    if source_error is not None and not _consequence_of_target(
            source_error, outcome.get('after_cancel', False)):
        raise diagnose(source_error, 'source')
    if target_error is not None:
        raise diagnose(target_error, 'target')
    if source_error is not None:
        raise diagnose(source_error, 'source')
    return outcome.get('rows'), (tcur.rowcount if tcur.rowcount >= 0 else None)


def _consequence_of_target(source_error: BaseException, after_cancel: bool) -> bool:
    """True for the source errors the engine itself causes when the target fails: the
    pipe closed under the producer, or a query_canceled (57014) that arrived after our
    cancel request. An error the source raised before that is a cause."""
    if isinstance(source_error, BrokenPipeError):
        return True
    return after_cancel and getattr(source_error, 'pgcode', None) == '57014'


def source_blocks(src_conn, schema: str, table: str) -> int:
    """Blocks in the table's main fork now (the split planner's unit)."""
    with src_conn.cursor() as cur:
        cur.execute('SELECT pg_relation_size(%s::regclass) / current_setting(%s)::bigint',
                    (sql.SQL('{}.{}').format(sql.Identifier(schema), sql.Identifier(table))
                     .as_string(cur), 'block_size'))
        blocks = int(cur.fetchone()[0])
    src_conn.rollback()
    return blocks
