# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read table definitions from a PostgreSQL catalog and render them as CREATE statements.

``read_table_defs`` reads any number of tables in five queries (tables, columns, constraints,
indexes, owned sequences). ``render_table`` turns one ``TableDef`` into a list of
``psycopg2.sql.Composed`` statements. Names are always composed with ``sql.Identifier``;
the only server text spliced in is what the server itself generated as SQL for that object
(``format_type``, ``pg_get_expr``, ``pg_get_constraintdef``, ``pg_get_partkeydef`` and the
part of ``pg_get_indexdef`` after the table name), so a table name that also appears inside
an expression or a string literal is never rewritten.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from dataclasses import dataclass, replace
from typing import Any, Dict, Iterable, List, Optional, Sequence

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - the modules report the missing library
    sql = None

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.sequences import (
    OWNED_SEQUENCES_FROM, OWNED_SEQUENCES_WHERE,
)


@dataclass(frozen=True)
class SequenceDef:
    """A sequence owned by a column (serial: ``kind='serial'``; identity: ``kind='identity'``)."""

    name: str
    column: str
    kind: str
    data_type: str
    start: int
    increment: int
    minvalue: int
    maxvalue: int
    cache: int
    cycle: bool
    last_value: Optional[int] = None  # None: never called (or not readable)


@dataclass(frozen=True)
class ColumnDef:
    name: str
    type_sql: str
    not_null: bool
    default: Optional[str] = None      # expression text (pg_get_expr); None when no default
    identity: str = ''                 # '' / 'a' (ALWAYS) / 'd' (BY DEFAULT)
    generated: str = ''                # '' / 's' (STORED generated column)
    collation: Optional[Sequence[str]] = None  # (schema, name) when not the type's default
    is_local: bool = True              # False: comes only from an inheritance parent


@dataclass(frozen=True)
class ConstraintDef:
    name: str
    contype: str                       # c check, p primary key, u unique, x exclusion, f foreign key
    definition: Any                    # pg_get_constraintdef text, or a composed sql object
    columns: Sequence[str] = ()
    is_local: bool = True              # False: inherited from a parent (or cloned for a partition)
    validated: bool = True


@dataclass(frozen=True)
class IndexDef:
    name: str
    unique: bool
    columns: Sequence[str]             # plain key columns (expressions are left out)
    tail: str                          # pg_get_indexdef from " USING " on
    definition: str                    # full pg_get_indexdef text, for reports and comparisons


@dataclass(frozen=True)
class TableDef:
    schema: str
    name: str
    relkind: str                       # r table, p partitioned table
    unlogged: bool
    columns: Sequence[ColumnDef]
    constraints: Sequence[ConstraintDef] = ()
    indexes: Sequence[IndexDef] = ()   # indexes not backing a constraint nor attached to a parent's
    sequences: Sequence[SequenceDef] = ()
    inherits: Sequence[str] = ()       # inheritance parents (not for partitions)
    partition_of: Optional[str] = None
    partition_bound: Optional[str] = None  # "FOR VALUES ..." / "DEFAULT"
    partition_key: Optional[str] = None    # pg_get_partkeydef, for partitioned tables

    @property
    def is_partitioned(self) -> bool:
        return self.relkind == 'p'

    @property
    def primary_key(self) -> Optional[ConstraintDef]:
        for con in self.constraints:
            if con.contype == 'p':
                return con
        return None

    @property
    def foreign_keys(self) -> List[ConstraintDef]:
        """Foreign keys are read but never rendered: they name other tables (report them)."""
        return [c for c in self.constraints if c.contype == 'f']

    def column(self, name: str) -> Optional[ColumnDef]:
        for col in self.columns:
            if col.name == name:
                return col
        return None

    def with_constraints(self, constraints: Sequence[ConstraintDef]) -> 'TableDef':
        return replace(self, constraints=tuple(constraints))


_TABLES_SQL = """
SELECT c.oid, c.relname, c.relkind, c.relpersistence = 'u',
       CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END,
       CASE WHEN c.relispartition THEN pg_catalog.pg_get_expr(c.relpartbound, c.oid) END,
       c.relispartition,
       ARRAY(SELECT p.relname FROM pg_catalog.pg_inherits i
               JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
              WHERE i.inhrelid = c.oid ORDER BY i.inhseqno)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s) AND c.relkind IN ('r', 'p')
"""

_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
       CASE WHEN a.attcollation <> t.typcollation THEN cn.nspname END,
       CASE WHEN a.attcollation <> t.typcollation THEN co.collname END,
       a.attislocal
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
 WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s) AND c.relkind IN ('r', 'p')
   AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"""

_CONSTRAINTS_SQL = """
SELECT k.conrelid, k.conname, k.contype, pg_catalog.pg_get_constraintdef(k.oid),
       ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum
              ORDER BY u.ord),
       k.conislocal AND k.conparentid = 0, k.convalidated
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s) AND c.relkind IN ('r', 'p')
   AND k.contype IN ('c', 'p', 'u', 'x', 'f')
 ORDER BY k.conrelid, position(k.contype IN 'puxcf'), k.conname
