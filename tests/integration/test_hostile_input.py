"""Hostile and bad input: each case has one exact, tested behaviour, and nothing injected
ever runs (a canary table survives on both sides)."""

import json
import sqlite3

import pytest

from tests.integration.copy_helpers import (
    cli_conn_args, fingerprint, make_old_manifest, manifest_flags, run_cli)
from tests.module_runner import run_module

# Names the manifest (or a hand edit of it) may carry; every one a real table on both sides.
HOSTILE = [
    'x"; DROP TABLE canary; --',
    "'); DROP TABLE canary; --",
    'it\'s "quoted"',
    'with space',
    'semi;colon',
    'back\\slash',
    'ünïcødé_表_✓',
    'ucr_icds-cas_static-child_health_cases_a1b2c3d4',
    'select * from canary',
]
# a drop-child family with hostile names: the child is copied into the parent
EVIL_PARENT = 'evil"parent; DELETE FROM canary; --'
EVIL_CHILD = EVIL_PARENT + '_2020-01-01'


def q(name: str) -> str:
    return '"%s"' % name.replace('"', '""')


def lit(text: str) -> str:
    return "'%s'" % text.replace("'", "''")


def _one_line_error(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('migrate_tables: error: '), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _canary(dbs):
    for run in (dbs.src_sql, dbs.tgt_sql):
        run('CREATE TABLE canary (id int)')
        run('INSERT INTO canary SELECT generate_series(1, 5)')


def _canary_alive(dbs):
    for run in (dbs.src_sql, dbs.tgt_sql):
        assert run('SELECT count(*) FROM canary').strip() == '5'


@pytest.fixture
def hostile(dbs, tmp_path):
    _canary(dbs)
    for name in HOSTILE:
        for run in (dbs.src_sql, dbs.tgt_sql):
            run('CREATE TABLE %s (id int, label text, month date)' % q(name))
        dbs.src_sql("INSERT INTO %s SELECT g, %s || ' row ' || g, NULL FROM generate_series(1, 50) g"
                    % (q(name), lit(name)))
    for run in (dbs.src_sql, dbs.tgt_sql):
        run('CREATE TABLE %s (id int, label text, month date)' % q(EVIL_PARENT))
    dbs.src_sql("CREATE TABLE %s (CHECK (month = DATE '2020-01-01')) INHERITS (%s)"
                % (q(EVIL_CHILD), q(EVIL_PARENT)))
    dbs.src_sql("INSERT INTO %s SELECT g, %s, DATE '2020-01-01' FROM generate_series(1, 30) g"
                % (q(EVIL_CHILD), lit(EVIL_CHILD)))
    dbs.src_sql("INSERT INTO %s SELECT g, 'own', NULL FROM generate_series(1, 4) g"
                % q(EVIL_PARENT))
    rows = [(n, None, None) for n in HOSTILE] + [
        (EVIL_PARENT, None, None), (EVIL_CHILD, '2020-01-01', EVIL_PARENT)]
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), rows)
    return dbs


def test_hostile_names_are_copied_exactly_and_nothing_is_injected(hostile):
    res = run_cli(['migrate', '--yes', '--parallel', '2'] + cli_conn_args(hostile) + [hostile.manifest])
    assert res.returncode == 0, res.stdout + res.stderr
    for name in HOSTILE:
        assert fingerprint(hostile.tgt_sql, name) == fingerprint(hostile.src_sql, name), name
        assert hostile.tgt_sql('SELECT count(*) FROM %s' % q(name)).strip() == '50'
    assert hostile.tgt_sql('SELECT count(*) FROM ONLY %s' % q(EVIL_PARENT)).strip() == '34'
    assert set(manifest_flags(hostile.manifest).values()) == {(1, None)}
    ledger = hostile.tgt_sql('SELECT source_table FROM icds_citus_migration.copy_ledger').splitlines()
    assert sorted(ledger) == sorted(HOSTILE + [EVIL_PARENT, EVIL_CHILD])
    _canary_alive(hostile)


def test_hostile_names_in_flags_and_dry_run(hostile):
    evil = HOSTILE[0]
    res = run_cli(['migrate', '--dry-run', '--table', evil] + cli_conn_args(hostile) + [hostile.manifest])
    assert res.returncode == 0, res.stderr
    assert 'COPY "public"."x""; DROP TABLE canary; --"' in res.stdout  # quoted, never spliced
    res = run_cli(['migrate', '--yes', '--table', evil] + cli_conn_args(hostile) + [hostile.manifest])
    assert res.returncode == 0, res.stderr
    assert manifest_flags(hostile.manifest)[evil] == (1, None)
    assert sum(1 for f in manifest_flags(hostile.manifest).values() if f[0]) == 1
    _one_line_error(run_cli(['migrate', '--yes', '--table', 'canary; DROP TABLE canary']
                            + cli_conn_args(hostile) + [hostile.manifest]),
                    "table 'canary; DROP TABLE canary' is not in the manifest")
    _canary_alive(hostile)


