# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The catch-up's fast path: compare a table by what changed on the source since its copy.

Every copy records the xmin of the source snapshot it read (``ledger.source_xmins``). A
source row whose xmin precedes it was committed before that snapshot, so the copy wrote it
to the target as it is; and it has not changed since, or it would be a new row version with a
new xmin. Such rows need no comparison of their values. What does:

1. Both scans sum, per bucket (one segment of ``scope.fine`` sub-buckets by key hash: rows are
   found by key hash here, so key ranges would only cost a ``width_bucket`` per row), the
   count and the hashes of the keys, not of the whole rows; the source scan also lists its rows
   whose xmin does not precede the copy's (inserted or updated since, or during, the copy):
   key, key hash and row hash, under the same snapshot.
2. A bucket is looked at when its key sums differ (rows deleted or inserted on the source)
   or when it holds changed source rows. One more target scan (``hunted_rows``) reads only
   the target rows such a bucket needs, found by their key hash (``ChangeComparer.wanted``):
   those of the changed keys, and the deleted key a bucket's sums point to. A changed source
   row whose target row is missing or different is copied again. The target keys not among
   the source's unchanged rows are the deleted ones, and the key sums say how many and the
   sum of their key hashes: one is told by its hash. Where the sums leave more than one
   deleted key the bucket is read whole, and the deleted keys are told by their hashes when
   one set of at most MAX_SUBSET target keys has that sum; otherwise they are looked up on
   the source.
3. A bucket that does not add up after that (an old row the target lost some other way, a
   key the target holds twice) is compared row by row, as ``segment_checksum`` does.

One scan per side hashing only the key: about half the work of hashing every row, and the
row-level work is in proportion to the change. What it does not look for: a row changed on
the target alone with its key unchanged (the mirrors write what the source gets); the
validation step, and ``compare_tables``, compare every row.

Unusable, so every row is compared (``segment_checksum``): a table copied by a version that
did not record the snapshot, or when more than XID_HORIZON transactions have passed since
(32-bit xmin values could no longer be ordered safely). Frozen rows keep their xmin; one from
before a wraparound may look recent: it is then compared, never skipped.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from dataclasses import dataclass, field
from collections import Counter
from itertools import combinations, islice
from math import comb
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - modules report the missing library
    sql = None

from ansible_collections.icds.citus_migration.plugins.module_utils.copy.key_ranges import (
    KeyRange, ranges_from_bounds)
from ansible_collections.icds.citus_migration.plugins.module_utils.validate.segment_checksum import (
    DUPLICATE, FAMILY_STRIDE, KEY_HASH, MAX_CHANGES_FINE, RangeDiff, Scope, Side, SideQueryFailed, TableDrift, bucket_expr,
    family_bucket_expr, fine_buckets, hashed_rows, relation, side_args, where_clause, bucket_sums, diff_rows, key_match,
    multiset_diff, needs_text, row_hash, row_hashes)
from ansible_collections.icds.citus_migration.plugins.module_utils.validate.sql_arrays import array_literal

XID_HORIZON = 1 << 30  # transactions since the copy beyond which every row is compared
LOOKUP_KEYS = 5000  # keys per look-up query
# rows per sub-bucket aimed at (segment_checksum.fine_buckets): the second scan reads rows by
# key hash, not whole buckets, so buckets can be 4 times those of a comparison of every row
# (fewer groups to sum and send); a bucket then rarely holds two deleted keys
CHANGES_ROWS = 128
MAX_HUNTED = 50000  # key hashes one target scan asks for at most (see ChangeComparer.wanted)
MAX_READINGS = 4  # changed rows of a bucket whose insert-or-update readings are tried (2^4)
MAX_SUBSET = 3  # deleted keys (or keyless rows) of one bucket told apart by their hash sums at most
MAX_SUBSET_TRIES = 20000  # sets of target rows tried for one bucket at most

Key = Tuple[str, ...]


def changes_fine(rows: int) -> int:
    """Buckets of a scope compared by changes (one segment): about CHANGES_ROWS rows each."""
    return fine_buckets(rows, 1, CHANGES_ROWS, MAX_CHANGES_FINE)


def usable_since(source_xmin: Optional[int], next_xid: int) -> bool:
    """Can rows be told apart by their xmin against this copy snapshot xmin?"""
    return (source_xmin is not None and 0 <= next_xid - source_xmin < XID_HORIZON
            and source_xmin % (1 << 32) >= 3)  # 0-2 are special xids


