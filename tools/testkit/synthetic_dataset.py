# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An ICDS-shaped synthetic dataset for tests, ``make demo`` and benchmarks.

It builds, in one database, every kind of table family the migration meets (SPEC 2, 4):

* keep-child inheritance families ``agg_awc`` / ``agg_child_health``: children
  ``agg_awc_<YYYY-MM-01>_<level>`` with ``CHECK (month = ... AND aggregation_level = ...)``;
* a keep-child DECLARATIVELY partitioned family ``agg_awc_daily`` (``PARTITION BY RANGE (date)``,
  partitions ``agg_awc_daily_m<YYYYMM>``: the date comes only from the partition bound);
* drop-child monthly families ``child_health_monthly``, ``ccs_record_monthly``,
  ``daily_attendance`` (children ``<parent>_<YYYY-MM-01>``);
* the ten per-state form families ``icds_dashboard_*_forms`` whose children carry no date in
  their name (``icds_db_gm_form_<md5>``, date only in the CHECK);
* UCR tables of icds-cas with hyphenated names (``ucr_icds-cas_static-child_health_cases_<8hex>``)
  and monthly children ``<ucr name>_y<YYYY>m<MM>`` (the naming of the ``architect`` partitioning
  ICDS used), plus one UCR table of another domain;
* plain tables ``awc_location``, ``icds_months`` and their ``_local`` twins; ``django_migrations``
  and ``ucr_table_name_mapping`` (ignored by the plan).

Rows are deterministic for a seed (each table has its own seeded generator, so a month added
later holds the same rows it would have had if created first) and nasty on purpose: tabs,
newlines, CR, backslashes, ``\\N`` and ``\\.``, quotes, the table's own name, NULLs, Hindi and
emoji, jsonb, arrays, numeric and timestamptz. Primary keys and distribution columns follow
the shipped plan, so the tables can be distributed by Citus.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import hashlib
import json
import os
import random
import sys
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Dict, List, Optional, Sequence, Tuple

try:
    import psycopg2
    import psycopg2.extras
    from psycopg2 import sql
except ImportError:  # pragma: no cover - the dataset needs psycopg2
    psycopg2 = None
    sql = None

from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_plan import (
    load_data_sources, ucr_table_name,
)

ICDS_DOMAIN = 'icds-cas'
DEFAULT_START = '2020-01-01'
AGG_LEVELS = (1, 2, 3, 4, 5)
DDL_BATCH = 200          # statements per round trip
CHILDREN_PER_TXN = 500   # CREATE TABLEs per transaction (each holds several locks)

Columns = List[Tuple[str, str]]

NASTY_TEXT = (
    'tab\there', 'line1\nline2', 'carriage\r\nreturn', 'back\\slash', 'copy null \\N',
    'end of copy\n\\.\nafter', "single ' quote", 'double " quote', "O'Brien \"Bob\"",
    'आंगनवाड़ी केंद्र', 'emoji 🍼👶', 'semi;colon -- not a comment', '%s %(name)s {}', '',
    '   leading and trailing   ', 'NULL', 'ünïcödé ß',
)

# The ten form families ICDS distributed on supervisor_id: parent -> child name prefix.
FORM_FAMILIES = (
    ('icds_dashboard_comp_feed_form', 'icds_db_comp_feed_form_'),
    ('icds_dashboard_ccs_record_cf_forms', 'icds_db_ccs_cf_form_'),
    ('icds_dashboard_ccs_record_postnatal_forms', 'icds_db_ccs_pnc_form_'),
    ('icds_dashboard_child_health_postnatal_forms', 'icds_db_child_pnc_form_'),
    ('icds_dashboard_child_health_thr_forms', 'icds_db_child_thr_form_'),
    ('icds_dashboard_ccs_record_thr_forms', 'icds_db_ccs_thr_form_'),
    ('icds_dashboard_ccs_record_bp_forms', 'icds_db_bp_form_'),
    ('icds_dashboard_ccs_record_delivery_forms', 'icds_db_delivery_form_'),
    ('icds_dashboard_daily_feeding_forms', 'icds_db_daily_feed_form_'),
    ('icds_dashboard_growth_monitoring_forms', 'icds_db_gm_form_'),
)

