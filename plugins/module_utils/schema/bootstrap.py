# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runbook migration step 1: create the parent and plain tables on the target, and distribute them.

``plan_bootstrap`` only reads (source catalog, target catalog, Citus metadata) and returns the
exact statements per table; ``apply_bootstrap`` runs them, one transaction per table (create
and distribute together, so a failure never leaves a half-made table behind). A table that
already exists is never altered: it is reported, and distributed only when it is still a plain
local table the plan wants distributed. An existing table distributed differently from the plan
is an error.

Every way a created table's definition differs from the source's is reported in ``changes``
(also in check mode): a primary key added, extended or replaced by the plan's, a column made
NOT NULL by that key, a UNIQUE constraint folded into it. A plan key that does not contain
every column of the source's primary key would lose a uniqueness guarantee: that is refused.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

try:
    import psycopg2
    from psycopg2 import sql
except ImportError:  # pragma: no cover - the modules report the missing library
    psycopg2 = None
    sql = None

from ansible_collections.icds.citus_migration.plugins.module_utils.schema.catalog import list_tables
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.citus_catalog import (
    LOCAL, citus_version, distribute_sql, placements,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import (
    MigrationError, PlanError,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_ddl import (
    TableDef, existing_relations, primary_key_constraint, read_table_defs, render_table,
)

DISTRIBUTION_MODES = ('auto', 'required', 'skip')
CREATED_KINDS = ('drop_child', 'keep_child', 'plain')


@dataclass
class TableStep:
    """What bootstrap does for one table: its statements (possibly none) and why."""

    name: str
    kind: str                       # plan family kind
    wanted: str                     # plan distribution, e.g. 'hash(supervisor_id)'
    create: bool = False
    distribute: Optional[Dict[str, Any]] = None  # {'method': 'hash', 'column': ...}
    existing_placement: Optional[str] = None
    statements: List[Any] = field(default_factory=list)  # psycopg2 sql objects
    changes: List[Dict[str, Any]] = field(default_factory=list)  # definition vs the source


@dataclass
class BootstrapPlan:
    schema: str
    citus_version: Optional[str]
    distributing: bool
    steps: List[TableStep] = field(default_factory=list)
    skipped_distribution: Optional[Dict[str, Any]] = None
    unclassified: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    create_schema: bool = False

    @property
    def changed(self) -> bool:
        return self.create_schema or any(s.statements for s in self.steps)


@dataclass
class BootstrapResult:
    created_tables: List[str]
    distributed: Dict[str, Dict[str, Any]]
    existing: List[str]
    existing_distribution: Dict[str, str]
    skipped_distribution: Optional[Dict[str, Any]]
    statements: List[str]
    changes: List[Dict[str, Any]]
    unclassified: List[str]
    warnings: List[str]
    citus_version: Optional[str]
    changed: bool

    def as_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


def _select_tables(src_tables, plan, only: Optional[Sequence[str]]):
    """(table info, rule) for every top-level table bootstrap creates; plus unclassified names."""
    selected, unclassified = [], []
    top_level = {t.name: t for t in src_tables if t.parent is None}
    for table in sorted(top_level.values(), key=lambda t: t.name):
        rule = plan.classify(table.name)
        if rule is None:
            unclassified.append(table.name)
        elif rule.kind in CREATED_KINDS:
            selected.append((table, rule))
    if only is not None:
        names = set(only)
        by_name = {t.name for t, dummy in selected}
        for name in sorted(names - by_name):
            if name in top_level:
                rule = plan.classify(name)
                why = ('kind %s in %s' % (rule.kind, rule.label)) if rule else 'no plan rule'
                raise PlanError("table '%s' is not a parent or plain table to create (%s)"
                                % (name, why))
            known = {t.name: t for t in src_tables}
            if name in known:
                raise PlanError("table '%s' is a child of '%s' on the source: bootstrap creates "
                                "parent and plain tables only (children: citus_child_tables)"
                                % (name, known[name].parent))
            raise PlanError("table '%s' does not exist on the source" % name)
        selected = [(t, r) for t, r in selected if t.name in names]
    return selected, unclassified


def _columns_text(columns: Optional[Sequence[str]]) -> str:
    return '(%s)' % ', '.join(columns) if columns else 'none'


def _adjust_keys(td: TableDef, rule, distribute_column: Optional[str],
                 warnings: List[str], changes: Optional[List[Dict[str, Any]]] = None) -> TableDef:
    """Apply the plan's primary key; check unique keys hold the distribution column.

    Appends to ``changes`` every way the result differs from the source's definition. A plan
    key missing a column of the source's primary key is refused (PlanError).
    """
    changes = [] if changes is None else changes
    constraints = list(td.constraints)
    pk = td.primary_key
    if rule.primary_key and (pk is None or tuple(pk.columns) != tuple(rule.primary_key)):
        missing = [c for c in rule.primary_key if td.column(c) is None]
        if missing:
            raise PlanError("table '%s' has no column(s) %s named in the primary_key of %s"
                            % (td.name, ', '.join(missing), rule.label))
        if pk is not None:
            lost = [c for c in pk.columns if c not in rule.primary_key]
            if lost:
                raise PlanError(
                    "table '%s': the primary key %s of %s does not contain %s of the source's "
                    "primary key '%s' %s: the target would lose the uniqueness the source "
                    "guarantees (a plan key must contain every column of the source key)"
                    % (td.name, _columns_text(rule.primary_key), rule.label,
                       ', '.join("'%s'" % c for c in lost), pk.name, _columns_text(pk.columns)))
        if pk is None:
            action = 'added'
        elif set(pk.columns) == set(rule.primary_key):
            action = 'reordered'
        else:
            action = 'extended'
        changes.append({'table': td.name, 'change': 'primary_key', 'action': action,
                        'before': list(pk.columns) if pk else None,
                        'after': list(rule.primary_key), 'rule': rule.label})
        for name in rule.primary_key:
            if not td.column(name).not_null:
                changes.append({'table': td.name, 'change': 'not_null', 'column': name,
                                'reason': 'column of the primary key'})
        pk_name = pk.name if pk else '%s_pkey' % td.name[:58]
        new_pk = primary_key_constraint(pk_name, rule.primary_key)
        # PostgreSQL silently folds a UNIQUE identical to the primary key into it: say so.
        for con in constraints:
            if con.contype == 'u' and tuple(con.columns) == tuple(rule.primary_key):
                warnings.append("table '%s': unique constraint '%s' (%s) is the new primary "
                                "key, not created separately"
                                % (td.name, con.name, ', '.join(con.columns)))
                changes.append({'table': td.name, 'change': 'unique_dropped',
                                'constraint': con.name, 'columns': list(con.columns),
                                'reason': 'identical to the new primary key'})
        constraints = [new_pk] + [c for c in constraints if c.contype != 'p' and not (
            c.contype == 'u' and tuple(c.columns) == tuple(rule.primary_key))]
        td = td.with_constraints(constraints)
    if distribute_column is None:
        return td
    for con in td.constraints:
        if con.contype in ('p', 'u', 'x') and distribute_column not in con.columns:
            what = {'p': 'primary key', 'u': 'unique constraint', 'x': 'exclusion constraint'}
            hint = (' (set primary_key in %s to a key that includes it)' % rule.label
                    if con.contype == 'p' else
                    ' (drop it on the source or change the plan: Citus requires unique keys '
                    'to include the distribution column)')
            raise MigrationError("table '%s': %s '%s' (%s) does not include the distribution "
                                 "column '%s'%s" % (td.name, what[con.contype], con.name,
                                                    ', '.join(con.columns), distribute_column,
                                                    hint))
    for idx in td.indexes:
        if idx.unique and distribute_column not in idx.columns:
            raise MigrationError("table '%s': unique index '%s' does not include the "
                                 "distribution column '%s' (Citus requires unique keys to "
                                 "include it): %s" % (td.name, idx.name, distribute_column,
                                                      idx.definition))
    return td


def plan_bootstrap(src_conn, tgt_conn, plan, tables: Optional[Sequence[str]] = None,
                   distribution: str = 'auto', schema: str = 'public') -> BootstrapPlan:
    """Read both catalogs and decide every statement; changes nothing."""
    if distribution not in DISTRIBUTION_MODES:
        raise MigrationError('distribution must be one of %s, not %r'
                             % (', '.join(DISTRIBUTION_MODES), distribution))
    src_tables = list_tables(src_conn, schema)
    selected, unclassified = _select_tables(src_tables, plan, tables)
    errors = plan.validate_against([t for t, dummy in selected])
    if errors:
        raise PlanError('the plan does not fit the source: ' + '; '.join(errors))
    for table, rule in selected:
        if rule.kind == 'keep_child' and rule.distribution.kind != 'local':
            raise PlanError("%s: keep-child parent '%s' must stay local (Citus refuses "
                            "inheritance with distributed tables), plan says %s"
                            % (rule.label, table.name, rule.distribution.describe()))

    version = citus_version(tgt_conn)
    skipped = None
    if distribution == 'required' and version is None:
        raise MigrationError('distribution: required, but the citus extension is not created '
                             'in the target database: run CREATE EXTENSION citus there first '
                             '(nothing was created)')
    distributing = distribution != 'skip' and version is not None
    names = [t.name for t, dummy in selected]
    existing = existing_relations(tgt_conn, names, schema)
    current = placements(tgt_conn, names, schema) if version is not None else {}

    result = BootstrapPlan(schema=schema, citus_version=version, distributing=distributing,
                           unclassified=unclassified)
    result.create_schema = not schema_exists(tgt_conn, schema)
    to_create = [t.name for t, dummy in selected if t.name not in existing]
    defs = read_table_defs(src_conn, to_create, schema)
    would_distribute = {}
    for table, rule in selected:
        dist = rule.distribution
        step = TableStep(name=table.name, kind=rule.kind, wanted=dist.describe())
        result.steps.append(step)
        if table.name in existing:
            relkind = existing[table.name]
            if relkind not in ('r', 'p'):
                raise MigrationError("'%s' exists on the target but is not a table (relkind %s)"
                                     % (table.name, relkind))
            actual = current.get(table.name, LOCAL)
            step.existing_placement = actual.describe()
            if actual.satisfies(dist.kind, dist.column):
                continue
            if actual.kind not in ('local', 'citus_local') or dist.kind == 'local':
                raise MigrationError("table '%s' exists on the target distributed as %s, the "
                                     "plan wants %s (%s): not changing an existing "
                                     "distribution" % (table.name, actual.describe(),
                                                       dist.describe(), rule.label))
        else:
            td = _adjust_keys(defs[table.name], rule,
                              dist.column if distributing and dist.kind == 'hash' else None,
                              result.warnings, step.changes)
            result.warnings.extend(
                "table '%s': foreign key '%s' not created on the target (%s)"
                % (td.name, fk.name, fk.definition) for fk in td.foreign_keys)
            step.create = True
            step.statements.extend(render_table(td, standalone=True))
        if dist.kind == 'local':
            continue
        if distributing:
            step.distribute = {'method': dist.kind, 'column': dist.column}
            step.statements.append(distribute_sql(tgt_conn, schema, table.name, dist.kind,
                                                  dist.column))
        else:
            would_distribute[table.name] = dist.describe()
    if would_distribute:
        reason = ('distribution: skip' if distribution == 'skip' else
                  'the citus extension is not created in the target database')
        skipped = {'reason': reason, 'tables': would_distribute}
    result.skipped_distribution = skipped
    if not tgt_conn.autocommit:
        tgt_conn.rollback()
    return result


def schema_exists(conn, schema: str) -> bool:
    with conn.cursor() as cur:
        cur.execute('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s', (schema,))
        return cur.fetchone() is not None


def apply_bootstrap(tgt_conn, bplan: BootstrapPlan, check_mode: bool = False) -> BootstrapResult:
    """Run the statements (unless check_mode): one transaction per table."""
    statements: List[str] = []
    created: List[str] = []
    distributed: Dict[str, Dict[str, Any]] = {}
    if bplan.create_schema:
        stmt = sql.SQL('CREATE SCHEMA IF NOT EXISTS {}').format(sql.Identifier(bplan.schema))
        statements.append(stmt.as_string(tgt_conn))
        if not check_mode:
            _run(tgt_conn, [statements[-1]], bplan.schema, created)
    for step in bplan.steps:
        texts = [s.as_string(tgt_conn) for s in step.statements]
        if not texts:
            continue
        if not check_mode:
            _run(tgt_conn, texts, step.name, created)
        statements.extend(texts)
        if step.create:
            created.append(step.name)
        if step.distribute:
            distributed[step.name] = step.distribute
    return BootstrapResult(
        created_tables=created, distributed=distributed,
        existing=[s.name for s in bplan.steps if not s.create],
        existing_distribution={s.name: s.existing_placement for s in bplan.steps
                               if not s.create and s.existing_placement},
        skipped_distribution=bplan.skipped_distribution, statements=statements,
        changes=[c for s in bplan.steps if s.create for c in s.changes],
        unclassified=bplan.unclassified, warnings=bplan.warnings,
        citus_version=bplan.citus_version, changed=bplan.changed)


def _run(conn, texts: List[str], what: str, done: List[str]) -> None:
    try:
        with conn.cursor() as cur:
            for text in texts:
                cur.execute(text)
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        message = ' '.join(str(exc).split())
        raise MigrationError("creating '%s' on the target failed (rolled back; %d table(s) "
                             "created before it are kept, re-run to continue): %s"
                             % (what, len(done), message))


def describe_change(change: Dict[str, Any]) -> str:
    """One line for a change of ``BootstrapResult.changes``."""
    if change['change'] == 'primary_key':
        return ('primary key %s: %s -> %s (%s)'
                % (change['action'], _columns_text(change['before']),
                   _columns_text(change['after']), change['rule']))
    if change['change'] == 'not_null':
        return 'column %s made NOT NULL (%s)' % (change['column'], change['reason'])
    return 'unique constraint %s %s not created (%s)' % (
        change['constraint'], _columns_text(change['columns']), change['reason'])


def changes_diff(changes: Sequence[Dict[str, Any]]) -> List[Dict[str, str]]:
    """Ansible ``diff`` entries: per table, its source definition and the target's, as far
    as they differ (keys, NOT NULL, UNIQUE)."""
    by_table: Dict[str, List[Dict[str, Any]]] = {}
    for change in changes:
        by_table.setdefault(change['table'], []).append(change)
    result = []
    for table in sorted(by_table):
        before, after = [], []
        for change in by_table[table]:
            if change['change'] == 'primary_key':
                if change['before']:
                    before.append('PRIMARY KEY %s' % _columns_text(change['before']))
                after.append('PRIMARY KEY %s' % _columns_text(change['after']))
            elif change['change'] == 'not_null':
                before.append('%s NULL' % change['column'])
                after.append('%s NOT NULL' % change['column'])
            else:
                before.append('CONSTRAINT %s UNIQUE %s' % (change['constraint'],
                                                           _columns_text(change['columns'])))
        result.append({'before_header': 'source: %s' % table,
                       'after_header': 'target: %s' % table,
                       'before': ''.join(line + '\n' for line in before),
                       'after': ''.join(line + '\n' for line in after)})
    return result
