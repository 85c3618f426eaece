# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Targeted repair: replace the differing rows of some key ranges of one table on the target,
in ONE target transaction per batch of ranges.

The transaction (``repair``):

1. the table's advisory lock (``ledger.lock``, waiting for it, as a copy or a re-copy of it takes);
2. ``LOCK TABLE target IN SHARE ROW EXCLUSIVE MODE``: concurrent INSERT / UPDATE / DELETE (the
   application's mirrored upserts) wait for this transaction, reads do not. Held for the
   length of the batch's repair only, never while a table is compared;
3. ``DELETE`` the target rows of the differing keys (within the drop-child child's slice);
4. ``COPY`` the rows of those keys from the source, in a source snapshot taken AFTER the lock
   was granted, so a mirrored write that reached the target before the lock had reached the
   source before it too (the mirrors write the source first) and is in the copy;
5. a row in ``<ledger_schema>.copy_repairs`` (what was repaired, when, by whom);
6. commit (synchronous_commit on).

A crash or an error anywhere leaves every range of the batch untouched (rolled back); the
ranges of committed batches stay repaired. Repairs are idempotent: a re-run compares again
and repairs what still differs.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - modules report the missing library
    sql = None

from ansible_collections.icds.citus_migration.plugins.module_utils.copy import ledger
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.columns import ColumnMapping
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.table_copy import (
    _fault, ByteCounter, CopyFailed, CopyTask, abort_target, configure_target_transaction,
    stream_copies, stream_copy)
from ansible_collections.icds.citus_migration.plugins.module_utils.validate.segment_checksum import (
    RangeDiff, Scope, key_match)
from ansible_collections.icds.citus_migration.plugins.module_utils.validate.sql_arrays import array_literal

REPAIR_BATCH_ROWS = 20000  # differing rows replaced per target transaction (whole ranges)


@dataclass
class RepairOutcome:
    transactions: int = 0
    ranges: int = 0
    rows_deleted: int = 0
    rows_copied: int = 0


def _repairs_table(schema: str):
    return sql.SQL('{}.{}').format(sql.Identifier(schema), sql.Identifier('copy_repairs'))


def ensure_repair_log(conn, schema: str) -> None:
    """Create ``<schema>.copy_repairs`` if missing (the ledger schema exists). Commits."""
    ledger.ensure_ledger(conn, schema)
    with conn.cursor() as cur:
        cur.execute('SELECT to_regclass(%s)', (_repairs_table(schema).as_string(cur),))
        if cur.fetchone()[0] is None:
            cur.execute('SELECT pg_advisory_xact_lock(%s, %s)', (ledger.LOCK_NAMESPACE, 0))
            cur.execute(sql.SQL("""
                CREATE TABLE IF NOT EXISTS {} (
                    source_id text NOT NULL,
                    source_table text NOT NULL,
                    target_table text NOT NULL,
                    ranges text[] NOT NULL,
                    rows_deleted bigint NOT NULL,
                    rows_copied bigint NOT NULL,
                    repaired_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                    runner text
                )""").format(_repairs_table(schema)))
    conn.commit()


def batches(ranges: Sequence[RangeDiff], limit: int = REPAIR_BATCH_ROWS) -> List[List[RangeDiff]]:
    """Whole ranges grouped into batches of at most ``limit`` keys (a bigger range alone)."""
    return [[rng for _j, rng in batch] for batch in _piece_batches([(0, r) for r in ranges], limit)]


def lock_statement(target_schema: str, target_table: str):
    return sql.SQL('LOCK TABLE {}.{} IN SHARE ROW EXCLUSIVE MODE').format(
        sql.Identifier(target_schema), sql.Identifier(target_table))


def lock_statement_many(tables: Sequence[Tuple[str, str]]):
    """LOCK of several (schema, table) at once, in the order given."""
    return sql.SQL('LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE').format(sql.SQL(', ').join(
        sql.SQL('{}.{}').format(sql.Identifier(schema), sql.Identifier(table)) for schema, table in tables))


def repair_statements(scope: Scope, mapping: ColumnMapping, source_schema: str,
                      target_schema: str, keys: Sequence[Tuple[str, ...]]) -> Tuple[object, object, object, object]:
    """(LOCK, DELETE, COPY TO on the source, COPY FROM on the target) for these keys."""
    wanted = key_match(scope, keys)
    target = sql.SQL('{}.{}').format(sql.Identifier(target_schema), sql.Identifier(scope.target_table))
    lock = lock_statement(target_schema, scope.target_table)
    # the predicate is a CHECK expression from the source catalog (columns only), as in compare
    slice_ = sql.SQL('({}) AND ').format(sql.SQL(scope.predicate)) if scope.predicate else sql.SQL('')
    delete = sql.SQL('DELETE FROM {}{} WHERE {}{}').format(
        sql.SQL('ONLY ') if scope.target_only else sql.SQL(''), target, slice_, wanted)
    cols = sql.SQL(', ').join(sql.Identifier(c) for c in mapping.columns)
    fmt = sql.SQL('(FORMAT binary)' if mapping.binary else '(FORMAT text)')
    copy_out = sql.SQL('COPY (SELECT {} FROM ONLY {}.{} WHERE {}) TO STDOUT {}').format(
        cols, sql.Identifier(source_schema), sql.Identifier(scope.source_table), wanted, fmt)
    copy_in = sql.SQL('COPY {} ({}) FROM STDIN {}').format(target, cols, fmt)
    return lock, delete, copy_out, copy_in


def _qualified_hash(alias: str, scope: Scope):
    row = sql.SQL('ROW({})').format(sql.SQL(', ').join(sql.Identifier(alias, c) for c in scope.columns))
    if scope.hash_mode == 'record':
        return sql.SQL('hash_record_extended({}, 0)').format(row)
    return sql.SQL('hashtextextended({}::text, 0)').format(row)


@contextmanager
def _repair_transaction(tgt_conn, task: CopyTask) -> Iterator:
    """A cursor in one repair's target transaction (the task's settings): committed when the
    block ends (after the ``repair_before_commit`` fault point), rolled back when it raises."""
    tcur = tgt_conn.cursor()
    try:
        configure_target_transaction(tcur, task)
        yield tcur
        _fault('repair_before_commit')
        tgt_conn.commit()
    except BaseException as exc:
        raise abort_target(tgt_conn, exc)
    finally:
        tcur.close()


def repair_rows(src_conn, tgt_conn, task: CopyTask, scope: Scope, mapping: ColumnMapping,
                copy: Sequence[Tuple[int, str, int]], delete: Sequence[Tuple[int, str, int]],
                ledger_schema: str, source_id: str, runner: str) -> RepairOutcome:
    """A keyless table: delete the target rows in excess and copy the source rows missing,
    matched by (tableoid, ctid) AND row hash (a row changed since it was read is left for the
    next catch-up), in ONE target transaction under the same lock as ``repair``."""
    target = sql.SQL('{}.{}').format(sql.Identifier(task.target_schema), sql.Identifier(scope.target_table))
    cols = sql.SQL(', ').join(sql.Identifier(c) for c in mapping.columns)
    fmt = sql.SQL('(FORMAT binary)' if mapping.binary else '(FORMAT text)')
    delete_sql = sql.SQL('DELETE FROM {}{} AS icds_t USING unnest({}, {}, {}) '
                         'AS icds_d(icds_oid, icds_tid, icds_hash) WHERE icds_t.tableoid = icds_d.icds_oid '
                         'AND icds_t.ctid = icds_d.icds_tid AND {} = icds_d.icds_hash').format(
        sql.SQL('ONLY ') if scope.target_only else sql.SQL(''), target,
        array_literal([d[0] for d in delete], 'oid'), array_literal([d[1] for d in delete], 'tid'),
        array_literal([d[2] for d in delete], 'int8'), _qualified_hash('icds_t', scope))
    copy_out = sql.SQL('COPY (SELECT {} FROM ONLY {}.{} AS icds_s JOIN unnest({}, {}) '
                       'AS icds_d(icds_tid, icds_hash) ON icds_s.ctid = icds_d.icds_tid AND {} = icds_d.icds_hash) '
                       'TO STDOUT {}').format(
        sql.SQL(', ').join(sql.Identifier('icds_s', c) for c in mapping.columns),
        sql.Identifier(task.source_schema), sql.Identifier(scope.source_table),
        array_literal([c[1] for c in copy], 'tid'), array_literal([c[2] for c in copy], 'int8'),
        _qualified_hash('icds_s', scope), fmt)
    copy_in = sql.SQL('COPY {} ({}) FROM STDIN {}').format(target, cols, fmt)
    outcome = RepairOutcome()
    with _repair_transaction(tgt_conn, task) as tcur:
        ledger.lock(tcur, source_id, task.source_table)
        tcur.execute(lock_statement(task.target_schema, scope.target_table))
        deleted = copied = 0
        if delete:
            tcur.execute(delete_sql)
            deleted = max(0, tcur.rowcount)
        if copy:
            src_conn.rollback()
            src_rows, tgt_rows = stream_copy(src_conn, tcur, copy_out, copy_in, ByteCounter())
            copied = tgt_rows if tgt_rows is not None else (src_rows or 0)
        _log(tcur, ledger_schema, source_id, task, ['rows: %d to delete, %d to copy (no usable key)'
                                                    % (len(delete), len(copy))], deleted, copied, runner)
    outcome.transactions, outcome.ranges = 1, 1
    outcome.rows_deleted, outcome.rows_copied = deleted, copied
    return outcome


def _log(tcur, ledger_schema: str, source_id: str, task: CopyTask, ranges: List[str], deleted: int,
         copied: int, runner: str) -> None:
    tcur.execute(sql.SQL('INSERT INTO {} (source_id, source_table, target_table, ranges, '
                         'rows_deleted, rows_copied, runner) VALUES (%s, %s, %s, %s, %s, %s, %s)')
                 .format(_repairs_table(ledger_schema)),
                 (source_id, task.source_table, task.target_table, ranges, deleted, copied, runner))


@dataclass
class RepairJob:
    """The differing ranges of one manifest row (jobs repaired together share a target table)."""

    task: CopyTask
    scope: Scope
    mapping: ColumnMapping
    ranges: Sequence[RangeDiff]


def repair(src_conn, tgt_conn, task: CopyTask, scope: Scope, mapping: ColumnMapping,
           ranges: Sequence[RangeDiff], ledger_schema: str, source_id: str, runner: str,
           counter: Optional[ByteCounter] = None) -> RepairOutcome:
    """Replace the differing rows of ``ranges`` on the target, one transaction per batch."""
    return repair_many(src_conn, tgt_conn, [RepairJob(task, scope, mapping, ranges)],
                       ledger_schema, source_id, runner, counter)[0]


def repair_many(src_conn, tgt_conn, jobs: Sequence[RepairJob], ledger_schema: str, source_id: str,
                runner: str, counter: Optional[ByteCounter] = None) -> List[RepairOutcome]:
    """Replace the differing rows of several rows' ranges on their target tables: whole
    ranges batched up to REPAIR_BATCH_ROWS keys per target transaction, so the slices of a
    drop-child parent, or several small tables, with a few changed rows each are repaired
    under one lock (of every target table of the batch, taken at its start in name order)
    and one commit. The jobs share their target settings. Each range is repaired or
    untouched; a failed batch leaves all of its ranges untouched."""
    outcomes = [RepairOutcome() for dummy in jobs]
    counter = counter or ByteCounter()
    pieces = [(j, rng) for j, job in enumerate(jobs) for rng in job.ranges]
    for batch in _piece_batches(pieces):
        members = sorted({j for j, _rng in batch}, key=lambda j: jobs[j].task.source_table)
        first = jobs[members[0]]
        done = {}
        with _repair_transaction(tgt_conn, first.task) as tcur:
            for j in members:  # in name order: two runners never wait for each other in a cycle
                ledger.lock(tcur, source_id, jobs[j].task.source_table)
            # every target table of the batch in one statement, in name order (two runners
            # never wait for each other in a cycle)
            tcur.execute(lock_statement_many(sorted({(jobs[j].task.target_schema, jobs[j].scope.target_table)
                                                     for j in members})))
            for group in _copy_groups(jobs, members):
                ranges = {j: [rng for i, rng in batch if i == j] for j in group}
                deleted, copy_outs = {}, []
                for j in group:
                    job = jobs[j]
                    _lock, delete, copy_out, copy_in = repair_statements(
                        job.scope, job.mapping, job.task.source_schema, job.task.target_schema,
                        [k for rng in ranges[j] for k in rng.keys])
                    tcur.execute(delete)
                    deleted[j] = max(0, tcur.rowcount)
                    copy_outs.append(copy_out)
                src_conn.rollback()  # the source snapshots of the COPYs start after the lock
                # the slices of one target table: ONE target COPY (a distributed statement on
                # Citus) of their source COPYs in turn
                src_rows, tgt_rows = stream_copies(src_conn, tcur, copy_outs, copy_in, counter,
                                                   jobs[group[0]].mapping.binary)
                if None not in src_rows and tgt_rows is not None and sum(src_rows) != tgt_rows:
                    raise CopyFailed('row count mismatch: source sent %d rows, target received %d'
                                     % (sum(src_rows), tgt_rows))
                if len(group) == 1 and tgt_rows is not None:
                    src_rows = [tgt_rows]  # one slice: what the target received, as before
                for j, sent in zip(group, src_rows):
                    copied = sent or 0
                    _log(tcur, ledger_schema, source_id, jobs[j].task, [rng.range.encode() for rng in ranges[j]],
                         deleted[j], copied, runner)
                    done[j] = (len(ranges[j]), deleted[j], copied)
        for j, (nranges, deleted, copied) in done.items():
            outcomes[j].transactions += 1
            outcomes[j].ranges += nranges
            outcomes[j].rows_deleted += deleted
            outcomes[j].rows_copied += copied
    return outcomes


def _copy_groups(jobs: Sequence[RepairJob], members: Sequence[int]) -> List[List[int]]:
    """The batch's jobs (in their order) grouped by the target COPY they can share: the same
    target table and columns, copied the same way (the slices of a drop-child parent)."""
    groups: dict = {}
    for j in members:
        job = jobs[j]
        key = (job.task.target_schema, job.scope.target_table, tuple(job.mapping.columns), job.mapping.binary)
        groups.setdefault(key, []).append(j)
    return list(groups.values())


def _piece_batches(pieces: Sequence[Tuple[int, RangeDiff]], limit: Optional[int] = None
                   ) -> List[List[Tuple[int, RangeDiff]]]:
    limit = REPAIR_BATCH_ROWS if limit is None else limit
    out: List[List[Tuple[int, RangeDiff]]] = []
    size = 0
    for piece in pieces:
        if out and size + piece[1].rows <= limit:
            out[-1].append(piece)
            size += piece[1].rows
        else:
            out.append([piece])
            size = piece[1].rows
    return out
