# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The table plan: which source table families are copied how, and how the target distributes them.

A plan is a YAML file (the shipped ICDS plan is ``plans/icds.yml`` at the collection root)::

    version: 1
    families:
      - name: agg_awc                 # exact name, or
        kind: keep_child
      - pattern: 'icds_dashboard_\\w+_forms'   # a regex matching the WHOLE name, or
        kind: drop_child
        distribution: {hash: supervisor_id}
        primary_key: [supervisor_id, doc_id]
      - ucr: {domain: icds-cas}       # UCR tables (ucr_<domain>_... / config_report_<domain>_...)
        kind: drop_child
        distribution: from_data_source
        default_distribution: {hash: supervisor_id}
      - ucr: {domain: '*'}            # UCR tables of every domain no other ucr rule names
        kind: ignore

A rule describes a FAMILY: it is matched against top-level table names (a table with no
parent); children follow their parent. ``kind`` is drop_child (children are copied into the
parent on the target), keep_child (children copied into same-named children), plain (same
name, no children expected) or ignore. ``distribution`` is ``local`` (default), ``reference``
or ``{hash: <column>}``; ``from_data_source`` (UCR rules only) takes it from the UCR data
source JSON when a data source folder is given, else ``default_distribution``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass, replace
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import PlanError
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.icds_plan import (
    ICDS_PLAN_NAME, ICDS_PLAN_YAML)

KINDS = ('drop_child', 'keep_child', 'plain', 'ignore')
FROM_DATA_SOURCE = 'from_data_source'
ANY_DOMAIN = '*'
_RULE_KEYS = {'name', 'pattern', 'ucr', 'kind', 'distribution', 'default_distribution',
              'primary_key', 'comment'}

DEFAULT_PLAN_PATH = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'plans', 'icds.yml'))

UCR_PREFIX = 'ucr_'
LEGACY_UCR_PREFIX = 'config_report_'
# A UCR name: prefix, domain (CommCare domains have no underscore), the table_id, and an
# 8 hex hash (also when CommCare truncated the name), e.g. ucr_icds-cas_static-cbe_form_1a2b3c4d.
_UCR_NAME_RE = re.compile(
    r'^(?:ucr|config_report)_(?P<domain>[^_]+)_(?P<rest>.+_[0-9a-f]{8})$')
_UCR_TABLE_ID_RE = re.compile(r'^(?P<table_id>.+)_[0-9a-f]{8}$')


@dataclass(frozen=True)
class Distribution:
    """How the target holds a table: kind 'hash' (with column), 'reference' or 'local'."""

    kind: str = 'local'
    column: Optional[str] = None

    def describe(self) -> str:
        return 'hash(%s)' % self.column if self.kind == 'hash' else self.kind


LOCAL = Distribution('local')


@dataclass(frozen=True)
class FamilyRule:
    """One rule of the plan; for a UCR table, ``classify`` returns a copy resolved for it."""

    index: int
    kind: str
    distribution: Distribution = LOCAL
    primary_key: Optional[Tuple[str, ...]] = None
    name: Optional[str] = None
    pattern: Optional[str] = None
    ucr_domain: Optional[str] = None
    from_data_source: bool = False
    data_source: Optional[str] = None  # file the distribution came from (UCR, resolved)

    @property
    def label(self) -> str:
        """How messages name the rule: ``rule #3 (pattern 'icds_.*')``."""
        if self.name is not None:
            what = "name '%s'" % self.name
        elif self.pattern is not None:
            what = "pattern '%s'" % self.pattern
        else:
            what = "ucr domain '%s'" % self.ucr_domain
        return 'rule #%d (%s)' % (self.index, what)


@dataclass(frozen=True)
class UcrDataSource:
    """What the plan needs from one UCR data source JSON file."""

    path: str
    table_id: str
    domains: Tuple[str, ...]
    distribution: Distribution
    primary_key: Optional[Tuple[str, ...]]


def ucr_table_name(domain: str, table_id: str, prefix: str = UCR_PREFIX,
                   max_length: int = 50) -> str:
    """The table name CommCare gives a UCR data source (corehq userreports get_table_name)."""
    domain = domain.encode('unicode-escape').decode('utf-8')
    table_id = table_id.encode('unicode-escape').decode('utf-8')
    inner = hashlib.sha1(('%s_%s' % (hashlib.sha1(domain.encode('utf-8')).hexdigest(),
                                     table_id)).encode('utf-8')).hexdigest()[:8]
    value = '%s%s_%s_%s' % (prefix, domain, table_id, inner)
    if len(value) > max_length:
        short_hash = hashlib.sha1(value.encode('utf-8')).hexdigest()[:8]
        value = '%s_%s' % (value[:max_length - 9], short_hash)
    return value


