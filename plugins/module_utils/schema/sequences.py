# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""After the copy: no target sequence may be behind its source sequence.

The bootstrap starts each target sequence where the source's was then, but the source keeps
handing out ids until the cutover, and COPY writes the ids without touching the target's
sequence. The first insert on the target would then reuse an id that was copied. This moves
every target sequence owned by a column (serial or identity) to at least the source's value,
matched by owning table and column, and never moves one backwards.

Plain Python, two catalog queries per side whatever the number of tables.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from dataclasses import dataclass
from typing import Collection, Dict, Iterable, List, Optional, Set, Tuple

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - reported by the module's psycopg2 check
    sql = None

# Sequences owned by a column (serial: deptype 'a'; identity: 'i') of the tables of a schema:
# the joins and conditions shared with table_ddl's reading of table definitions.
OWNED_SEQUENCES_FROM = """
  FROM pg_catalog.pg_depend dep
  JOIN pg_catalog.pg_class c ON c.oid = dep.refobjid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_class s ON s.oid = dep.objid AND s.relkind = 'S'
  JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_catalog.pg_sequence q ON q.seqrelid = s.oid
  JOIN pg_catalog.pg_attribute a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
  LEFT JOIN pg_catalog.pg_sequences ps
         ON ps.schemaname = sn.nspname AND ps.sequencename = s.relname
"""
OWNED_SEQUENCES_WHERE = """
 WHERE dep.classid = 'pg_catalog.pg_class'::regclass
   AND dep.refclassid = 'pg_catalog.pg_class'::regclass
   AND dep.deptype IN ('a', 'i') AND dep.refobjsubid > 0
   AND n.nspname = %(schema)s AND c.relkind IN ('r', 'p')
"""

# The raw state (last_value, is_called) of every sequence in one statement: pg_sequences shows
# NULL for a sequence not called since a RESTART, whose next value is still known.
_OWNED_SQL = """
SELECT c.relname, a.attname, s.relname, q.seqincrement, ps.last_value,
       (xpath('/row/last_value/text()', x.doc))[1]::text::bigint,
       (xpath('/row/is_called/text()', x.doc))[1]::text::boolean
""" + OWNED_SEQUENCES_FROM + """
  CROSS JOIN LATERAL (
       SELECT CASE WHEN pg_catalog.has_sequence_privilege(s.oid, 'SELECT')
                   THEN pg_catalog.query_to_xml(pg_catalog.format(
                            'SELECT last_value, is_called FROM %%I.%%I', sn.nspname, s.relname),
                        false, true, '') END AS doc) x
""" + OWNED_SEQUENCES_WHERE + """
   AND (%(names)s::text[] IS NULL OR c.relname = ANY(%(names)s::text[]))
 ORDER BY c.relname, a.attnum
"""

Key = Tuple[str, str]  # (owning table, column)


@dataclass(frozen=True)
class OwnedSequence:
    table: str
    column: str
    sequence: str
    increment: int
    last_value: Optional[int]  # None: never used (or not readable by this role)
    next_value: Optional[int] = None  # what nextval() would return; None: not readable

    @property
    def effective_next(self) -> Optional[int]:
        if self.next_value is not None:
            return self.next_value
        return None if self.last_value is None else self.last_value + self.increment


@dataclass(frozen=True)
class SequenceChange:
    """A target sequence behind its source: ``set_to`` is the source's last value."""

    table: str
    column: str
    sequence: str
    source_last_value: int
    target_last_value: Optional[int]
    increment: int = 1

    @property
    def set_to(self) -> int:
        return self.source_last_value

    def as_dict(self) -> Dict[str, object]:
        return {'table': self.table, 'column': self.column, 'sequence': self.sequence,
                'source_last_value': self.source_last_value,
                'target_last_value': self.target_last_value, 'set_to': self.set_to}


@dataclass
class SequencePlan:
    changes: List[SequenceChange]
    in_step: List[str]           # 'table.column': already at or past the source
    missing_on_target: List[str]  # 'table.column': the table is there, no owned sequence
    unused_on_source: List[str]   # 'table.column': the source sequence was never used
    not_on_target: List[str]      # 'table.column': the table is not on the target (not migrated)


def read_owned_sequences(conn, schema: str = 'public',
                         tables: Optional[Iterable[str]] = None) -> Dict[Key, OwnedSequence]:
    """(table, column) -> the sequence the column owns, with its last value."""
    names = sorted(set(tables)) if tables is not None else None
    with conn.cursor() as cur:
        cur.execute(_OWNED_SQL, {'schema': schema, 'names': names})
        rows = cur.fetchall()
    if not conn.autocommit:
        conn.rollback()
    out = {}
    for table, column, name, inc, last, raw, called in rows:
        nxt = None if raw is None else (int(raw) + int(inc) if called else int(raw))
        out[(table, column)] = OwnedSequence(table, column, name, int(inc),
                                             None if last is None else int(last), nxt)
    return out


def _behind(target: OwnedSequence, source_last: int) -> bool:
    """Would the target's next value be one the source has already handed out?"""
    nxt = target.effective_next
    if nxt is None:
        return True
    wanted = source_last + target.increment
    return nxt < wanted if target.increment > 0 else nxt > wanted


def read_table_names(conn, schema: str = 'public') -> Set[str]:
    """Names of the tables (plain and partitioned) of ``schema``."""
    with conn.cursor() as cur:
        cur.execute("SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
                    (schema,))
        names = {r[0] for r in cur.fetchall()}
    if not conn.autocommit:
        conn.rollback()
    return names


def plan_sequence_sync(source: Dict[Key, OwnedSequence], target: Dict[Key, OwnedSequence],
                       target_tables: Optional[Collection[str]] = None) -> SequencePlan:
    """Which target sequences to move (pure: no database). With ``target_tables``, a source
    table absent from the target (one the table plan leaves out) is listed apart."""
    plan = SequencePlan([], [], [], [], [])
    for key in sorted(source):
        src = source[key]
        label = '%s.%s' % key
        if target_tables is not None and key[0] not in target_tables:
            plan.not_on_target.append(label)
            continue
        if src.last_value is None:
            plan.unused_on_source.append(label)
            continue
        tgt = target.get(key)
        if tgt is None:
            plan.missing_on_target.append(label)
        elif _behind(tgt, src.last_value):
            plan.changes.append(SequenceChange(key[0], key[1], tgt.sequence, src.last_value,
                                               tgt.last_value, tgt.increment))
        else:
            plan.in_step.append(label)
    return plan


def apply_sequence_sync(conn, changes: Iterable[SequenceChange],
                        schema: str = 'public') -> List[SequenceChange]:
    """setval every change in one transaction; returns the changes made. A target sequence
    that has meanwhile gone past the value is left alone (re-checked in the same statement)."""
    moved = []
    with conn.cursor() as cur:
        for change in changes:
            seq = sql.Identifier(schema, change.sequence)
            past = '>=' if change.increment > 0 else '<='
            cur.execute(sql.SQL(
                'SELECT pg_catalog.setval(%(reg)s::regclass, %(value)s, true) '
                'WHERE NOT EXISTS (SELECT 1 FROM {} s WHERE CASE WHEN s.is_called '
                'THEN s.last_value + %(inc)s ELSE s.last_value END '
                + past + ' %(value)s + %(inc)s)').format(seq),
                {'reg': seq.as_string(conn), 'value': change.set_to, 'inc': change.increment})
            if cur.rowcount:
                moved.append(change)
    conn.commit()
    return moved
