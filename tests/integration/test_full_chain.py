"""The migration steps chained on the synthetic ICDS dataset, each module run for real:
bootstrap -> child tables -> manifest -> copy, then every table compared row for row, by
compare_tables and by an oracle of its own (ordered md5 of the rows, as copy_helpers does).
Every module run twice: the second run changes nothing."""

import os
import sqlite3
from typing import Dict, List, Tuple

import psycopg2
import pytest
from psycopg2 import sql

from tools.testkit.synthetic_dataset import create_dataset
from tests.module_runner import ROOT, run_module

UCR_FOLDER = os.path.join(ROOT, 'tests', 'fixtures', 'ucr_data_sources')


def _conn(server, db):
    return dict(login_host='127.0.0.1', login_port=server.port, login_user='postgres',
                login_db=db, ssl_mode='disable')


def _target_args(pair, **extra):
    args = _conn(pair.target_server, pair.target_db)
    args['source'] = _conn(pair.source_server, pair.source_db)
    args.update(extra)
    return args


def _load(pair):
    conn = psycopg2.connect(host='127.0.0.1', port=pair.source_server.port, user='postgres',
                            dbname=pair.source_db)
    try:
        create_dataset(conn, months=2, scale=15, ucr_folder=UCR_FOLDER)
        conn.commit()
    finally:
        conn.close()


# count and md5 of rows in a stable order, each side's rows rendered by its own server
_FINGERPRINT = sql.SQL("SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') "
                       "FROM ({}) x")


def _fingerprint(conn, tables: List[str]) -> str:
    rows = sql.SQL(' UNION ALL ').join(sql.SQL('SELECT * FROM ONLY {}').format(sql.Identifier(t))
                                       for t in tables)
    with conn.cursor() as cur:
        cur.execute(_FINGERPRINT.format(rows))
        return cur.fetchone()[0]


def _rows_by_target(manifest: str) -> Dict[str, List[str]]:
    """Target table -> the source tables the manifest copies into it."""
    conn = sqlite3.connect(manifest)
    try:
        pairs = conn.execute('SELECT source_table, target_table FROM tables').fetchall()
    finally:
        conn.close()
    out: Dict[str, List[str]] = {}
    for source, target in pairs:
        out.setdefault(target or source, []).append(source)
    return out


def _check_rows_by_md5(pair, manifest: str) -> Tuple[int, int]:
    """Every target table holds exactly the rows of its source tables; returns how many
    source tables and rows were checked. Independent of compare_tables."""
    src = psycopg2.connect(**pair.source.libpq_kwargs())
    tgt = psycopg2.connect(**pair.target.libpq_kwargs())
    tables = rows = 0
    try:
        for target, sources in sorted(_rows_by_target(manifest).items()):
            expected = _fingerprint(src, sources)
            assert _fingerprint(tgt, [target]) == expected, (target, sources)
            tables += len(sources)
            rows += int(expected.split(':')[0])
    finally:
        src.close()
        tgt.close()
    return tables, rows


def _twice(name, args):
    first = run_module(name, args)
    assert not first.get('failed'), first
    second = run_module(name, args)
    assert not second.get('failed'), second
    assert second['changed'] is False, (name, second)
    return first


def _chain(pair, tmp_path):
    _load(pair)
    manifest = str(tmp_path / 'icds.db')
    boot = _twice('citus_bootstrap', _target_args(pair, ucr_folder=UCR_FOLDER))
    assert boot['changed'] is True
    _twice('citus_child_tables', _target_args(pair, ucr_folder=UCR_FOLDER))
    gen_args = _conn(pair.source_server, pair.source_db)
    gen_args.update(path=manifest, ucr_folder=UCR_FOLDER)
    gen = _twice('migration_manifest', gen_args)
    assert gen['added_count'] > 50 and not gen['unclassified']
    copy = _twice('migrate_tables', _target_args(pair, path=manifest, parallel=2))
    assert copy['copied'] == gen['added_count'] and copy['errored'] == 0
    compare = run_module('compare_tables', _target_args(pair, path=manifest, checksums=True,
                                                        fail_on_drift=True))
    assert not compare.get('failed'), compare
    assert compare['drift_count'] == 0 and compare['matched_count'] == gen['added_count']
    assert _check_rows_by_md5(pair, manifest) == (gen['added_count'], copy['rows_copied'])
    return boot


def test_chain_on_plain_postgresql(dbs, tmp_path):
    boot = _chain(dbs, tmp_path)
    assert boot['skipped_distribution']


@pytest.mark.citus
def test_chain_on_citus(citus_dbs, tmp_path):
    _chain(citus_dbs, tmp_path)
    placed = dict(line.split('|') for line in citus_dbs.tgt_sql(
        "SELECT logicalrelid::text, partmethod::text || coalesce(':' || column_to_column_name(logicalrelid, partkey), '') "
        "FROM pg_dist_partition").split())
    assert placed['child_health_monthly'] == 'h:supervisor_id'
    assert placed['awc_location'] == 'n' and placed['icds_months'] == 'n'
    assert not any(name.startswith('agg_awc') for name in placed)
    ucr = [name for name in placed if name.startswith('"ucr_icds-cas_static-child_health_cases')]
    assert ucr and all(placed[name] == 'h:supervisor_id' for name in ucr)