"""

# Indexes that back a constraint are created by the constraint; indexes attached to a
# parent's partitioned index are cloned by PARTITION OF: both are left out.
_INDEXES_SQL = """
SELECT x.indrelid, ic.relname, x.indisunique, pg_catalog.pg_get_indexdef(x.indexrelid),
       pg_catalog.quote_ident(ic.relname), pg_catalog.quote_ident(n.nspname),
       pg_catalog.quote_ident(c.relname),
       ARRAY(SELECT a.attname FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS u(attnum, ord)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = u.attnum
              WHERE u.ord <= x.indnkeyatts ORDER BY u.ord)
  FROM pg_catalog.pg_index x
  JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid
  JOIN pg_catalog.pg_class c ON c.oid = x.indrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s AND c.relname = ANY(%(names)s) AND c.relkind IN ('r', 'p')
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                    WHERE k.conindid = x.indexrelid AND k.conrelid = x.indrelid
                      AND k.contype IN ('p', 'u', 'x'))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i WHERE i.inhrelid = x.indexrelid)
 ORDER BY x.indrelid, ic.relname
"""

_SEQUENCES_SQL = """
SELECT dep.refobjid, s.relname, a.attname, dep.deptype,
       pg_catalog.format_type(q.seqtypid, NULL), q.seqstart, q.seqincrement, q.seqmin,
       q.seqmax, q.seqcache, q.seqcycle, ps.last_value
""" + OWNED_SEQUENCES_FROM + OWNED_SEQUENCES_WHERE + """
   AND c.relname = ANY(%(names)s)
 ORDER BY dep.refobjid, a.attnum
"""


def read_table_defs(conn, names: Iterable[str], schema: str = 'public') -> Dict[str, TableDef]:
    """Definitions of the named tables that exist (missing names are simply absent).

    Five queries whatever the number of tables.
    """
    wanted = sorted(set(names))
    if not wanted:
        return {}
    params = {'schema': schema, 'names': wanted}
    with conn.cursor() as cur:
        cur.execute(_TABLES_SQL, params)
        tables = cur.fetchall()
        cur.execute(_COLUMNS_SQL, params)
        columns = cur.fetchall()
        cur.execute(_CONSTRAINTS_SQL, params)
        constraints = cur.fetchall()
        cur.execute(_INDEXES_SQL, params)
        indexes = cur.fetchall()
        cur.execute(_SEQUENCES_SQL, params)
        sequences = cur.fetchall()

    cols_by: Dict[int, List[ColumnDef]] = {}
    for relid, name, typ, notnull, default, ident, gen, collnsp, collname, local in columns:
        cols_by.setdefault(relid, []).append(ColumnDef(
            name=name, type_sql=typ, not_null=notnull, default=default, identity=ident or '',
            generated=gen or '', collation=(collnsp, collname) if collname else None,
            is_local=local))
    cons_by: Dict[int, List[ConstraintDef]] = {}
    for relid, name, contype, definition, cols, local, validated in constraints:
        cons_by.setdefault(relid, []).append(ConstraintDef(
            name=name, contype=contype, definition=definition, columns=tuple(cols),
            is_local=local, validated=validated))
    idx_by: Dict[int, List[IndexDef]] = {}
    for relid, name, unique, definition, q_idx, q_schema, q_table, cols in indexes:
        idx_by.setdefault(relid, []).append(IndexDef(
            name=name, unique=unique, columns=tuple(cols), definition=definition,
            tail=_index_tail(definition, unique, q_idx, q_schema, q_table)))
    seq_by: Dict[int, List[SequenceDef]] = {}
    for (relid, name, column, deptype, typ, start, inc, minv, maxv, cache, cycle,
         last) in sequences:
        seq_by.setdefault(relid, []).append(SequenceDef(
            name=name, column=column, kind='identity' if deptype == 'i' else 'serial',
            data_type=typ, start=start, increment=inc, minvalue=minv, maxvalue=maxv,
            cache=cache, cycle=cycle, last_value=last))

    result: Dict[str, TableDef] = {}
    for oid, name, relkind, unlogged, partkey, bound, is_partition, parents in tables:
        result[name] = TableDef(
            schema=schema, name=name, relkind=relkind, unlogged=unlogged,
            columns=tuple(cols_by.get(oid, ())), constraints=tuple(cons_by.get(oid, ())),
            indexes=tuple(idx_by.get(oid, ())), sequences=tuple(seq_by.get(oid, ())),
            inherits=() if is_partition else tuple(parents),
            partition_of=parents[0] if is_partition and parents else None,
            partition_bound=bound, partition_key=partkey)
    return result


def existing_relations(conn, names: Iterable[str], schema: str = 'public') -> Dict[str, str]:
    """name -> relkind for the named relations that exist in ``schema`` (one query)."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    with conn.cursor() as cur:
        cur.execute('SELECT c.relname, c.relkind FROM pg_catalog.pg_class c '
                    'JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace '
                    'WHERE n.nspname = %s AND c.relname = ANY(%s)', (schema, wanted))
        return dict(cur.fetchall())


