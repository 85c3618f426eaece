# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runbook migration step 3: the manifest rows (one per table to copy) from the source catalog.

Rows follow the old tool (SPEC 2): each family's parent first (no date, no target), then its
children sorted by name, each with its date and target. Unlike the old tool, writing to an
existing manifest is allowed: only source tables not yet in it are added, existing rows are
never touched, so the step can be re-run after new months appear on the source.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Dict, Iterable, List, Optional, Tuple

from ansible_collections.icds.citus_migration.plugins.module_utils.schema.catalog import (
    TableInfo, children_by_parent, descendants, list_tables, paused_gc,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import (
    ManifestError, MigrationError, PlanError,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import Manifest
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_plan import TablePlan

UNCLASSIFIED_CHOICES = ('error', 'warn')
_DATE_RE = re.compile(r'(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)')
_RANGE_FROM_RE = re.compile(r'\bFROM\s*\((.*?)\)\s*TO\b', re.IGNORECASE | re.DOTALL)
_LIST_IN_RE = re.compile(r'\bIN\s*\((.*)\)', re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class ManifestEntry:
    """A row to write: target None means "same name as the source" (old manifest format)."""

    source_table: str
    date: Optional[str]
    target_table: Optional[str]
    family: str
    kind: str

    def as_tuple(self) -> Tuple[str, Optional[str], Optional[str]]:
        return (self.source_table, self.date, self.target_table)

    def as_dict(self) -> Dict[str, Optional[str]]:
        return {'source_table': self.source_table, 'date': self.date,
                'target_table': self.target_table, 'family': self.family, 'kind': self.kind}


@dataclass
class ManifestPlan:
    """What step 3 would write, plus the tables it leaves out and why."""

    rows: List[ManifestEntry] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    unclassified: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


def _valid_dates(text: str) -> List[str]:
    found = []
    for year, month, day in _DATE_RE.findall(text or ''):
        try:
            found.append(date(int(year), int(month), int(day)).isoformat())
        except ValueError:
            continue
    return found


def date_from_name(name: str) -> Optional[str]:
    """Smallest valid YYYY-MM-DD in a table name (``agg_awc_2020-01-01_5``)."""
    dates = _valid_dates(name)
    return min(dates) if dates else None


def date_from_checks(checks: Iterable[str]) -> Optional[str]:
    """Date from CHECK constraint definitions (per-state tables carry none in their name).

    The old tool took the first date it found; this takes the smallest date over all CHECKs,
    which is the same for ``month = '...'`` and the lower bound for a range CHECK whatever
    the order of its terms.
    """
    dates = [d for check in checks for d in _valid_dates(check)]
    return min(dates) if dates else None


def date_from_partition_bound(bound: Optional[str]) -> Optional[str]:
    """Lower bound of ``FOR VALUES FROM ('2020-01-01') TO (...)`` or the smallest date of
    ``FOR VALUES IN (...)``; None for DEFAULT, MINVALUE or no date."""
    if not bound:
        return None
    match = _RANGE_FROM_RE.search(bound)
    if match:
        dates = _valid_dates(match.group(1))
        return dates[0] if dates else None
    match = _LIST_IN_RE.search(bound)
    if match:
        dates = _valid_dates(match.group(1))
        return min(dates) if dates else None
    return None


def table_date(table: TableInfo) -> Optional[str]:
    """Name first, then CHECK constraints, then the partition bound."""
    return (date_from_name(table.name) or date_from_checks(table.checks)
            or date_from_partition_bound(table.partition_bound))


def build_manifest_plan(tables: List[TableInfo], plan: TablePlan) -> ManifestPlan:
    """The manifest rows for a catalog listing (pure: no database)."""
    result = ManifestPlan()
    children = children_by_parent(tables)
    names = {t.name for t in tables}
    top_level = [t for t in tables
                 if t.parent is None or t.parent_schema not in (None, t.schema)
                 or t.parent not in names]
    for table in sorted(top_level, key=lambda t: t.name):
        rule = plan.classify(table.name)
        below = descendants(table.name, children)
        if rule is None:
            result.unclassified.append(table.name)
            continue
        if rule.kind == 'ignore':
            result.ignored.append(table.name)
            result.ignored.extend(t.name for t in below)
            continue
        result.rows.append(ManifestEntry(table.name, None, None, table.name, rule.kind))
        # Only tables holding rows: an intermediate declaratively partitioned table has none.
        copied = [t for t in below if not t.is_partitioned]
        if rule.kind == 'plain':
            if below:
                result.unclassified.extend(t.name for t in below)
                result.warnings.append(
                    "plain table '%s' (%s) has %d child table(s): they fit no rule"
                    % (table.name, rule.label, len(below)))
            continue
        for child in sorted(copied, key=lambda t: t.name):
            target = table.name if rule.kind == 'drop_child' else child.name
            result.rows.append(ManifestEntry(child.name, table_date(child), target,
                                             table.name, rule.kind))
    result.warnings.extend(plan.validate_against(top_level))
    return result


def plan_manifest(conn, plan: TablePlan, schema: str = 'public') -> ManifestPlan:
    """Read the source catalog (a constant number of queries) and plan the manifest rows."""
    try:
        # the plan checks the columns of top-level tables only (validate_against)
        with paused_gc():
            tables = list_tables(conn, schema, with_sizes=False, child_columns=False)
    except Exception as exc:  # psycopg2.Error: keep psycopg2 optional at import time
        if exc.__class__.__module__.split('.', maxsplit=1)[0] != 'psycopg2':
            raise
        raise MigrationError('cannot read the tables of schema %s on the source: %s'
                             % (schema, ' '.join(str(exc).split())))
    if not tables:
        raise MigrationError("schema '%s' of the source database has no tables" % schema)
    with paused_gc():
        return build_manifest_plan(tables, plan)


def check_unclassified(manifest_plan: ManifestPlan, unclassified: str = 'error') -> None:
    """Raise PlanError listing the unclassified tables when ``unclassified`` is 'error'."""
    if unclassified not in UNCLASSIFIED_CHOICES:
        raise PlanError("unclassified must be one of %s, not %r"
                        % (', '.join(UNCLASSIFIED_CHOICES), unclassified))
    if unclassified == 'error' and manifest_plan.unclassified:
        shown = manifest_plan.unclassified[:50]
        more = len(manifest_plan.unclassified) - len(shown)
        raise PlanError('%d source table(s) fit no rule of the table plan (add them to the plan '
                        'or use unclassified=warn): %s%s'
                        % (len(manifest_plan.unclassified), ', '.join(shown),
                           ' and %d more' % more if more else ''))


def write_manifest(path: str, manifest_plan: ManifestPlan, check_mode: bool = False,
                   unclassified: str = 'error') -> List[ManifestEntry]:
    """Add the planned rows whose source table is not yet in the manifest; return them.

    Creates the manifest when missing. Existing rows are never modified. In check mode
    nothing is written, not even a new file.
    """
    check_unclassified(manifest_plan, unclassified)
    if os.path.exists(path):
        with Manifest.open(path, readonly=check_mode) as manifest:
            present = manifest.source_tables()
            added = [row for row in manifest_plan.rows if row.source_table not in present]
            if added and not check_mode:
                manifest.add_rows(row.as_tuple() for row in added)
            return added
    if check_mode:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise ManifestError('cannot create manifest %s: directory %s does not exist'
                                % (path, parent))
        return list(manifest_plan.rows)
    with Manifest.create(path) as manifest:
        manifest.add_rows(row.as_tuple() for row in manifest_plan.rows)
    return list(manifest_plan.rows)


def manifest_row_count(path: str) -> int:
    """Rows in the manifest at ``path`` (0 when it does not exist yet)."""
    if not os.path.exists(path):
        return 0
    with Manifest.open(path, readonly=True) as manifest:
        return manifest.count()