AGG_AWC_COLUMNS: Columns = [
    ('state_id', 'text'), ('district_id', 'text'), ('block_id', 'text'),
    ('supervisor_id', 'text'), ('awc_id', 'text'), ('month', 'date NOT NULL'),
    ('aggregation_level', 'integer NOT NULL'), ('awc_name', 'text'),
    ('num_launched_awcs', 'integer'), ('cases_household', 'integer'),
    ('usage_awareness', 'numeric(10,4)'), ('tags', 'text[]'),
    ('updated_at', 'timestamptz'), ('notes', 'text'), ('payload', 'jsonb'),
]
AGG_CHILD_HEALTH_COLUMNS: Columns = [
    ('state_id', 'text'), ('district_id', 'text'), ('block_id', 'text'),
    ('supervisor_id', 'text'), ('awc_id', 'text'), ('month', 'date NOT NULL'),
    ('aggregation_level', 'integer NOT NULL'), ('gender', 'text'), ('age_tranche', 'text'),
    ('valid_in_month', 'integer'), ('wer_eligible', 'integer'),
    ('nutrition_status_normal', 'integer'), ('notes', 'text'), ('payload', 'jsonb'),
    ('updated_at', 'timestamptz'),
]
AGG_AWC_DAILY_COLUMNS: Columns = [
    ('state_id', 'text'), ('district_id', 'text'), ('block_id', 'text'),
    ('supervisor_id', 'text'), ('awc_id', 'text'), ('aggregation_level', 'integer'),
    ('date', 'date NOT NULL'), ('daily_attendance_open', 'integer'), ('notes', 'text'),
    ('payload', 'jsonb'),
]
CHILD_HEALTH_MONTHLY_COLUMNS: Columns = [
    ('supervisor_id', 'text NOT NULL'), ('case_id', 'text NOT NULL'),
    ('month', 'date NOT NULL'), ('awc_id', 'text'), ('state_id', 'text'), ('sex', 'text'),
    ('dob', 'date'), ('age_in_months', 'integer'), ('wer_eligible', 'smallint'),
    ('weight', 'numeric(6,2)'), ('immun_names', 'text[]'), ('opened_on', 'timestamptz'),
    ('notes', 'text'), ('payload', 'jsonb'),
]
CCS_RECORD_MONTHLY_COLUMNS: Columns = [
    ('supervisor_id', 'text NOT NULL'), ('case_id', 'text NOT NULL'),
    ('month', 'date NOT NULL'), ('awc_id', 'text'), ('state_id', 'text'),
    ('pregnant', 'smallint'), ('lactating', 'smallint'), ('edd', 'date'),
    ('trimester', 'integer'), ('modified_on', 'timestamptz'), ('notes', 'text'),
    ('payload', 'jsonb'),
]
DAILY_ATTENDANCE_COLUMNS: Columns = [
    ('supervisor_id', 'text NOT NULL'), ('doc_id', 'text NOT NULL'), ('awc_id', 'text'),
    ('state_id', 'text'), ('month', 'date NOT NULL'), ('pse_date', 'date'),
    ('attended_children', 'integer'), ('image_name', 'text'),
    ('form_location_lat', 'numeric(18,12)'), ('notes', 'text'), ('payload', 'jsonb'),
]
# Like commcare-hq's form models: no doc_id; keyed (supervisor_id, case_id, month) on Citus.
FORM_COLUMNS: Columns = [
    ('supervisor_id', 'text NOT NULL'), ('case_id', 'text NOT NULL'),
    ('state_id', 'text NOT NULL'), ('month', 'date NOT NULL'),
    ('timeend', 'timestamptz'), ('count_value', 'integer'), ('measurement', 'numeric(10,3)'),
    ('flags', 'text[]'), ('notes', 'text'), ('payload', 'jsonb'),
]
FORM_KEY = ('supervisor_id', 'case_id', 'month')
DAILY_ATTENDANCE_KEY = ('supervisor_id', 'doc_id', 'month')
AWC_LOCATION_COLUMNS: Columns = [
    ('doc_id', 'text NOT NULL PRIMARY KEY'), ('awc_id', 'text'), ('awc_name', 'text'),
    ('supervisor_id', 'text'), ('supervisor_name', 'text'), ('block_id', 'text'),
    ('district_id', 'text'), ('state_id', 'text'), ('state_name', 'text'),
    ('aggregation_level', 'integer'), ('awc_is_test', 'integer'),
    ('contact_phone_number', 'text'), ('notes', 'text'), ('payload', 'jsonb'),
]
ICDS_MONTHS_COLUMNS: Columns = [
    ('month_name', 'text'), ('start_date', 'date NOT NULL PRIMARY KEY'), ('end_date', 'date'),
]

