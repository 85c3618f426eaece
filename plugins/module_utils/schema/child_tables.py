# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runbook migration step 2: create on the target the child tables that are missing.

Children are created for every keep-child parent of the plan (inheritance children with
``INHERITS``, partitions with ``PARTITION OF ... FOR VALUES``), and for the partitions of
declaratively partitioned drop-child parents (COPY into a partitioned parent needs its
partitions; Citus distributes partitions of a distributed parent by itself). Only what is
missing is created; the catalogs are read in a constant number of queries and the DDL runs in
batches of ``batch_size`` statements per transaction (one round trip per batch).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

try:
    import psycopg2
except ImportError:  # pragma: no cover - the modules report the missing library
    psycopg2 = None

from ansible_collections.icds.citus_migration.plugins.module_utils.schema.catalog import (
    children_by_parent, descendants, list_tables,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.citus_catalog import (
    LOCAL, citus_version, placements,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import (
    MigrationError, PlanError,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_ddl import (
    read_table_defs, render_table,
)

DEFAULT_BATCH_SIZE = 500
MAX_REPORTED_STATEMENTS = 1000


@dataclass
class ChildStep:
    name: str
    parent: str
    statements: List[Any]           # psycopg2 sql objects
    # Citus propagates DDL on its tables (e.g. a partition of a distributed table) to the
    # workers as the query text it received, and refuses a text with several commands: such
    # statements are sent one by one (still inside the batch's transaction).
    one_by_one: bool = False


@dataclass
class ChildPlan:
    schema: str
    parents: List[str]
    steps: List[ChildStep] = field(default_factory=list)
    existing_count: int = 0
    warnings: List[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.steps)


@dataclass
class ChildResult:
    parents: List[str]
    created: List[str]
    existing_count: int
    statements: List[str]
    statement_count: int
    statements_truncated: bool
    batches: int
    warnings: List[str]
    changed: bool

    def as_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


_TARGET_TABLES_SQL = """
SELECT c.relname, c.relkind,
       (SELECT p.relname FROM pg_catalog.pg_inherits i
          JOIN pg_catalog.pg_class p ON p.oid = i.inhparent
         WHERE i.inhrelid = c.oid ORDER BY i.inhseqno LIMIT 1)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relname = ANY(%s)
"""


def _target_tables(conn, names: Sequence[str], schema: str) -> Dict[str, tuple]:
    """name -> (relkind, first parent or None) on the target, one query."""
    with conn.cursor() as cur:
        cur.execute(_TARGET_TABLES_SQL, (schema, sorted(set(names))))
        return {name: (relkind, parent) for name, relkind, parent in cur.fetchall()}


def _eligible_parents(src_tables, plan) -> Dict[str, Any]:
    """Parent name -> rule: keep-child parents, and partitioned drop-child parents."""
    result = {}
    for table in src_tables:
        if table.parent is not None:
            continue
        rule = plan.classify(table.name)
        if rule is None:
            continue
        if rule.kind == 'keep_child' or (rule.kind == 'drop_child' and table.is_partitioned):
            result[table.name] = rule
    return result


def plan_children(src_conn, tgt_conn, plan, parents: Optional[Sequence[str]] = None,
                  schema: str = 'public', allow_missing_parents: bool = False) -> ChildPlan:
    """Decide which children to create and their statements; changes nothing.

    ``allow_missing_parents`` (dry runs of the whole runbook, where citus_bootstrap has not
    really created the parents): plan the children of missing parents as if they existed,
    with a warning, instead of failing."""
    src_tables = list_tables(src_conn, schema, with_columns=False)
    by_name = {t.name: t for t in src_tables}
    eligible = _eligible_parents(src_tables, plan)
    if parents is not None:
        for name in parents:
            if name in eligible:
                continue
            if name not in by_name:
                raise PlanError("parent '%s' does not exist on the source" % name)
            rule = plan.classify(name) if by_name[name].parent is None else None
            why = ('a child of %s' % by_name[name].parent if by_name[name].parent else
                   'unclassified' if rule is None else '%s in %s' % (rule.kind, rule.label))
            raise PlanError("'%s' is not a keep-child parent (nor a partitioned drop-child "
                            "parent) of the plan: %s" % (name, why))
        selected = sorted(set(parents))
    else:
        selected = sorted(eligible)

    kids = children_by_parent(src_tables)
    wanted = []  # (child, parent) parents first, depth first
    for parent in selected:
        for child in descendants(parent, kids):
            wanted.append((child.name, child.parent))

    target = _target_tables(tgt_conn, selected + [c for c, dummy in wanted], schema)
    missing_parents = [p for p in selected if p not in target]
    if missing_parents and not allow_missing_parents:
        raise MigrationError('parent table(s) missing on the target, run citus_bootstrap first: '
                             + ', '.join(missing_parents))
    early_warnings = ['parent %s does not exist on the target yet (citus_bootstrap creates it); '
                      'its children are planned as if it did' % p for p in missing_parents]
    citus_managed = set()
    if citus_version(tgt_conn) is not None:
        current = placements(tgt_conn, [p for dummy, p in wanted] + selected, schema)
        citus_managed = set(current)
        for parent in selected:
            actual = current.get(parent, LOCAL)
            if eligible[parent].kind == 'keep_child' and not actual.satisfies('local'):
                raise MigrationError("keep-child parent '%s' is distributed on the target (%s): "
                                     "Citus refuses inheritance children of distributed "
                                     "tables" % (parent, actual.describe()))

    result = ChildPlan(schema=schema, parents=selected)
    result.warnings.extend(early_warnings)
    missing = []
    for child, parent in wanted:
        if child in target:
            relkind, actual_parent = target[child]
            if actual_parent != parent:
                raise MigrationError("'%s' exists on the target but is not a child of '%s' "
                                     "(%s)" % (child, parent,
                                               'child of %s' % actual_parent if actual_parent
                                               else 'relkind %s, no parent' % relkind))
            result.existing_count += 1
        else:
            missing.append((child, parent))
    if not missing:
        _end_read(tgt_conn)
        return result
    defs = read_table_defs(src_conn, {c for c, dummy in missing} | {p for dummy, p in missing}, schema)
    _end_read(src_conn)
    for child, parent in missing:
        td = defs[child]
        result.warnings.extend("table '%s': foreign key '%s' not created on the target (%s)"
                               % (child, fk.name, fk.definition) for fk in td.foreign_keys)
        one_by_one = parent in citus_managed
        if one_by_one:
            citus_managed.add(child)  # its own children (sub-partitions) too
        result.steps.append(ChildStep(child, parent, render_table(td, defs), one_by_one))
    _end_read(tgt_conn)
    return result


def _end_read(conn) -> None:
    if not conn.autocommit:
        conn.rollback()


def _batches(steps: List[ChildStep], batch_size: int) -> List[List[ChildStep]]:
    """Group whole children so that a batch holds about ``batch_size`` statements."""
    batches: List[List[ChildStep]] = []
    current: List[ChildStep] = []
    count = 0
    for step in steps:
        if current and count + len(step.statements) > batch_size:
            batches.append(current)
            current, count = [], 0
        current.append(step)
        count += len(step.statements)
    if current:
        batches.append(current)
    return batches


def _round_trips(conn, batch: List[ChildStep]) -> List[str]:
    """The batch's statements as query texts: consecutive plain statements joined into one."""
    commands: List[str] = []
    pending: List[str] = []
    for step in batch:
        texts = [s.as_string(conn) for s in step.statements]
        if step.one_by_one:
            if pending:
                commands.append(';\n'.join(pending))
                pending = []
            commands.extend(texts)
        else:
            pending.extend(texts)
    if pending:
        commands.append(';\n'.join(pending))
    return commands


def apply_children(tgt_conn, cplan: ChildPlan, batch_size: int = DEFAULT_BATCH_SIZE,
                   check_mode: bool = False) -> ChildResult:
    """Create the missing children (unless check_mode), one transaction per batch."""
    if batch_size < 1:
        raise MigrationError('batch_size must be at least 1, not %d' % batch_size)
    created: List[str] = []
    reported: List[str] = []
    total = 0
    batches = _batches(cplan.steps, batch_size)
    for batch in batches:
        texts = [s.as_string(tgt_conn) for step in batch for s in step.statements]
        if not check_mode:
            try:
                with tgt_conn.cursor() as cur:
                    for command in _round_trips(tgt_conn, batch):
                        cur.execute(command)
                tgt_conn.commit()
            except psycopg2.Error as exc:
                tgt_conn.rollback()
                raise MigrationError(
                    'creating child tables failed in the batch starting at %s (batch rolled '
                    'back; %d children created before it are kept, re-run to continue): %s'
                    % (batch[0].name, len(created), ' '.join(str(exc).split())))
        created.extend(step.name for step in batch)
        room = MAX_REPORTED_STATEMENTS - len(reported)
        if room > 0:
            reported.extend(texts[:room])
        total += len(texts)
    return ChildResult(parents=cplan.parents, created=created,
                       existing_count=cplan.existing_count, statements=reported,
                       statement_count=total, statements_truncated=total > len(reported),
                       batches=0 if check_mode else len(batches), warnings=cplan.warnings,
                       changed=cplan.changed)
