"""The migration steps chained on the synthetic ICDS dataset, each module run for real:
bootstrap -> child tables -> manifest -> copy, then every table compared row for row, by
compare_tables and by an oracle of its own (ordered md5 of the rows, as copy_helpers does).
Every module run twice: the second run changes nothing."""

import json
import os
import subprocess
import sys
from typing import Tuple

import psycopg2
import pytest

from tools.testkit import rows_oracle
from tools.testkit.synthetic_dataset import create_dataset
from tests.module_runner import ROOT, run_module

UCR_FOLDER = os.path.join(ROOT, 'tests', 'fixtures', 'ucr_data_sources')


def _load(pair):
    conn = psycopg2.connect(host='127.0.0.1', port=pair.source_server.port, user='postgres',
                            dbname=pair.source_db)
    try:
        create_dataset(conn, months=2, scale=15, ucr_folder=UCR_FOLDER)
        conn.commit()
    finally:
        conn.close()


def _check_rows_by_md5(pair, manifest: str) -> Tuple[int, int]:
    """Every target table holds exactly the rows of its source tables (tools/testkit's
    rows_oracle, independent of compare_tables); (source tables, rows) checked."""
    src = psycopg2.connect(**pair.source.libpq_kwargs())
    tgt = psycopg2.connect(**pair.target.libpq_kwargs())
    try:
        tables, rows, mismatches = rows_oracle.check(src, tgt, manifest)
    finally:
        src.close()
        tgt.close()
    assert mismatches == []
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
    boot = _twice('citus_bootstrap', pair.module_args(ucr_folder=UCR_FOLDER))
    assert boot['changed'] is True
    _twice('citus_child_tables', pair.module_args(ucr_folder=UCR_FOLDER))
    gen_args = pair.module_conn('source')
    gen_args.update(path=manifest, ucr_folder=UCR_FOLDER)
    gen = _twice('migration_manifest', gen_args)
    assert gen['added_count'] > 50 and not gen['unclassified']
    copy = _twice('migrate_tables', pair.module_args(path=manifest, parallel=2))
    assert copy['copied'] == gen['added_count'] and copy['errored'] == 0
    compare = run_module('compare_tables', pair.module_args(path=manifest, checksums=True,
                                                        fail_on_drift=True))
    assert not compare.get('failed'), compare
    assert compare['drift_count'] == 0 and compare['matched_count'] == gen['added_count']
    assert _check_rows_by_md5(pair, manifest) == (gen['added_count'], copy['rows_copied'])
    return boot


def _oracle_script(pair, manifest: str) -> subprocess.CompletedProcess:
    """rows_oracle as molecule's verify runs it: the connections as JSON on stdin."""
    args = pair.module_args(manifest=manifest)
    args['target'] = {k: args.pop(k) for k in list(args) if k.startswith('login_') or k == 'ssl_mode'}
    return subprocess.run([sys.executable, rows_oracle.__file__], input=json.dumps(args),
                          capture_output=True, text=True, timeout=300)


def test_chain_on_plain_postgresql(dbs, tmp_path):
    boot = _chain(dbs, tmp_path)
    assert boot['skipped_distribution']
    manifest = str(tmp_path / 'icds.db')
    res = _oracle_script(dbs, manifest)
    assert res.returncode == 0 and json.loads(res.stdout)['mismatches'] == [], res
    dbs.tgt_sql('DELETE FROM awc_location WHERE ctid = (SELECT min(ctid) FROM awc_location)')
    res = _oracle_script(dbs, manifest)
    assert res.returncode == 1, res
    assert [m['target_table'] for m in json.loads(res.stdout)['mismatches']] == ['awc_location']


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