def _index_tail(definition: str, unique: bool, q_idx: str, q_schema: str, q_table: str) -> str:
    """The part of pg_get_indexdef after the table name (" USING method (...) ...").

    pg_get_indexdef always starts with ``CREATE [UNIQUE] INDEX <idx> ON [ONLY] <schema>.<table>``
    spelled with quote_ident; the prefix is matched exactly, never searched for.
    """
    head = 'CREATE %sINDEX %s ON ' % ('UNIQUE ' if unique else '', q_idx)
    for only in ('', 'ONLY '):
        prefix = '%s%s%s.%s' % (head, only, q_schema, q_table)
        if definition.startswith(prefix + ' USING '):
            return definition[len(prefix):]
    raise MigrationError('cannot parse the definition of index %s: %s' % (q_idx, definition))


# --------------------------------------------------------------------------- rendering


def _qualified(schema: str, name: str):
    return sql.Identifier(schema, name)


def _sequence_options(seq: SequenceDef, with_type: bool = True):
    """Sequence options; an identity sequence takes its type from the column (no AS)."""
    return sql.SQL('{typ}INCREMENT BY {inc} MINVALUE {minv} MAXVALUE {maxv} '
                   'START WITH {start} CACHE {cache} {cycle}').format(
        typ=sql.SQL('AS {} ').format(sql.SQL(seq.data_type)) if with_type else sql.SQL(''),
        inc=sql.Literal(seq.increment),
        minv=sql.Literal(seq.minvalue), maxv=sql.Literal(seq.maxvalue),
        start=sql.Literal(seq.start), cache=sql.Literal(seq.cache),
        cycle=sql.SQL('CYCLE' if seq.cycle else 'NO CYCLE'))


def _column_sql(td: TableDef, col: ColumnDef):
    parts = [sql.Identifier(col.name), sql.SQL(col.type_sql)]
    if col.collation:
        parts.append(sql.SQL('COLLATE {}').format(sql.Identifier(*col.collation)))
    if col.generated == 's' and col.default is not None:
        parts.append(sql.SQL('GENERATED ALWAYS AS ({}) STORED').format(sql.SQL(col.default)))
    elif col.identity:
        seq = next((s for s in td.sequences if s.column == col.name and s.kind == 'identity'),
                   None)
        ident = sql.SQL('GENERATED ALWAYS AS IDENTITY' if col.identity == 'a'
                        else 'GENERATED BY DEFAULT AS IDENTITY')
        if seq is not None:
            ident = sql.SQL('{} (SEQUENCE NAME {} {})').format(
                ident, _qualified(td.schema, seq.name), _sequence_options(seq, with_type=False))
        parts.append(ident)
    elif col.default is not None:
        parts.append(sql.SQL('DEFAULT {}').format(sql.SQL(col.default)))
    if col.not_null:
        parts.append(sql.SQL('NOT NULL'))
    return sql.SQL(' ').join(parts)


def _constraint_sql(con: ConstraintDef):
    definition = con.definition
    if isinstance(definition, str):
        definition = sql.SQL(definition)
    return sql.SQL('CONSTRAINT {} {}').format(sql.Identifier(con.name), definition)


def primary_key_constraint(name: str, columns: Sequence[str]) -> ConstraintDef:
    """A PRIMARY KEY constraint built from names (definition composed with sql.Identifier)."""
    definition = sql.SQL('PRIMARY KEY ({})').format(
        sql.SQL(', ').join(sql.Identifier(c) for c in columns))
    return ConstraintDef(name=name, contype='p', definition=definition, columns=tuple(columns))


def index_sql(td: TableDef, idx: IndexDef, table_name: Optional[str] = None):
    """CREATE INDEX for ``idx`` on ``table_name`` (default: the table itself), same index name."""
    return sql.SQL('CREATE {unique}INDEX {name} ON {table}{tail}').format(
        unique=sql.SQL('UNIQUE ' if idx.unique else ''), name=sql.Identifier(idx.name),
        table=_qualified(td.schema, table_name or td.name), tail=sql.SQL(idx.tail))