# UCR data sources used when no folder is given (same shape as the samples in the repo).
BUILTIN_DATA_SOURCES: Tuple[Dict[str, Any], ...] = (
    {'domains': [ICDS_DOMAIN], 'config': {
        'table_id': 'static-child_health_cases',
        'sql_settings': {'citus_config': {'distribution_type': 'hash',
                                          'distribution_column': 'supervisor_id'},
                         'primary_key': ['supervisor_id', 'doc_id']},
        'configured_indicators': [
            {'column_id': 'supervisor_id', 'datatype': 'string'},
            {'column_id': 'awc_id', 'datatype': 'string'},
            {'column_id': 'dob', 'datatype': 'date'}]}},
    {'domains': [ICDS_DOMAIN], 'config': {
        'table_id': 'static-ls_vhnd_form',
        'sql_settings': {'citus_config': {'distribution_type': 'hash',
                                          'distribution_column': 'location_id'},
                         'primary_key': ['location_id', 'doc_id']},
        'configured_indicators': [
            {'column_id': 'location_id', 'datatype': 'string'},
            {'column_id': 'vhnd_date', 'datatype': 'date'}]}},
    {'domains': [ICDS_DOMAIN], 'config': {
        'table_id': 'static-cbe_form',
        'configured_indicators': [
            {'column_id': 'awc_id', 'datatype': 'string'},
            {'column_id': 'date_cbe_organise', 'datatype': 'date'}]}},
    {'domains': ['enikshay'], 'config': {
        'table_id': 'static-usage',
        'configured_indicators': [{'column_id': 'user_id', 'datatype': 'string'}]}},
)

_UCR_TYPES = {'string': 'text', 'date': 'date', 'datetime': 'timestamp', 'integer': 'integer',
              'small_integer': 'smallint', 'decimal': 'numeric', 'boolean': 'smallint',
              'array': 'text[]'}


@dataclass
class UcrTable:
    """A UCR table to create: name, columns, primary key, and whether it gets monthly children."""

    name: str
    domain: str
    table_id: str
    columns: Columns
    primary_key: Tuple[str, ...]
    partitioned: bool


@dataclass
class DatasetSummary:
    """What was created: tables in creation order and the rows written per table."""

    tables: List[str] = field(default_factory=list)
    rows: Dict[str, int] = field(default_factory=dict)
    months: List[str] = field(default_factory=list)


def _md5(*parts: object) -> str:
    return hashlib.md5('|'.join(str(p) for p in parts).encode('utf-8')).hexdigest()


def _rng(seed: int, *parts: object) -> random.Random:
    return random.Random(int(_md5(seed, *parts)[:16], 16))


class Geography:
    """States, supervisors (sectors) and AWCs: stable ids derived from the seed."""

    def __init__(self, seed: int, states: int):
        self.states = ['st%s' % _md5(seed, 'state', i)[:10] for i in range(states)]
        self.supervisors: Dict[str, List[str]] = {
            s: ['sup%s' % _md5(seed, s, 'sup', j)[:12] for j in range(3)] for s in self.states}
        self.awcs: Dict[str, List[str]] = {
            sup: ['awc%s' % _md5(seed, sup, 'awc', k)[:12] for k in range(3)]
            for s in self.states for sup in self.supervisors[s]}

    def all_supervisors(self) -> List[Tuple[str, str]]:
        return [(s, sup) for s in self.states for sup in self.supervisors[s]]