def ucr_table_names(domain: str, table_id: str) -> Tuple[str, str]:
    """Current (``ucr_``, 50 chars) and legacy (``config_report_``, 63 chars) names."""
    return (ucr_table_name(domain, table_id),
            ucr_table_name(domain, table_id, LEGACY_UCR_PREFIX, 63))


def parse_ucr_name(table: str) -> Optional[Tuple[str, Optional[str]]]:
    """(domain, table_id or None when the name was truncated/unparsable) for a UCR name."""
    match = _UCR_NAME_RE.match(table)
    if not match:
        return None
    tid = _UCR_TABLE_ID_RE.match(match.group('rest'))
    return match.group('domain'), tid.group('table_id') if tid else None


def load_data_sources(folder: str) -> List[UcrDataSource]:
    """Read every ``*.json`` data source below ``folder`` (recursively)."""
    if not os.path.isdir(folder):
        raise PlanError('UCR data source folder not found: %s' % folder)
    result = []
    for path in sorted(glob.glob(os.path.join(folder, '**', '*.json'), recursive=True)):
        try:
            with open(path, encoding='utf-8') as handle:
                doc = json.load(handle)
        except (OSError, ValueError) as exc:
            raise PlanError('UCR data source %s is not readable JSON: %s' % (path, exc))
        config = doc.get('config') if isinstance(doc, dict) else None
        if not isinstance(config, dict) or not config.get('table_id'):
            raise PlanError('UCR data source %s has no config.table_id' % path)
        domains = doc.get('domains') or ([doc['domain']] if doc.get('domain') else [])
        settings = config.get('sql_settings') or {}
        citus = settings.get('citus_config') or {}
        dist_type = citus.get('distribution_type')
        if not dist_type:
            dist = LOCAL
        elif dist_type == 'hash':
            column = citus.get('distribution_column')
            if not column:
                raise PlanError('UCR data source %s: citus_config distribution_type hash '
                                'without distribution_column' % path)
            dist = Distribution('hash', column)
        elif dist_type == 'reference':
            dist = Distribution('reference')
        else:
            raise PlanError("UCR data source %s: unknown citus_config distribution_type '%s' "
                            "(expected hash or reference)" % (path, dist_type))
        pk = settings.get('primary_key')
        result.append(UcrDataSource(path, str(config['table_id']),
                                    tuple(str(d) for d in domains), dist,
                                    tuple(pk) if pk else None))
    return result