def test_manifest_row_naming_a_missing_source_table(dbs, tmp_path):
    _canary(dbs)
    for run in (dbs.src_sql, dbs.tgt_sql):
        run('CREATE TABLE real_one (id int)')
    dbs.src_sql('INSERT INTO real_one SELECT generate_series(1, 10)')
    dbs.tgt_sql('CREATE TABLE "ghost; DROP TABLE canary" (id int)')
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [
        ('real_one', None, None), ('ghost; DROP TABLE canary', None, None)])
    # default (stop on error): refused up front, nothing copied, the table named
    _one_line_error(run_cli(['migrate', '--yes'] + cli_conn_args(dbs) + [manifest]),
                    "source table 'ghost; DROP TABLE canary' does not exist", 'nothing was copied')
    assert dbs.tgt_sql('SELECT count(*) FROM real_one').strip() == '0'
    # --no-stop-on-error: that row errored with the same message, the rest copied
    res = run_cli(['migrate', '--yes', '--no-stop-on-error'] + cli_conn_args(dbs) + [manifest])
    assert res.returncode == 1, res.stdout + res.stderr
    assert manifest_flags(manifest) == {'real_one': (1, None), 'ghost; DROP TABLE canary': (None, 1)}
    assert "source table 'ghost; DROP TABLE canary' does not exist" in res.stdout
    _canary_alive(dbs)


def test_name_longer_than_postgres_allows_is_not_truncated_onto_another_table(dbs, tmp_path):
    """PostgreSQL truncates identifiers to 63 bytes; the engine matches names exactly, so a
    65-character manifest name never copies the 63-character table it would truncate to."""
    long_name = 'ucr_icds-cas_static-' + 'x' * 45
    short = long_name[:63]
    for run in (dbs.src_sql, dbs.tgt_sql):
        run('CREATE TABLE "%s" (id int)' % short)
    dbs.src_sql('INSERT INTO "%s" SELECT generate_series(1, 10)' % short)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [(long_name, None, None)])
    _one_line_error(run_cli(['migrate', '--yes'] + cli_conn_args(dbs) + [manifest]),
                    "source table '%s' does not exist" % long_name)
    assert dbs.tgt_sql('SELECT count(*) FROM "%s"' % short).strip() == '0'


@pytest.fixture
def dated(dbs, tmp_path):
    for run in (dbs.src_sql, dbs.tgt_sql):
        run('CREATE TABLE a (id int)')
        run('CREATE TABLE b (id int)')
    dbs.src_sql('INSERT INTO a VALUES (1)')
    dbs.src_sql('INSERT INTO b VALUES (2)')
    return dbs


@pytest.mark.parametrize('bad', ['2020-13-01', 'soon', '2020-02-30', 20200101, '20200-01-01'])
def test_bad_dates_in_the_manifest(dated, tmp_path, bad):
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [('a', '2020-01-01', None), ('b', bad, None)])
    # a date window cannot be applied to a row without a real date: refused, row named
    _one_line_error(run_cli(['migrate', '--yes', '--start-date', '2020-01-01']
                            + cli_conn_args(dated) + [manifest]),
                    'not YYYY-MM-DD', '%r (id 2, b)' % str(bad))  # text affinity: 20200101 -> '20200101'
    res = run_cli(['status', manifest, 'list', '-e', '2021-01-01'])
    assert res.returncode == 2 and '%r (id 2, b)' % str(bad) in res.stderr
    assert set(manifest_flags(manifest).values()) == {(None, None)}
    # without a window the date plays no part: both tables copied
    res = run_cli(['migrate', '--yes'] + cli_conn_args(dated) + [manifest])
    assert res.returncode == 0, res.stderr
    assert set(manifest_flags(manifest).values()) == {(1, None)}


@pytest.mark.parametrize('flag', ['--start-date', '--end-date'])
@pytest.mark.parametrize('value', ['0000-01-01', '2020-1-1', '99999-01-01', '2020-00-10',
                                   "2020-01-01'; DROP TABLE a; --"])
def test_dates_out_of_range_in_flags(dated, tmp_path, flag, value):
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [('a', '2020-01-01', None)])
    _one_line_error(run_cli(['migrate', '--yes', flag, value] + cli_conn_args(dated) + [manifest]),
                    'invalid %s' % flag)
    assert dated.tgt_sql('SELECT count(*) FROM a').strip() == '0'