def source_snapshot(conn) -> Tuple[int, int]:
    """(xmin, xmax) of a snapshot of the source now (64-bit; xmax: its next transaction id),
    read without taking a transaction id."""
    with conn.cursor() as cur:
        cur.execute('SELECT txid_snapshot_xmin(s), txid_snapshot_xmax(s) FROM txid_current_snapshot() AS s')
        xmin, xmax = cur.fetchone()
    conn.rollback()
    return int(xmin), int(xmax)


@dataclass
class SourceChanges:
    """The source scan: count and key hash sum per bucket, and its rows changed since the copy."""

    sums: Dict[int, Tuple[int, int]] = field(default_factory=dict)
    rows: Dict[Key, Tuple[int, int, int]] = field(default_factory=dict)  # key -> (bucket, key hash, row hash)


def _changed(since: int):
    """True for a row whose xmin does not precede ``since`` (the comparison of 32-bit xids
    that age() makes, both ages at the same moment)."""
    return sql.SQL('age(xmin) <= age({}::xid)').format(sql.Literal(str(since % (1 << 32))))


def source_changes(side: Side, scope: Scope, since: int) -> SourceChanges:
    """The scope's source rows in ONE scan (see the module's docstring, steps 1 and 2):
    count and key hash sum per bucket, and the rows changed since ``since``.

    The rows are grouped by bucket and by a marker that is NULL for an unchanged row and the
    row's ctid (as text: tid has no hash operator before PostgreSQL 14) for a changed one, so
    each changed row is a group of its own whose key and row hash are aggregated only for
    it (FILTER: computed for changed rows alone). A bucket's sums are those of its groups.
    Two scans (sums, then the changed rows) cost about 12% more; array aggregates per
    bucket would give every bucket an array state, which the hash aggregate spills."""
    table, only, fixed = side_args(scope, 'source')
    rel, where = relation(side.schema, table, only), where_clause([fixed])
    marker = sql.SQL('CASE WHEN {} THEN ctid::text END AS icds_c').format(_changed(since))
    mine = sql.SQL(' FILTER (WHERE icds_c IS NOT NULL)')
    values = [row_hash(scope.columns, scope.hash_mode)] + [
        sql.SQL('{}::text').format(sql.Identifier(c)) for c in scope.key_columns]
    query = sql.SQL('SELECT {b}, icds_c IS NULL, count(*), COALESCE(sum({h}), 0)::text, {values} '
                    'FROM {rows} GROUP BY 1, icds_c').format(
        b=bucket_expr(scope, (), True, KEY_HASH), h=KEY_HASH,
        values=sql.SQL(', ').join(sql.SQL('min({}){}').format(v, mine) for v in values),
        rows=hashed_rows(rel, where, scope, marker))
    out = SourceChanges()
    for rec in side.fetch(query, text=needs_text(scope)):
        bucket_no, unchanged, n, total = rec[:4]
        if bucket_no is None:
            raise SideQueryFailed('source: rows of %s have no value in the key column %s'
                                  % (table, scope.key))
        old_n, old_k = out.sums.get(bucket_no, (0, 0))
        out.sums[bucket_no] = (old_n + int(n), old_k + int(total))
        if not unchanged:  # one changed row: its key hash is the group's sum
            out.rows[tuple(rec[5:])] = (bucket_no, int(total), int(rec[4]))
    return out


def rows_by_key(side: Side, scope: Scope, which: str, keys: Sequence[Key]) -> Set[Key]:
    """Which of these keys one side holds (by key: an index look-up)."""
    table, only, fixed = side_args(scope, which)
    names = sql.SQL(', ').join(sql.SQL('{}::text').format(sql.Identifier(c)) for c in scope.key_columns)
    out: Set[Key] = set()
    for start in range(0, len(keys), LOOKUP_KEYS):
        query = sql.SQL('SELECT {k} FROM {rel}{where}').format(
            k=names, rel=relation(side.schema, table, only),
            where=where_clause([fixed, key_match(scope, keys[start:start + LOOKUP_KEYS])]))
        out.update(tuple(rec) for rec in side.fetch(query, text=needs_text(scope)))
    return out


Pairs = Dict[int, Dict[Key, Tuple[int, int]]]  # bucket -> key -> (key hash, row hash)