def month_starts(start: str, months: int) -> List[date]:
    first = date.fromisoformat(start).replace(day=1)
    result = []
    for i in range(months):
        year, month = divmod(first.month - 1 + i, 12)
        result.append(date(first.year + year, month + 1, 1))
    return result


def next_month(day: date) -> date:
    return date(day.year + (day.month // 12), day.month % 12 + 1, 1)


def form_child_name(prefix: str, state_id: str, month: date) -> str:
    """Per-state form child name: no date in it, like ICDS's hashed names."""
    return prefix + _md5(state_id, month.isoformat())[8:]


# -- values -------------------------------------------------------------------------------
def _nasty(rng: random.Random, table: str) -> Optional[str]:
    pick = rng.random()
    if pick < 0.12:
        return None
    if pick < 0.30:
        return 'row of %s: "%s"\t(copied?)' % (table, table)  # the table's own name
    return rng.choice(NASTY_TEXT) + ' #%d' % rng.randint(0, 999)


def _value(rng: random.Random, column: str, ctype: str, ctx: Dict[str, Any], row: int) -> Any:
    base = ctype.split()[0].lower()
    table = ctx['table']
    if column in ctx:
        return ctx[column]
    if column == 'supervisor_id' or column == 'location_id':
        return ctx['supervisor']
    if column == 'awc_id':
        return rng.choice(ctx['awcs'])
    if column == 'state_id':
        return ctx['state']
    if column in ('doc_id', 'case_id'):
        # doc ids are unique across a family (drop-child rows share one parent and its PK);
        # case ids repeat across months (PK includes month).
        key = (ctx['family'], row) if column == 'case_id' else (table, row)
        return _md5(ctx['seed'], column, *key)
    if column.endswith('_id'):
        return _md5(ctx['seed'], column, rng.randint(0, 50))[:16]
    if base == 'text':
        return _nasty(rng, table)
    if base == 'text[]':
        if rng.random() < 0.1:
            return None
        return [rng.choice(NASTY_TEXT), table, 'x,y', '{braces}', 'NULL']
    if base == 'jsonb':
        if rng.random() < 0.1:
            return None
        return psycopg2.extras.Json({'table': table, 'text': rng.choice(NASTY_TEXT),
                                     'n': rng.randint(-5, 10 ** 6), 'list': [1, None, 'ä'],
                                     'nested': {'quote': "'\"", 'path': 'C:\\temp\\x'}})
    if base in ('integer', 'smallint', 'bigint'):
        return None if rng.random() < 0.1 else rng.randint(0, 30000)
    if base.startswith('numeric'):
        return None if rng.random() < 0.1 else Decimal(rng.randint(0, 10 ** 6)) / 1000
    if base == 'date':
        day = ctx.get('month_start') or date(2019, 1, 1)
        return day + timedelta(days=rng.randint(0, 27))
    if base in ('timestamptz', 'timestamp'):
        day = ctx.get('month_start') or date(2019, 1, 1)
        moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + timedelta(
            seconds=rng.randint(0, 27 * 86400), microseconds=rng.randint(0, 999999))
        return moment if base == 'timestamptz' else moment.replace(tzinfo=None)
    return None


def _rows(columns: Columns, ctx: Dict[str, Any], count: int) -> List[Tuple[Any, ...]]:
    """Rows for one table: given explicitly (ctx['rows']) or generated from its own seed."""
    if 'rows' in ctx:
        return list(ctx['rows'])
    rng = _rng(ctx['seed'], ctx['table'])
    rows = []
    for i in range(count):
        if ctx.get('supervisors'):
            ctx['state'], ctx['supervisor'] = rng.choice(ctx['supervisors'])
            ctx['awcs'] = ctx['geo'].awcs[ctx['supervisor']]
        rows.append(tuple(_value(rng, name, ctype, ctx, i) for name, ctype in columns))
    return rows


# -- SQL ----------------------------------------------------------------------------------
def _ident(name: str):
    return sql.Identifier(name)


def _create_table(name: str, columns: Columns, primary_key: Sequence[str] = (),
                  suffix=None):
    cols = [sql.SQL('{} {}').format(_ident(c), sql.SQL(t)) for c, t in columns]
    if primary_key:
        cols.append(sql.SQL('PRIMARY KEY ({})').format(
            sql.SQL(', ').join(_ident(c) for c in primary_key)))
    stmt = sql.SQL('CREATE TABLE {} ({})').format(_ident(name), sql.SQL(', ').join(cols))
    return stmt + suffix if suffix is not None else stmt


def _create_child(name: str, parent: str, checks: Sequence[Any],
                  primary_key: Sequence[str] = ()):
    """``CREATE TABLE child (CHECK ..., PRIMARY KEY ...) INHERITS (parent)``."""
    parts = [sql.SQL('CHECK ({})').format(c) for c in checks]
    if primary_key:
        parts.append(sql.SQL('PRIMARY KEY ({})').format(
            sql.SQL(', ').join(_ident(c) for c in primary_key)))
    return sql.SQL('CREATE TABLE {} ({}) INHERITS ({})').format(
        _ident(name), sql.SQL(', ').join(parts), _ident(parent))


def _eq(column: str, value: Any):
    return sql.SQL('{} = {}').format(_ident(column), sql.Literal(value))


def _month_range(column: str, month: date):
    return sql.SQL('{c} >= {a} AND {c} < {b}').format(
        c=_ident(column), a=sql.Literal(month), b=sql.Literal(next_month(month)))


def _execute_batched(cur, statements: List[Any], batch: int = DDL_BATCH) -> None:
    for i in range(0, len(statements), batch):
        cur.execute(sql.SQL(';\n').join(statements[i:i + batch]))


def _insert(cur, table: str, columns: Columns, rows: List[Tuple[Any, ...]]) -> None:
    if not rows:
        return
    stmt = sql.SQL('INSERT INTO {} ({}) VALUES %s').format(
        _ident(table), sql.SQL(', ').join(_ident(col[0]) for col in columns))
    text = stmt.as_string(cur).replace('%', '%%').replace('VALUES %%s', 'VALUES %s')
    psycopg2.extras.execute_values(cur, text, rows, page_size=500)


# -- UCR ----------------------------------------------------------------------------------
def ucr_tables(ucr_folder: Optional[str] = None) -> List[UcrTable]:
    """The UCR tables to create: from a data source folder, or the built-in sample shapes."""
    docs: List[Dict[str, Any]] = []
    if ucr_folder:
        for ds in load_data_sources(ucr_folder):
            with open(ds.path, encoding='utf-8') as handle:
                docs.append(json.load(handle))
    else:
        docs = [dict(d) for d in BUILTIN_DATA_SOURCES]
    result = []
    for doc in docs:
        config = doc['config']
        domains = doc.get('domains') or [doc.get('domain')]
        domain = ICDS_DOMAIN if ICDS_DOMAIN in domains else domains[0]
        columns: Columns = [('doc_id', 'text NOT NULL'), ('inserted_at', 'timestamp NOT NULL')]
        for indicator in config.get('configured_indicators', []):
            name = indicator.get('column_id')
            if not name or name in dict(columns):
                continue
            ctype = 'smallint' if indicator.get('type') == 'boolean' else _UCR_TYPES.get(
                indicator.get('datatype', 'string'), 'text')
            if name in (config.get('sql_settings') or {}).get('primary_key', []):
                ctype += ' NOT NULL'
            columns.append((name, ctype))
        pk = tuple((config.get('sql_settings') or {}).get('primary_key') or ('doc_id',))
        result.append(UcrTable(ucr_table_name(domain, config['table_id']), domain,
                               config['table_id'], columns, pk,
                               partitioned=(domain == ICDS_DOMAIN and bool(
                                   (config.get('sql_settings') or {}).get('citus_config')))))
    return result


def ucr_child_name(parent: str, month: date) -> str:
    return '%s_y%04dm%02d' % (parent, month.year, month.month)


# -- the dataset --------------------------------------------------------------------------
class _Builder:
    def __init__(self, conn, scale: int, seed: int, states: int, ucr_folder: Optional[str]):
        self.conn = conn
        self.scale = scale
        self.seed = seed
        self.geo = Geography(seed, states)
        self.ucr = ucr_tables(ucr_folder)
        self.summary = DatasetSummary()
        self.ddl: List[Any] = []
        self.data: List[Tuple[str, Columns, Dict[str, Any], int]] = []

    def table(self, stmt, name: str) -> None:
        self.ddl.append(stmt)
        self.summary.tables.append(name)

    def fill(self, table: str, columns: Columns, family: str, count: Optional[int] = None,
             **ctx: Any) -> None:
        base = {'table': table, 'family': family, 'seed': self.seed, 'geo': self.geo,
                'supervisors': self.geo.all_supervisors()}
        if 'state' in ctx:
            base['supervisors'] = [(s, sup) for s, sup in base['supervisors']
                                   if s == ctx['state']]
        base.update(ctx)
        self.data.append((table, columns, base, self.scale if count is None else count))

    def flush(self) -> DatasetSummary:
        with self.conn.cursor() as cur:
            _execute_batched(cur, self.ddl)
            for table, columns, ctx, count in self.data:
                rows = _rows(columns, ctx, count)
                _insert(cur, table, columns, rows)
                self.summary.rows[table] = self.summary.rows.get(table, 0) + len(rows)
        self.conn.commit()
        return self.summary

    # base tables (parents, plain, ignored) ------------------------------------------------
    def base(self) -> None:
        self.table(_create_table('agg_awc', AGG_AWC_COLUMNS), 'agg_awc')
        self.table(_create_table('agg_child_health', AGG_CHILD_HEALTH_COLUMNS),
                   'agg_child_health')
        self.table(_create_table('agg_awc_daily', AGG_AWC_DAILY_COLUMNS, (),
                                 sql.SQL(' PARTITION BY RANGE ({})').format(_ident('date'))),
                   'agg_awc_daily')
        self.table(_create_table('child_health_monthly', CHILD_HEALTH_MONTHLY_COLUMNS,
                                 ('supervisor_id', 'case_id', 'month')), 'child_health_monthly')
        self.table(_create_table('ccs_record_monthly', CCS_RECORD_MONTHLY_COLUMNS,
                                 ('supervisor_id', 'case_id', 'month')), 'ccs_record_monthly')
        self.table(_create_table('daily_attendance', DAILY_ATTENDANCE_COLUMNS,
                                 DAILY_ATTENDANCE_KEY), 'daily_attendance')
        for parent, _prefix in FORM_FAMILIES:
            self.table(_create_table(parent, FORM_COLUMNS, FORM_KEY), parent)
        for ucr in self.ucr:
            self.table(_create_table(ucr.name, ucr.columns, ucr.primary_key), ucr.name)
            if not ucr.partitioned:
                self.fill(ucr.name, ucr.columns, ucr.name)
        for name in ('awc_location', 'awc_location_local'):
            self.table(_create_table(name, AWC_LOCATION_COLUMNS), name)
            self._awc_location_rows(name)
        for name in ('icds_months', 'icds_months_local'):
            self.table(_create_table(name, ICDS_MONTHS_COLUMNS), name)
        self.table(sql.SQL('CREATE TABLE {} (id serial PRIMARY KEY, app varchar(255) NOT NULL, '
                           'name varchar(255) NOT NULL, applied timestamptz NOT NULL)')
                   .format(_ident('django_migrations')), 'django_migrations')
        migration_columns = [('app', 'text'), ('name', 'text'), ('applied', 'timestamptz')]
        self.data.append(('django_migrations', migration_columns,
                          {'table': 'django_migrations', 'family': 'django_migrations',
                           'seed': self.seed, 'geo': self.geo, 'supervisors': None,
                           'app': 'icds_reports', 'name': '0001_initial'}, 1))
        self.table(sql.SQL('CREATE TABLE {} (domain text, table_type text, table_id text, '
                           'table_name text)').format(_ident('ucr_table_name_mapping')),
                   'ucr_table_name_mapping')

    def _awc_location_rows(self, table: str) -> None:
        rows = []
        for state, sup in self.geo.all_supervisors():
            for awc in self.geo.awcs[sup]:
                rows.append((awc, awc, 'AWC ग्राम %s\t"%s"' % (awc[-4:], table), sup,
                             "Supervisor O'%s" % sup[-3:], 'blk' + sup[-6:], 'dst' + state[-6:],
                             state, 'State \\ %s' % state[-4:], 5, 0, None,
                             'row of %s\nline2' % table,
                             psycopg2.extras.Json({'awc': awc, 'unicode': 'ü🍼'})))
        self.data.append((table, AWC_LOCATION_COLUMNS, {'rows': rows}, len(rows)))

    # one month of children ---------------------------------------------------------------
    def month(self, month: date) -> None:
        iso = month.isoformat()
        self.summary.months.append(iso)
        for name in ('icds_months', 'icds_months_local'):
            self.data.append((name, ICDS_MONTHS_COLUMNS, {'rows': [
                (month.strftime('%B %Y'), month, next_month(month) - timedelta(days=1))]}, 1))
        for parent, columns in (('agg_awc', AGG_AWC_COLUMNS),
                                ('agg_child_health', AGG_CHILD_HEALTH_COLUMNS)):
            for level in AGG_LEVELS:
                child = '%s_%s_%d' % (parent, iso, level)
                self.table(_create_child(child, parent, [
                    sql.SQL('{} AND {}').format(_eq('month', month),
                                                _eq('aggregation_level', level))]), child)
                self.fill(child, columns, parent, month=month, month_start=month,
                          aggregation_level=level)
        part = 'agg_awc_daily_m%04d%02d' % (month.year, month.month)
        self.table(sql.SQL('CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})')
                   .format(_ident(part), _ident('agg_awc_daily'), sql.Literal(month),
                           sql.Literal(next_month(month))), part)
        self.fill(part, AGG_AWC_DAILY_COLUMNS, 'agg_awc_daily', month_start=month)
        for parent, columns, pk in (
                ('child_health_monthly', CHILD_HEALTH_MONTHLY_COLUMNS,
                 ('supervisor_id', 'case_id', 'month')),
                ('ccs_record_monthly', CCS_RECORD_MONTHLY_COLUMNS,
                 ('supervisor_id', 'case_id', 'month')),
                ('daily_attendance', DAILY_ATTENDANCE_COLUMNS, DAILY_ATTENDANCE_KEY)):
            child = '%s_%s' % (parent, iso)
            self.table(_create_child(child, parent, [_eq('month', month)], pk), child)
            self.fill(child, columns, parent, month=month, month_start=month)
        for parent, prefix in FORM_FAMILIES:
            for state in self.geo.states:
                child = form_child_name(prefix, state, month)
                self.table(_create_child(child, parent, [sql.SQL('{} AND {}').format(
                    _eq('month', month), _eq('state_id', state))],
                    FORM_KEY), child)
                self.fill(child, FORM_COLUMNS, parent, month=month, month_start=month,
                          state=state)
        for ucr in self.ucr:
            if ucr.partitioned:
                child = ucr_child_name(ucr.name, month)
                self.table(_create_child(child, ucr.name, [_month_range('inserted_at', month)],
                                         ucr.primary_key), child)
                self.fill(child, ucr.columns, ucr.name, month_start=month)


def create_dataset(conn, months: int = 3, scale: int = 10, seed: int = 1,
                   start: str = DEFAULT_START, states: int = 2,
                   ucr_folder: Optional[str] = None) -> DatasetSummary:
    """Create the whole dataset in one transaction: base tables plus ``months`` months."""
    builder = _Builder(conn, scale, seed, states, ucr_folder)
    builder.base()
    for month in month_starts(start, months):
        builder.month(month)
    return builder.flush()


def add_month(conn, month: str, scale: int = 10, seed: int = 1, states: int = 2,
              ucr_folder: Optional[str] = None) -> DatasetSummary:
    """Add one more month (all its child tables and rows) to an existing dataset."""
    builder = _Builder(conn, scale, seed, states, ucr_folder)
    builder.month(date.fromisoformat(month).replace(day=1))
    return builder.flush()


def create_many_children(conn, parent: str, n: int, check_column: Optional[str] = 'month',
                         start: str = '1990-01-01', prefix: Optional[str] = None,
                         per_transaction: int = CHILDREN_PER_TXN) -> List[str]:
    """Create ``n`` empty inheritance children of ``parent`` (scale tests), committing every
    ``per_transaction`` tables (one transaction holding 10,000 new tables would exhaust the
    lock table). Child i gets ``CHECK (<check_column> = start + i days)`` unless
    check_column is None. Names: ``<prefix or parent + '_bulk_'><i:05d>``."""
    stem = prefix if prefix is not None else parent + '_bulk_'
    first = date.fromisoformat(start)
    names = ['%s%05d' % (stem, i) for i in range(n)]
    too_long = [nm for nm in names[-1:] if len(nm.encode('utf-8')) > 63]
    if too_long:
        raise ValueError('child name %s is longer than 63 bytes: use a shorter prefix'
                         % too_long[0])
    with conn.cursor() as cur:
        for i in range(0, n, per_transaction):
            stmts = []
            for j in range(i, min(n, i + per_transaction)):
                checks = [_eq(check_column, first + timedelta(days=j))] if check_column else []
                stmts.append(_create_child(names[j], parent, checks))
            _execute_batched(cur, stmts)
            conn.commit()
    return names


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m ansible_collections.icds.citus_migration.plugins.module_utils.'
             'synthetic_dataset',
        description='Create an ICDS-shaped synthetic dataset in a PostgreSQL database. '
                    'The password comes from PGPASSWORD or a pgpass file.')
    parser.add_argument('--host', default=os.environ.get('PGHOST'))
    parser.add_argument('--port', type=int, default=int(os.environ.get('PGPORT', 5432)))
    parser.add_argument('--user', default=os.environ.get('PGUSER'))
    parser.add_argument('--dbname', required=True)
    parser.add_argument('--months', type=int, default=3, help='months of child tables')
    parser.add_argument('--scale', type=int, default=10, help='rows per child table')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--start', default=DEFAULT_START, help='first month (YYYY-MM-DD)')
    parser.add_argument('--states', type=int, default=2)
    parser.add_argument('--ucr-folder', help='UCR data source folder (default: built-in shapes)')
    parser.add_argument('--add-month', metavar='YYYY-MM-DD',
                        help='only add this month to an existing dataset')
    parser.add_argument('--children', type=int, default=0,
                        help='also create N empty children of --children-parent')
    parser.add_argument('--children-parent', default='child_health_monthly')
    args = parser.parse_args(argv)
    if psycopg2 is None:
        sys.stderr.write('psycopg2 is required\n')
        return 2
    try:
        conn = psycopg2.connect(host=args.host, port=args.port, user=args.user,
                                dbname=args.dbname)
    except psycopg2.OperationalError as exc:
        sys.stderr.write('cannot connect: %s\n' % ' '.join(str(exc).split()))
        return 1
    try:
        if args.add_month:
            summary = add_month(conn, args.add_month, args.scale, args.seed, args.states,
                                args.ucr_folder)
        else:
            summary = create_dataset(conn, args.months, args.scale, args.seed, args.start,
                                     args.states, args.ucr_folder)
        extra = (create_many_children(conn, args.children_parent, args.children)
                 if args.children else [])
    except (psycopg2.Error, ValueError) as exc:
        conn.rollback()
        sys.stderr.write('failed: %s\n' % ' '.join(str(exc).split()))
        return 1
    finally:
        conn.close()
    sys.stdout.write('created %d tables, %d rows%s\n' % (
        len(summary.tables), sum(summary.rows.values()),
        ', plus %d empty children of %s' % (len(extra), args.children_parent) if extra else ''))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