class TablePlan:
    """A validated plan. ``classify(name)`` gives the family rule of a top-level table."""

    def __init__(self, rules: Sequence[FamilyRule], source: str,
                 data_sources: Optional[Sequence[UcrDataSource]] = None):
        self.rules = list(rules)
        self.source = source
        self.data_sources = list(data_sources or [])
        self._by_name = {r.name: r for r in self.rules if r.name is not None}
        self._patterns = [(re.compile(r.pattern), r) for r in self.rules if r.pattern is not None]
        self._ucr = {r.ucr_domain: r for r in self.rules if r.ucr_domain is not None}
        # UCR table name -> data source, for the domains the plan names.
        self._ucr_tables: Dict[str, UcrDataSource] = {}
        self._ucr_ids: Dict[Tuple[str, str], UcrDataSource] = {}
        for ds in self.data_sources:
            for domain in ds.domains:
                for table in ucr_table_names(domain, ds.table_id):
                    self._ucr_tables[table] = ds
                self._ucr_ids[(domain, ds.table_id)] = ds

    def _matches(self, table: str) -> List[FamilyRule]:
        found = []
        rule = self._by_name.get(table)
        if rule is not None:
            found.append(rule)
        for regex, rule in self._patterns:
            if regex.fullmatch(table):
                found.append(rule)
        parsed = parse_ucr_name(table)
        if parsed is not None and self._ucr:
            rule = self._ucr.get(parsed[0]) or self._ucr.get(ANY_DOMAIN)
            if rule is not None:
                found.append(rule)
        return found

    def classify(self, table: str) -> Optional[FamilyRule]:
        """The rule for a top-level table, None when no rule fits ("unclassified").

        Raises PlanError when two rules match the same table.
        """
        found = self._matches(table)
        if not found:
            return None
        if len(found) > 1:
            raise PlanError("table '%s' is matched by two rules of plan %s: %s and %s"
                            % (table, self.source, found[0].label, found[1].label))
        rule = found[0]
        if rule.ucr_domain is not None or rule.from_data_source:
            return self._resolve_ucr(rule, table)
        return rule

    def _resolve_ucr(self, rule: FamilyRule, table: str) -> FamilyRule:
        if not rule.from_data_source or not self.data_sources:
            return rule
        ds = self._ucr_tables.get(table)
        if ds is None:
            parsed = parse_ucr_name(table)
            if parsed is not None and parsed[1] is not None:
                ds = self._ucr_ids.get((parsed[0], parsed[1]))
        if ds is None:
            return rule
        return replace(rule, distribution=ds.distribution, primary_key=ds.primary_key,
                       data_source=ds.path)

    def validate_against(self, tables: Iterable[Any]) -> List[str]:
        """Errors for top-level tables whose distribution/primary key columns they lack.

        ``tables`` are catalog.TableInfo (name, parent, columns). Also reports tables matched
        by two rules. Returns readable messages; empty when the plan fits.
        """
        errors = []
        for table in tables:
            if getattr(table, 'parent', None) is not None:
                continue
            try:
                rule = self.classify(table.name)
            except PlanError as exc:
                errors.append(str(exc))
                continue
            if rule is None or rule.kind == 'ignore':
                continue
            columns = set(getattr(table, 'columns', None) or [])
            origin = rule.label + (' via data source %s' % rule.data_source
                                   if rule.data_source else '')
            if rule.distribution.kind == 'hash' and rule.distribution.column not in columns:
                errors.append("table '%s' has no column '%s': distribution column of %s"
                              % (table.name, rule.distribution.column, origin))
            missing = [c for c in (rule.primary_key or ()) if c not in columns]
            if missing:
                errors.append("table '%s' has no column(s) %s: primary key of %s"
                              % (table.name, ', '.join("'%s'" % c for c in missing), origin))
        return errors


def _parse_distribution(value: Any, where: str, allow_from_data_source: bool) -> Any:
    if value is None or value == 'local':
        return LOCAL
    if value == 'reference':
        return Distribution('reference')
    if value == FROM_DATA_SOURCE:
        if not allow_from_data_source:
            raise PlanError('%s: distribution from_data_source is only valid in a ucr rule'
                            % where)
        return FROM_DATA_SOURCE
    if isinstance(value, dict) and list(value) == ['hash']:
        column = value['hash']
        if not isinstance(column, str) or not column:
            raise PlanError('%s: distribution {hash: <column>} needs a column name' % where)
        return Distribution('hash', column)
    raise PlanError("%s: invalid distribution %r (expected local, reference, {hash: <column>}"
                    "%s)" % (where, value, ' or from_data_source' if allow_from_data_source
                                           else ''))


def _parse_rule(index: int, raw: Any) -> FamilyRule:
    if not isinstance(raw, dict):
        raise PlanError('rule #%d: expected a mapping, got %r' % (index, raw))
    keys = [k for k in ('name', 'pattern', 'ucr') if k in raw]
    where = 'rule #%d' % index
    if raw.get('name') is not None:
        where += " (name '%s')" % raw['name']
    elif raw.get('pattern') is not None:
        where += " (pattern '%s')" % raw['pattern']
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise PlanError('%s: unknown key(s) %s' % (where, ', '.join(unknown)))
    if len(keys) != 1:
        raise PlanError('%s: needs exactly one of name, pattern or ucr (got %s)'
                        % (where, ', '.join(keys) if keys else 'none'))
    kind = raw.get('kind')
    if kind not in KINDS:
        raise PlanError("%s: unknown kind %r (expected one of %s)"
                        % (where, kind, ', '.join(KINDS)))
    name = pattern = domain = None
    if 'name' in raw:
        name = raw['name']
        if not isinstance(name, str) or not name:
            raise PlanError('%s: name must be a non-empty string' % where)
    elif 'pattern' in raw:
        pattern = raw['pattern']
        if not isinstance(pattern, str) or not pattern:
            raise PlanError('%s: pattern must be a non-empty string' % where)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise PlanError("%s: invalid regular expression: %s" % (where, exc))
    else:
        ucr = raw['ucr']
        if not isinstance(ucr, dict) or set(ucr) != {'domain'} or not ucr['domain']:
            raise PlanError("%s: ucr must be {domain: <domain>} or {domain: '*'}" % where)
        domain = str(ucr['domain'])
        where += " (ucr domain '%s')" % domain
    dist = _parse_distribution(raw.get('distribution'), where, domain is not None)
    from_ds = dist == FROM_DATA_SOURCE
    if from_ds:
        dist = _parse_distribution(raw.get('default_distribution'), where + ' default', False)
    elif 'default_distribution' in raw:
        raise PlanError('%s: default_distribution needs distribution: from_data_source' % where)
    pk = raw.get('primary_key')
    if pk is not None:
        if (not isinstance(pk, list) or not pk
                or not all(isinstance(c, str) and c for c in pk)):
            raise PlanError('%s: primary_key must be a list of column names' % where)
        pk = tuple(pk)
    if kind == 'ignore' and (raw.get('distribution') not in (None, 'local') or pk):
        raise PlanError('%s: an ignore rule takes no distribution or primary_key' % where)
    if dist.kind == 'hash' and pk and dist.column not in pk:
        raise PlanError("%s: primary_key (%s) must include the distribution column '%s' "
                        "(Citus requirement)" % (where, ', '.join(pk), dist.column))
    return FamilyRule(index=index, kind=kind, distribution=dist, primary_key=pk, name=name,
                      pattern=pattern, ucr_domain=domain, from_data_source=from_ds)