def _pairs(records) -> Pairs:
    """Records (bucket, key hash, row hash, key columns...) by bucket and key; a key held
    twice gets DUPLICATE as its row hash."""
    out: Pairs = {}
    for rec in records:
        key = tuple(rec[3:])
        rows = out.setdefault(rec[0], {})
        rows[key] = (int(rec[1]), DUPLICATE if key in rows else int(rec[2]))
    return out


Wanted = Tuple[Set[int], Set[int]]  # (key hashes, buckets read whole): see ChangeComparer.wanted


def hunted_rows(side: Side, scopes: Sequence[Scope], wanted: Sequence[Wanted]) -> List[Pairs]:
    """Per scope, bucket -> key -> (key hash, row hash) of its target rows whose key hash is
    wanted, and of every row of its buckets read whole, from ONE scan of the shared target
    table (a scope alone, or the slices of one drop-child family).

    The scan tests each row's key hash only (a hash look-up in the wanted set; a bucket read
    whole by its fine part, then its member's predicate); the bucket, a CASE over the
    family's predicates, is computed for the rows returned. A row returned for a shared hash
    or fine part lands in its own bucket: ``settle`` reads only the flagged ones, and a flagged
    bucket's extra rows (neither changed keys nor of the deleted hash) change nothing."""
    first = scopes[0]
    kh = KEY_HASH  # computed once per row (hashed_rows)
    if len(scopes) == 1:
        table, only, fixed = side_args(first, 'target')
        bucket = bucket_expr(first, (), True, kh)
    else:
        table, only, fixed = first.target_table, first.target_only, None
        bucket = family_bucket_expr(scopes, [()] * len(scopes), kh)
    hashes = sorted(set().union(*(h for h, _w in wanted)))
    tests = [sql.SQL('{} = ANY({})').format(kh, array_literal(hashes, 'int8'))] if hashes else []
    for scope, (_h, whole) in zip(scopes, wanted):
        parts = sorted({b % scope.fine for b in whole})
        if len(parts) > MAX_HUNTED:  # much changed: every row of the scope (settle reads the flagged buckets)
            tests.append(sql.SQL('TRUE') if len(scopes) == 1 else sql.SQL('({})').format(sql.SQL(scope.predicate)))
        elif whole:
            part = sql.SQL('({} & {}) = ANY({})').format(
                kh, sql.Literal(scope.fine - 1), array_literal(parts, 'int8'))
            tests.append(part if len(scopes) == 1 else sql.SQL('({} AND ({}))').format(part, sql.SQL(scope.predicate)))
    query = sql.SQL('SELECT {b}, {kh}, {rh}, {k} FROM {rows} WHERE {tests}').format(
        b=bucket, kh=kh, rh=row_hash(first.columns, first.hash_mode),
        k=sql.SQL(', ').join(sql.SQL('{}::text').format(sql.Identifier(c)) for c in first.key_columns),
        rows=hashed_rows(relation(side.schema, table, only), where_clause([fixed]), first),
        tests=sql.SQL(' OR ').join(tests))
    records = [r for r in side.fetch(query, text=needs_text(first)) if r[0] is not None]
    out: List[Pairs] = [{} for dummy in scopes]
    stride = FAMILY_STRIDE if len(scopes) > 1 else None
    for g, pairs in _pairs(records).items():
        member, b = (g // stride, g % stride) if stride else (0, g)
        out[member][b] = pairs
    return out


@dataclass
class _Outcome:
    changed: Set[Key] = field(default_factory=set)  # to copy again (differs, or held twice)
    missing: Set[Key] = field(default_factory=set)
    extra: Set[Key] = field(default_factory=set)


def _compared(changed: Dict[Key, Tuple[int, int]], target: Dict[Key, Tuple[int, int]]) -> _Outcome:
    """The changed source rows (key -> (key hash, row hash)) against the target rows known of
    their bucket: missing there, or different."""
    outcome = _Outcome()
    for key, (_kh, rh) in changed.items():
        found = target.get(key)
        if found is None:
            outcome.missing.add(key)
        elif found[1] != rh:
            outcome.changed.add(key)
    return outcome


class ChangeComparer:
    """One scope's comparison by changes: ``flagged`` (after both scans) returns the buckets
    to look at, ``wanted`` the target rows they need (by key hash, or whole buckets), and
    ``settle`` (given those rows, ``hunted_rows``) returns the drift. The steps let the slices
    of one target table read their rows with one scan."""

    def __init__(self, src: Side, tgt: Side, scope: Scope):
        self.src, self.tgt, self.scope = src, tgt, scope
        self.source = SourceChanges()
        self.target: Dict[Optional[int], Tuple[int, int]] = {}
        self._flagged: List[int] = []
        self._whole: Optional[Set[int]] = None  # flagged buckets read whole (see wanted)

    def flagged(self, source: SourceChanges, target: Dict[Optional[int], Tuple[int, int]]) -> List[int]:
        if None in target:
            raise SideQueryFailed('target: %s rows of %s have no value in the key column %s'
                                  % (target[None][0], self.scope.target_table, self.scope.key))
        self.source, self.target = source, target
        out = {b for b in set(source.sums) | set(target) if source.sums.get(b, (0, 0)) != target.get(b, (0, 0))}
        out.update(b for b, _kh, _rh in source.rows.values())
        self._flagged = sorted(out)
        return self._flagged

    def wanted(self) -> Wanted:
        """(key hashes, buckets read whole): what the target must show of the flagged buckets.

        The hashes of the changed keys (their target rows say whether each changed row is
        new, changed or already there) and, per bucket whose key sums differ, the hash its
        one deleted key would have: the target's sums minus the source's are the deleted keys
        minus the inserted ones, the inserted being some of the bucket's changed rows, so
        every reading of which of them are new that leaves one deleted key gives a candidate
        (a wrong one matches nothing). A bucket where no reading leaves at most one deleted
        key (or with more than MAX_READINGS changed rows) is read whole; so is every flagged
        bucket when more than MAX_HUNTED hashes would be asked for (a table much changed since
        its copy: the query names buckets by their sub-bucket bits instead, or reads every row
        of the table when that would name more than MAX_HUNTED)."""
        by_bucket = self._changed_by_bucket()
        hashes: Set[int] = set()
        whole: Set[int] = set()
        for b in self._flagged:
            changed = [kh for kh, _rh in by_bucket.get(b, {}).values()]
            hashes.update(changed)
            sn, sk = self.source.sums.get(b, (0, 0))
            tn, tk = self.target.get(b, (0, 0))
            if (tn, tk) == (sn, sk):
                continue  # the same keys: the changed rows are updates
            if len(changed) > MAX_READINGS:
                whole.add(b)
                continue
            readable = False
            for n in range(len(changed) + 1):
                for inserted in combinations(changed, n):
                    deleted_n, deleted_k = tn - sn + n, tk - sk + sum(inserted)
                    if deleted_n == 1 and -(1 << 63) <= deleted_k < (1 << 63):
                        hashes.add(deleted_k)
                        readable = True
                    elif (deleted_n, deleted_k) == (0, 0):
                        readable = True
            if not readable:
                whole.add(b)
        if len(hashes) > MAX_HUNTED:  # much changed: read the flagged buckets whole (a bounded query)
            hashes, whole = set(), set(self._flagged)
        self._whole = whole
        return hashes, whole

    def _changed_by_bucket(self) -> Dict[int, Dict[Key, Tuple[int, int]]]:
        out: Dict[int, Dict[Key, Tuple[int, int]]] = {}
        for key, (b, kh, rh) in self.source.rows.items():
            out.setdefault(b, {})[key] = (kh, rh)
        return out

    def settle(self, target_rows: Pairs) -> TableDrift:
        """``target_rows``: the target rows ``wanted`` asked for (``hunted_rows``); without a
        ``wanted`` call before, every target row of the flagged buckets."""
        changed_by_bucket = self._changed_by_bucket()
        whole = self._whole if self._whole is not None else set(self._flagged)
        per_bucket: Dict[int, _Outcome] = {}
        unresolved: Dict[int, Dict[Key, int]] = {}  # bucket -> target keys not told apart
        for b in self._flagged:
            settle_one = self._settle_bucket if b in whole else self._settle_known
            outcome, left = settle_one(b, changed_by_bucket.get(b, {}), target_rows.get(b, {}))
            per_bucket[b] = outcome
            if left is not None:
                unresolved[b] = left
        anomalies = self._look_up(unresolved, per_bucket, changed_by_bucket) if unresolved else []
        if anomalies:
            self._row_level(anomalies, per_bucket)
        return self._drift(per_bucket)

    def _settle_known(self, b: int, changed: Dict[Key, Tuple[int, int]], found: Dict[Key, Tuple[int, int]]):
        """(outcome, None, or {} for row by row) of a flagged bucket of which only the target
        rows ``wanted`` named are known: those of the changed keys and of candidate hashes."""
        outcome = _compared(changed, found)
        if any(rh == DUPLICATE for _kh, rh in found.values()):
            return outcome, {}
        held = [kh for key, (kh, _rh) in changed.items() if key in found]  # changed keys the target holds
        sn, sk = self.source.sums.get(b, (0, 0))
        tn, tk = self.target.get(b, (0, 0))
        # the target's keys are the source's unchanged ones, the changed ones it holds, and the deleted
        deleted_n = tn - len(held) - (sn - len(changed))
        deleted_k = tk - sum(held) - (sk - sum(kh for kh, _rh in changed.values()))
        if (deleted_n, deleted_k) == (0, 0):
            return outcome, None
        match = [k for k, (kh, _rh) in found.items() if k not in changed and kh == deleted_k]
        if deleted_n == 1 and len(match) == 1:
            outcome.extra.add(match[0])
            return outcome, None
        return outcome, {}

    def _settle_bucket(self, b: int, changed: Dict[Key, Tuple[int, int]], target: Dict[Key, Tuple[int, int]]):
        """(outcome, target keys still to tell apart or None) of one flagged bucket."""
        outcome = _compared(changed, target)
        if any(rh == DUPLICATE for _kh, rh in target.values()):
            return outcome, {}  # a key held twice: this bucket row by row (see _look_up)
        others = {k: kh for k, (kh, _rh) in target.items() if k not in changed}
        sn, sk = self.source.sums.get(b, (0, 0))
        extra_n = len(changed) + len(others) - sn  # the old rows are the source's unchanged ones
        extra_k = sum(kh for kh, _rh in changed.values()) + sum(others.values()) - sk
        if extra_n == 0 and extra_k == 0:
            return outcome, None
        if 1 <= extra_n <= MAX_SUBSET and comb(len(others), extra_n) <= MAX_SUBSET_TRIES:
            # the deleted keys: the one set of extra_n target keys whose hashes sum to extra_k
            keys = list(others)
            match = list(islice(subsets_summing([others[k] for k in keys], extra_n, extra_k), 2))
            if len(match) == 1:
                outcome.extra.update(keys[i] for i in match[0])
                return outcome, None
        return outcome, others

    def _look_up(self, unresolved: Dict[int, Dict[Key, int]], per_bucket: Dict[int, _Outcome],
                 changed: Dict[int, Dict[Key, Tuple[int, int]]]) -> List[int]:
        """Buckets whose deleted keys are not told by their hash: their target keys looked up on
        the source. Returns the buckets that still do not add up (or hold a key twice)."""
        keys = sorted({k for left in unresolved.values() for k in left})
        on_source = rows_by_key(self.src, self.scope, 'source', keys) if keys else set()
        anomalies = []
        for b, left in unresolved.items():
            if not left:
                anomalies.append(b)
                continue
            extra = {k for k in left if k not in on_source}
            kept = [kh for k, kh in left.items() if k not in extra]
            kept += [kh for kh, _rh in changed.get(b, {}).values()]
            if (len(kept), sum(kept)) != self.source.sums.get(b, (0, 0)):
                anomalies.append(b)
            else:
                per_bucket[b].extra.update(extra)
        return anomalies

    def _row_level(self, buckets: List[int], per_bucket: Dict[int, _Outcome]) -> None:
        """Buckets that do not add up: every row of them compared, as segment_checksum does."""
        span = KeyRange(self.scope.key)
        src = row_hashes(self.src, self.scope, 'source', span, (), buckets, True)
        tgt = row_hashes(self.tgt, self.scope, 'target', span, (), buckets, True)
        for b in buckets:
            diff = diff_rows(span, src.get(b, {}), tgt.get(b, {}))
            per_bucket[b] = _Outcome(set(diff.changed), set(diff.missing), set(diff.extra))

    def _drift(self, per_bucket: Dict[int, _Outcome]) -> TableDrift:
        ranges = ranges_from_bounds(self.scope.key, ())
        by_segment: Dict[int, RangeDiff] = {}
        for b, outcome in sorted(per_bucket.items()):
            if not (outcome.changed or outcome.missing or outcome.extra):
                continue
            diff = by_segment.setdefault(b // self.scope.fine, RangeDiff(ranges[b // self.scope.fine]))
            diff.changed.extend(sorted(outcome.changed))
            diff.missing.extend(sorted(outcome.missing))
            diff.extra.extend(sorted(outcome.extra))
        return TableDrift(segments=len(ranges), differing_segments=len(by_segment),
                          ranges=[by_segment[i] for i in sorted(by_segment)],
                          source_rows=sum(n for n, _k in self.source.sums.values()),
                          target_rows=sum(n for b, (n, _k) in self.target.items() if b is not None))


def compare_by_changes(src: Side, tgt: Side, scope: Scope, since: int, both: Callable) -> TableDrift:
    """One scope alone: both scans at the same time, then the target rows it still needs."""
    comparer = ChangeComparer(src, tgt, scope)
    source, target = both(lambda: source_changes(src, scope, since),
                          lambda: bucket_sums(tgt, scope, 'target', (), fine=True, value='key'))
    comparer.flagged(source, target)
    hashes, whole = comparer.wanted()
    rows = hunted_rows(tgt, [scope], [(hashes, whole)])[0] if hashes or whole else {}
    return comparer.settle(rows)


# -- tables without a usable key --------------------------------------------------------------

Physical = Tuple[int, str, int]  # (tableoid, ctid, row hash), as segment_checksum.physical_rows


def _one_hash(count: int, total: int) -> Tuple[Optional[int], int]:
    """(k, h) when ``count`` rows (k, negative: too few) of one hash h sum to ``total``,
    else (None, 0)."""
    if count == 0 or total % count:
        return None, 0
    h = total // count
    return (count, h) if -(1 << 63) <= h < (1 << 63) else (None, 0)


def _physical_query(side: Side, scope: Scope, which: str, mask: int, buckets: Sequence[int]):
    """(bucket, tableoid, ctid, row hash) of every row in ``buckets`` (by row hash)."""
    table, only, fixed = side_args(scope, which)
    rh = row_hash(scope.columns, scope.hash_mode)
    rows = sql.SQL('SELECT {rh} & {m} AS b, tableoid::int8 AS o, ctid AS c, {rh} AS h FROM {rel}{where}').format(
        rh=rh, m=sql.Literal(mask), rel=relation(side.schema, table, only), where=where_clause([fixed]))
    return sql.SQL('SELECT b, o, c::text, h FROM ({rows} OFFSET 0) AS icds_rows WHERE b = ANY({b})').format(
        rows=rows, b=array_literal(buckets, 'int8'))


def _settle_by_subsets(target: List[Physical], changed: List[Physical], source_sums: Tuple[int, int]
                       ) -> Optional[Tuple[List[Physical], List[Physical]]]:
    """(rows to copy, rows to delete) of a keyless bucket, told from its target rows, the
    source's changed rows and the source's sums without reading its source rows; None when
    they do not tell it.

    The source's unchanged rows were copied and are on the target, so the target rows
    that are not among them (R) are those deleted since the copy plus changed rows the copy
    already held: as many, and summing to as much, as the target's sums exceed the
    unchanged rows' (the source's sums minus its changed rows'). When exactly one set of row
    hashes of the target's rows has that size and sum (up to MAX_SUBSET rows, each set tried),
    R is known: the target rows of R that are not changed source rows are deleted, the
    changed source rows not in R copied (rows of one hash are equal: any of them will do)."""
    sn, sk = source_sums
    size = len(target) - sn + len(changed)
    total = sum(r[2] for r in target) - sk + sum(r[2] for r in changed)
    if not 0 <= size <= min(MAX_SUBSET, len(target)) or comb(len(target), size) > MAX_SUBSET_TRIES:
        return None
    values = [r[2] for r in target]
    found: Set[Tuple[int, ...]] = set()
    for pick in subsets_summing(values, size, total):
        found.add(tuple(sorted(values[i] for i in pick)))  # equal rows: one set of hashes
        if len(found) > 1:
            return None
    if len(found) != 1:
        return None
    extra = Counter(found.pop())
    new = Counter(r[2] for r in changed)
    return _take(changed, new - extra), _take(target, extra - new)


def subsets_summing(values: Sequence[int], size: int, total: int) -> Iterator[Tuple[int, ...]]:
    """Every set of ``size`` (at most 3) positions of ``values`` whose values sum to
    ``total``, as increasing positions: a value-to-positions index makes the last member a
    look-up, so 3 members cost len(values)^2 steps instead of len(values)^3 / 6."""
    if size == 0:
        if total == 0:
            yield ()
        return
    at: Dict[int, List[int]] = {}
    for i, value in enumerate(values):
        at.setdefault(value, []).append(i)
    if size == 1:
        yield from ((i,) for i in at.get(total, ()))
    elif size == 2:
        for i, value in enumerate(values):
            yield from ((i, j) for j in at.get(total - value, ()) if j > i)
    elif size == 3:
        for i, first in enumerate(values):
            for j in range(i + 1, len(values)):
                rest = total - first - values[j]
                yield from ((i, j, k) for k in at.get(rest, ()) if k > j)
    else:
        raise ValueError('subsets of %d members are not searched' % size)


def _take(rows: List[Physical], wanted: Counter) -> List[Physical]:
    """Rows of ``rows`` with the wanted row hashes, as many of each as wanted."""
    out = []
    for row in rows:
        if wanted[row[2]] > 0:
            wanted[row[2]] -= 1
            out.append(row)
    return out


def _row_hash_sums(side: Side, scope: Scope, which: str, mask: int, extra=sql.SQL('') if sql else None):
    """SQL: count and row hash sum per row-hash bucket of a keyless scope's rows on one side
    (``extra``: more output columns, NULL here). The row hash once per row: a subquery the
    planner keeps (OFFSET 0), not once for the bucket and again for the sum."""
    table, only, fixed = side_args(scope, which)
    return sql.SQL('SELECT h & {m}, count(*), COALESCE(sum(h), 0)::text{extra} FROM (SELECT {rh} AS h '
                   'FROM {rel}{where} OFFSET 0) AS icds_rows GROUP BY 1').format(
        m=sql.Literal(mask), extra=extra, rh=row_hash(scope.columns, scope.hash_mode),
        rel=relation(side.schema, table, only), where=where_clause([fixed]))


def bucket_sums_by_row(side: Side, scope: Scope, mask: int) -> Dict[int, Tuple[int, int]]:
    """Count and row hash sum per row-hash bucket of a keyless scope's target rows."""
    query = _row_hash_sums(side, scope, 'target', mask)
    return {b: (int(n), int(total)) for b, n, total in side.fetch(query, text=needs_text(scope))}


def _keyless_target_query(tgt: Side, scope: Scope, mask: int, s_sums: Dict[int, Tuple[int, int]]):
    """The target side of ``keyless_changes`` in ONE scan of a plain table: its count and row
    hash sum per bucket, and every row (bucket, tableoid, ctid, row hash) of the buckets whose
    sums differ from the source's (``s_sums``), the rows materialized once and read twice."""
    t_table, t_only, t_fixed = side_args(scope, 'target')
    buckets = sorted(s_sums)
    return sql.SQL(
        'WITH icds_rows AS MATERIALIZED (SELECT h & {m} AS b, o, c, h FROM (SELECT {rh} AS h, tableoid::int8 AS o, '
        'ctid AS c FROM {rel}{where} OFFSET 0) AS icds_hashed), '
        'icds_sums AS (SELECT b, count(*) AS n, COALESCE(sum(h), 0) AS k FROM icds_rows GROUP BY b), '
        'icds_source AS (SELECT * FROM unnest({sb}, {sn}, {sk}) AS s(b, n, k)), '
        'icds_differ AS (SELECT COALESCE(t.b, s.b) AS b FROM icds_sums AS t FULL JOIN icds_source AS s ON t.b = s.b '
        'WHERE t.n IS DISTINCT FROM s.n OR t.k IS DISTINCT FROM s.k) '
        'SELECT b, n, k::text, NULL::int8, NULL::text, NULL::int8 FROM icds_sums '
        'UNION ALL SELECT b, NULL, NULL, o, c::text, h FROM icds_rows WHERE b IN (SELECT b FROM icds_differ)').format(
        m=sql.Literal(mask), rh=row_hash(scope.columns, scope.hash_mode), rel=relation(tgt.schema, t_table, t_only),
        where=where_clause([t_fixed]), sb=array_literal(buckets, 'int8'),
        sn=array_literal([s_sums[b][0] for b in buckets], 'int8'),
        sk=array_literal([s_sums[b][1] for b in buckets], 'numeric'))


def keyless_changes(src: Side, tgt: Side, scope: Scope, since: int,
                    fine: int) -> Tuple[TableDrift, List[Physical], List[Physical]]:
    """A table without a usable key whose target is a plain table, by changes: (drift,
    source rows to copy, target rows to delete), rows named as
    ``segment_checksum.multiset_diff`` names them.

    Rows are bucketed by their own hash (equal rows share a bucket). The source scan sums
    each bucket and lists its changed rows; then ONE target scan sums the target's buckets
    and returns the rows of those that differ (``_keyless_target_query``: the source's sums
    are known by then). When nothing changed on the source, the target's sums alone (no rows
    materialized), and its rows of differing buckets, if any, with a second scan.

    In a bucket that differs by one row hash the rows are told by it: k target rows too many
    of hash h are k target rows of that hash; k too few are changed source rows of it. Most
    others are told by the sums of a few target rows (``_settle_by_subsets``); the rest are
    read on the source too and matched row by row (``multiset_diff``)."""
    mask = fine - 1
    rh = row_hash(scope.columns, scope.hash_mode)
    table, only, fixed = side_args(scope, 'source')
    # ONE scan, as in source_changes: a changed row (marked by its ctid) is a group of its own
    source_query = sql.SQL('SELECT h & {m}, c, count(*), COALESCE(sum(h), 0)::text, min(o) FROM (SELECT {rh} AS h, '
                           'CASE WHEN {ch} THEN ctid::text END AS c, CASE WHEN {ch} THEN tableoid::int8 END AS o '
                           'FROM {rel}{where} OFFSET 0) AS icds_rows GROUP BY 1, c').format(
        m=sql.Literal(mask), rh=rh, ch=_changed(since), rel=relation(src.schema, table, only),
        where=where_clause([fixed]))
    text = needs_text(scope)
    s_sums: Dict[int, Tuple[int, int]] = {}
    changed: Dict[int, List[Physical]] = {}
    for b, ctid, n, total, oid in src.fetch(source_query, text=text):
        old_n, old_k = s_sums.get(b, (0, 0))
        s_sums[b] = (old_n + int(n), old_k + int(total))
        if ctid is not None:
            changed.setdefault(b, []).append((int(oid), ctid, int(total)))
    t_sums: Dict[int, Tuple[int, int]] = {}
    target: Dict[int, List[Physical]] = {}  # every target row of the buckets that differ
    if changed:
        for b, n, total, oid, ctid, h in tgt.fetch(_keyless_target_query(tgt, scope, mask, s_sums), text=text):
            if n is not None:
                t_sums[b] = (int(n), int(total))
            else:
                target.setdefault(b, []).append((int(oid), ctid, int(h)))
    else:  # nothing changed on the source (usually nothing differs): sums alone, rows only if needed
        t_sums = bucket_sums_by_row(tgt, scope, mask)
    flagged = sorted(b for b in set(s_sums) | set(t_sums) if s_sums.get(b, (0, 0)) != t_sums.get(b, (0, 0)))
    if flagged and not changed:
        for b, oid, ctid, h in tgt.fetch(_physical_query(tgt, scope, 'target', mask, buckets=flagged), text=text):
            target.setdefault(b, []).append((int(oid), ctid, int(h)))
    drift = TableDrift(segments=1, differing_segments=int(bool(flagged)),
                       source_rows=sum(n for n, _s in s_sums.values()),
                       target_rows=sum(n for n, _s in t_sums.values()), whole=bool(flagged))
    if not flagged:
        return drift, [], []
    copy: List[Physical] = []
    delete: List[Physical] = []
    unresolved = []
    for b in flagged:
        sn, sk = s_sums.get(b, (0, 0))
        tn, tk = t_sums.get(b, (0, 0))
        k, h = _one_hash(tn - sn, tk - sk)
        if k is not None and k < 0:
            told = [r for r in changed.get(b, ()) if r[2] == h]  # rows too few: changed source rows of that hash
        elif k is not None:
            told = [r for r in target.get(b, ()) if r[2] == h]  # too many: any k target rows of it (equal rows)
        else:
            told = []
        if told and len(told) >= abs(k):
            (copy if k < 0 else delete).extend(told[:abs(k)])
        else:
            unresolved.append(b)
    left = []
    for b in unresolved:
        told = _settle_by_subsets(target.get(b, []), changed.get(b, []), s_sums.get(b, (0, 0)))
        if told is None:
            left.append(b)
        else:
            copy += told[0]
            delete += told[1]
    unresolved = left
    if unresolved:
        source: Dict[int, List[Physical]] = {}
        for b, oid, ctid, h in src.fetch(_physical_query(src, scope, 'source', mask, buckets=unresolved), text=text):
            source.setdefault(b, []).append((int(oid), ctid, int(h)))
        more_copy, more_delete = multiset_diff([r for b in unresolved for r in source.get(b, ())],
                                               [r for b in unresolved for r in target.get(b, ())])
        copy += more_copy
        delete += more_delete
    return drift, copy, delete