def render_table(td: TableDef, parents: Optional[Dict[str, TableDef]] = None,
                 standalone: bool = False, name: Optional[str] = None) -> List:
    """Statements creating ``td`` (as ``name``, default its own name), in execution order.

    ``standalone``: create a top-level table with every column and constraint, ignoring any
    inheritance parent or partition parent the source table has. Otherwise children are
    created with ``INHERITS (parent)`` / ``PARTITION OF parent FOR VALUES ...`` and carry only
    what is their own (local columns and constraints, defaults that differ from the parent's,
    their own indexes); ``parents`` gives the parent definitions to compare defaults with.
    Foreign keys are never rendered (see ``TableDef.foreign_keys``).
    """
    name = name or td.name
    table = _qualified(td.schema, name)
    parents = parents or {}
    mode = 'standalone'
    if not standalone and td.partition_of:
        mode = 'partition'
    elif not standalone and td.inherits:
        mode = 'inherits'

    statements = []
    serials = [s for s in td.sequences if s.kind == 'serial']
    for seq in serials:
        statements.append(sql.SQL('CREATE SEQUENCE {} {}').format(
            _qualified(td.schema, seq.name), _sequence_options(seq)))

    constraints = [c for c in td.constraints if c.contype != 'f']
    if mode != 'standalone':
        constraints = [c for c in constraints if c.is_local]
    inline_cons = [c for c in constraints if c.validated]
    later_cons = [c for c in constraints if not c.validated]

    alters = []
    if mode == 'partition':
        columns = []
    elif mode == 'inherits':
        columns = [c for c in td.columns if c.is_local]
    else:
        columns = list(td.columns)
    if mode != 'standalone':
        parent_defs = [parents[p] for p in (td.inherits or (td.partition_of,)) if p in parents]
        listed = {c.name for c in columns}
        for col in td.columns:
            if col.name in listed:
                continue
            parent_col = next((p.column(col.name) for p in parent_defs if p.column(col.name)),
                              None)
            if parent_col is None or col.default != parent_col.default:
                if col.default is not None and not col.generated:
                    alters.append(sql.SQL('ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}').format(
                        table, sql.Identifier(col.name), sql.SQL(col.default)))
                elif col.default is None and parent_col is not None \
                        and parent_col.default is not None:
                    alters.append(sql.SQL('ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT').format(
                        table, sql.Identifier(col.name)))
            if col.not_null and (parent_col is None or not parent_col.not_null):
                alters.append(sql.SQL('ALTER TABLE {} ALTER COLUMN {} SET NOT NULL').format(
                    table, sql.Identifier(col.name)))

    body = [_column_sql(td, c) for c in columns] + [_constraint_sql(c) for c in inline_cons]
    head = sql.SQL('CREATE {unlogged}TABLE {table}').format(
        unlogged=sql.SQL('UNLOGGED ' if td.unlogged else ''), table=table)
    if mode == 'partition':
        create = sql.SQL('{head} PARTITION OF {parent}{body} {bound}').format(
            head=head, parent=_qualified(td.schema, td.partition_of),
            body=sql.SQL(' ({})').format(sql.SQL(', ').join(body)) if body else sql.SQL(''),
            bound=sql.SQL(td.partition_bound))
    else:
        create = sql.SQL('{head} ({body})').format(head=head, body=sql.SQL(', ').join(body))
        if mode == 'inherits':
            create = sql.SQL('{} INHERITS ({})').format(create, sql.SQL(', ').join(
                _qualified(td.schema, p) for p in td.inherits))
    if td.partition_key:
        create = sql.SQL('{} PARTITION BY {}').format(create, sql.SQL(td.partition_key))
    statements.append(create)
    statements.extend(alters)
    for con in later_cons:
        statements.append(sql.SQL('ALTER TABLE {} ADD {}').format(table, _constraint_sql(con)))
    for seq in serials:
        statements.append(sql.SQL('ALTER SEQUENCE {} OWNED BY {}').format(
            _qualified(td.schema, seq.name), sql.Identifier(td.schema, name, seq.column)))
    for seq in td.sequences:
        restart = _restart_value(seq)
        if restart is not None:
            statements.append(sql.SQL('ALTER SEQUENCE {} RESTART WITH {}').format(
                _qualified(td.schema, seq.name), sql.Literal(restart)))
    for idx in td.indexes:
        statements.append(index_sql(td, idx, name))
    return statements


def _restart_value(seq: SequenceDef) -> Optional[int]:
    """Next value the source sequence would hand out, when it has been used and is in range."""
    if seq.last_value is None:
        return None
    nxt = seq.last_value + seq.increment
    if nxt < seq.minvalue or nxt > seq.maxvalue:
        return None
    return nxt