def _check_overlaps(rules: List[FamilyRule], source: str) -> None:
    """Overlaps visible without a database: same name, same pattern, name hit by a pattern."""
    seen: Dict[Tuple[str, str], FamilyRule] = {}
    for rule in rules:
        key = (('name', rule.name) if rule.name is not None else
               ('pattern', rule.pattern) if rule.pattern is not None else
               ('ucr', rule.ucr_domain))
        if key in seen:
            raise PlanError('plan %s: %s and %s are the same rule twice'
                            % (source, seen[key].label, rule.label))
        seen[key] = rule
    patterns = [(re.compile(r.pattern), r) for r in rules if r.pattern is not None]
    ucr_domains = {r.ucr_domain for r in rules if r.ucr_domain is not None}
    for rule in rules:
        if rule.name is None:
            continue
        for regex, other in patterns:
            if regex.fullmatch(rule.name):
                raise PlanError("plan %s: table '%s' is matched by two rules: %s and %s"
                                % (source, rule.name, rule.label, other.label))
        parsed = parse_ucr_name(rule.name)
        if parsed and (parsed[0] in ucr_domains or ANY_DOMAIN in ucr_domains):
            other = [r for r in rules if r.ucr_domain in (parsed[0], ANY_DOMAIN)][0]
            raise PlanError("plan %s: table '%s' is matched by two rules: %s and %s"
                            % (source, rule.name, rule.label, other.label))


def parse_plan(doc: Any, source: str = '<plan>',
               data_sources: Optional[Sequence[UcrDataSource]] = None) -> TablePlan:
    """Validate a parsed YAML document and build the plan."""
    if not isinstance(doc, dict) or not isinstance(doc.get('families'), list):
        raise PlanError('plan %s: expected a mapping with a list under "families"' % source)
    unknown = sorted(set(doc) - {'version', 'families', 'description'})
    if unknown:
        raise PlanError('plan %s: unknown top-level key(s) %s' % (source, ', '.join(unknown)))
    if doc.get('version', 1) != 1:
        raise PlanError('plan %s: unsupported version %r (this collection reads version 1)'
                        % (source, doc.get('version')))
    rules = []
    for index, raw in enumerate(doc['families'], start=1):
        try:
            rules.append(_parse_rule(index, raw))
        except PlanError as exc:
            raise PlanError('plan %s: %s' % (source, exc))
    _check_overlaps(rules, source)
    return TablePlan(rules, source, data_sources)


def load_plan(path: Optional[str] = None, ucr_folder: Optional[str] = None) -> TablePlan:
    """Load a plan file (None = the shipped ICDS plan), with UCR data sources if a folder is given."""
    import yaml  # PyYAML ships with ansible-core

    try:
        if path is None:
            path = ICDS_PLAN_NAME
            doc = yaml.safe_load(ICDS_PLAN_YAML)
        else:
            with open(path, encoding='utf-8') as handle:
                doc = yaml.safe_load(handle)
    except OSError as exc:
        raise PlanError('cannot read plan %s: %s' % (path, exc.strerror or exc))
    except yaml.YAMLError as exc:
        raise PlanError('plan %s is not valid YAML: %s' % (path, ' '.join(str(exc).split())))
    data_sources = load_data_sources(ucr_folder) if ucr_folder else None
    return parse_plan(doc, path, data_sources)