@pytest.mark.parametrize('value,needle', [
    ('0', '--parallel must be a whole number from 1 to 64, got 0'),
    ('-3', '--parallel must be a whole number from 1 to 64, got -3'),
    ('65', '--parallel must be a whole number from 1 to 64, got 65'),
    ('2.5', "argument --parallel: invalid int value: '2.5'"),
    ('many', "argument --parallel: invalid int value: 'many'"),
])
def test_parallel_out_of_range(dated, tmp_path, value, needle):
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [('a', None, None)])
    res = run_cli(['migrate', '--yes', '--parallel', value] + cli_conn_args(dated) + [manifest])
    assert res.returncode == 2 and needle in res.stderr, res.stderr
    assert 'Traceback' not in res.stderr


@pytest.mark.parametrize('value', [0, -1])
def test_parallel_out_of_range_in_the_module(dated, tmp_path, value):
    manifest = make_old_manifest(str(tmp_path / 'm.db'), [('a', None, None)])
    conn = dict(login_host='127.0.0.1', login_user='postgres', ssl_mode='disable')
    args = dict(conn, login_port=dated.target_server.port, login_db=dated.target_db, path=manifest,
                parallel=value, source=dict(conn, login_port=dated.source_server.port,
                                            login_db=dated.source_db))
    res = run_module('migrate_tables', args)
    assert res['failed'] and res['msg'] == ('parallel must be a whole number from 1 to 64, got %d'
                                            % value)


def test_non_utf8_bytes_from_a_sql_ascii_source(source_server, target_server, tmp_path):
    """A SQL_ASCII source holding LATIN1 bytes, a UTF8 target: the table fails on its own
    with PostgreSQL's encoding error (SQLSTATE 22021) naming the bytes and the row; nothing
    of it is written; the other tables are copied. (Convert the data on the source, or
    declare the source database's real encoding, before copying such a table.)"""
    src_db, tgt_db = 'ascii_src_%d' % id(tmp_path), 'utf8_tgt_%d' % id(tmp_path)
    source_server.psql("CREATE DATABASE %s ENCODING 'SQL_ASCII' TEMPLATE template0 "
                       "LC_COLLATE 'C' LC_CTYPE 'C'" % src_db)
    target_server.psql('CREATE DATABASE %s' % tgt_db)
    try:
        for server, db in ((source_server, src_db), (target_server, tgt_db)):
            server.psql('CREATE TABLE latin (id int, name text); CREATE TABLE plain (id int, name text)', db)
        source_server.psql("INSERT INTO latin VALUES (1, 'ok'), (2, E'caf\\xe9 cr\\xe8me')", src_db)
        source_server.psql("INSERT INTO plain VALUES (1, 'ascii only')", src_db)
        manifest = make_old_manifest(str(tmp_path / 'm.db'), [('latin', None, None), ('plain', None, None)])
        args = ['-D', src_db, '-O', '127.0.0.1', '-U', 'postgres', '--source-port', str(source_server.port),
                '-d', tgt_db, '-o', '127.0.0.1', '-u', 'postgres', '--target-port', str(target_server.port)]
        res = run_cli(['migrate', '--yes', '--no-stop-on-error'] + args + [manifest])
        assert res.returncode == 1, res.stdout + res.stderr
        assert manifest_flags(manifest) == {'latin': (None, 1), 'plain': (1, None)}
        conn = sqlite3.connect(manifest)
        message, sqlstate = conn.execute(
            "SELECT last_error, last_sqlstate FROM table_facts JOIN tables ON id = table_id "
            "WHERE source_table = 'latin'").fetchone()
        conn.close()
        assert sqlstate == '22021'
        assert message == 'target: invalid byte sequence for encoding "UTF8": 0xe9 0x20 0x63'
        assert 'ERROR latin -> latin: target: invalid byte sequence' in res.stdout
        with open(manifest + '.errors.jsonl') as handle:
            entry = json.loads(handle.readline())
        assert entry['source_table'] == 'latin' and 'latin, line 2' in entry['context']
        assert target_server.psql('SELECT count(*) FROM latin', tgt_db).strip() == '0'
        assert target_server.psql('SELECT name FROM plain', tgt_db).strip() == 'ascii only'
    finally:
        source_server.psql('DROP DATABASE IF EXISTS %s WITH (FORCE)' % src_db)
        target_server.psql('DROP DATABASE IF EXISTS %s WITH (FORCE)' % tgt_db)
