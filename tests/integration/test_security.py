"""Secrets and TLS: passwords never in process lists, outputs, the manifest, the error log
or module results; TLS options (up to verify-full with a CA) reach every connection."""

import contextlib
import json
import os
import subprocess
import threading
import time

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import connect
from tools.testkit.pg_cluster import CitusCluster, PgServer, citus_available, pg_bindir
from tests.fixtures.postgres import DbPair
from tests.integration.copy_helpers import (
    MANIFEST_ROWS, WEIRD, cli_conn_args, fingerprint, load_nasty, make_old_manifest,
    manifest_flags, run_cli, union_fingerprint)
from tests.module_runner import run_adhoc, run_module

SRC_PW, TGT_PW = 'Src-Secret-7f3a9', 'Tgt-Secret-c41d2'


class PsSampler:
    """Samples ``ps -eo args`` every 20 ms in a thread while something runs."""

    def __init__(self):
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            self.samples.append(subprocess.run(['ps', '-eo', 'args'], capture_output=True,
                                               text=True).stdout)
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def saw(self, needle: str) -> bool:
        return any(needle in s for s in list(self.samples))


@contextlib.contextmanager
def in_flight_until_seen(dbs, ps: PsSampler, needle: str, timeout: float = 60.0):
    """Keep a run in flight until ``ps`` has seen it.

    A lock on a target table the run must write makes the run wait there; on leaving the
    block we wait (up to ``timeout``) for a ps sample naming ``needle``, then release the
    lock. Without it a fast run could finish between two samples and the "passwords never
    in the process list" check would have looked at nothing.
    """
    conn = connect(dbs.target)
    try:
        conn.cursor().execute('LOCK TABLE "agg_awc" IN ACCESS EXCLUSIVE MODE')
        yield
        deadline = time.monotonic() + timeout
        while not ps.saw(needle) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        conn.rollback()
        conn.close()


@pytest.fixture
def secured(dbs, tmp_path):
    load_nasty(dbs, rows=3000)
    dbs.src_sql("CREATE ROLE sec_reader LOGIN PASSWORD '%s'" % SRC_PW)
    dbs.src_sql('GRANT SELECT ON ALL TABLES IN SCHEMA public TO sec_reader')
    dbs.tgt_sql("CREATE ROLE sec_writer LOGIN SUPERUSER PASSWORD '%s'" % TGT_PW)
    # one table fails, so the error log has an entry to inspect
    dbs.tgt_sql('ALTER TABLE "agg_awc_2020-02-01_1" ADD CONSTRAINT no_rows CHECK (id < 0)')
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    yield dbs
    dbs.src_sql('DROP OWNED BY sec_reader; DROP ROLE sec_reader')
    dbs.tgt_sql('DROP OWNED BY sec_writer; DROP ROLE sec_writer')


def _assert_no_secret(*texts):
    for text in texts:
        for secret in (SRC_PW, TGT_PW):
            assert secret not in text


def test_cli_passwords_never_leak(secured):
    args = cli_conn_args(secured)
    args[args.index('-U') + 1] = 'sec_reader'
    args[args.index('-u') + 1] = 'sec_writer'
    args += ['--source-password-env', 'SRC_PW', '--target-password-env', 'TGT_PW']
    env = {'SRC_PW': SRC_PW, 'TGT_PW': TGT_PW}
    with PsSampler() as ps:
        with in_flight_until_seen(secured, ps, 'migrate_tables'):
            proc = run_cli(['migrate', '--yes', '--no-stop-on-error', '--parallel', '2', '-v']
                           + args + [secured.manifest], env=env, background=True)
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, out + err  # the one table made to fail
    assert ps.saw('migrate_tables'), 'ps never saw the run in flight'
    _assert_no_secret(out, err, *ps.samples)
    assert manifest_flags(secured.manifest)['agg_awc_2020-02-01_1'] == (None, 1)
    log = open(secured.manifest + '.errors.jsonl').read()
    assert '"source": "sec_reader@127.0.0.1:' in log
    _assert_no_secret(log, open(secured.manifest, 'rb').read().decode('latin-1'))
    for server in (secured.source_server, secured.target_server):
        _assert_no_secret(open(server.logfile, errors='replace').read())
    status = run_cli(['status', secured.manifest, 'list', '-D', secured.source_db, '-O', '127.0.0.1',
                      '-U', 'sec_reader', '--source-port', str(secured.source_server.port),
                      '--source-password-env', 'SRC_PW'], env=env)
    assert status.returncode == 0, status.stderr
    _assert_no_secret(status.stdout, status.stderr)
    # a wrong password: the error names the role, never the password tried
    bad = run_cli(['migrate', '--yes', '--retry-errors'] + args + [secured.manifest],
                  env={'SRC_PW': 'Wrong-' + SRC_PW, 'TGT_PW': TGT_PW})
    assert bad.returncode == 2 and 'password authentication failed for user "sec_reader"' in bad.stderr
    assert 'Wrong-' not in bad.stdout + bad.stderr


def _module_args(dbs, manifest, src_pw=SRC_PW, tgt_pw=TGT_PW, **extra):
    conn = dict(login_host='127.0.0.1', ssl_mode='disable')
    out = dict(conn, login_port=dbs.target_server.port, login_db=dbs.target_db,
               login_user='sec_writer', login_password=tgt_pw, path=manifest,
               source=dict(conn, login_port=dbs.source_server.port, login_db=dbs.source_db,
                           login_user='sec_reader', login_password=src_pw))
    out.update(extra)
    return out


def test_module_passwords_never_leak(secured):
    result = {}
    with PsSampler() as ps:
        worker = threading.Thread(target=lambda: result.update(run=run_module(
            'migrate_tables', _module_args(secured, secured.manifest, parallel=2,
                                           stop_on_error=False))))
        with in_flight_until_seen(secured, ps, 'migrate_tables'):
            worker.start()
        worker.join(300)
    res = result['run']
    assert res['failed'] and res['errored'] == 1 and res['copied'] == 6, res
    assert ps.saw('migrate_tables'), 'ps never saw the module in flight'
    _assert_no_secret(res.stdout, res.stderr, json.dumps(res), *ps.samples)
    _assert_no_secret(open(secured.manifest + '.errors.jsonl').read())
    # through the ansible command line: the invocation is masked, the output clean
    adhoc = run_adhoc('migrate_tables', _module_args(secured, secured.manifest, retry_errors=True,
                                                     fail_on_error=False))
    assert adhoc['errored'] == 1, adhoc
    _assert_no_secret(adhoc.stdout, adhoc.stderr)
    bad = run_module('migrate_tables', _module_args(secured, secured.manifest, tgt_pw='Wrong-pw-zz9'))
    assert bad['failed'] and 'password authentication failed for user "sec_writer"' in bad['msg']
    assert 'Wrong-pw-zz9' not in bad.stdout + bad.stderr


# -- TLS ---------------------------------------------------------------------------------

def _openssl(*args, cwd):
    subprocess.run(['openssl'] + list(args), cwd=cwd, check=True, capture_output=True)


def _make_ca(where, name):
    _openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=%s' % name,
             '-keyout', name + '.key', '-out', name + '.pem', cwd=where)
    return os.path.join(where, name + '.pem')


def _server_cert(where):
    """server.pem / server.key for IP 127.0.0.1, signed by the CA in ``where``."""
    _openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1',
             '-keyout', 'server.key', '-out', 'server.csr', cwd=where)
    with open(os.path.join(where, 'san.ext'), 'w') as handle:
        handle.write('subjectAltName = IP:127.0.0.1\n')
    _openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
             '-CAcreateserial', '-days', '2', '-extfile', 'san.ext', '-out', 'server.pem', cwd=where)


def _require_tls(server: PgServer, where: str) -> None:
    """Give an initialised, stopped server the certificate from ``where``, ssl=on, and a
    pg_hba.conf that rejects every TCP connection without TLS (postgres trusted over TLS,
    everyone else by password)."""
    for name in ('server.pem', 'server.key'):
        target = os.path.join(server.datadir, name)
        with open(os.path.join(where, name), 'rb') as src, open(target, 'wb') as dst:
            dst.write(src.read())
        os.chmod(target, 0o600)
        server._chown(target)
    with open(os.path.join(server.datadir, 'postgresql.auto.conf'), 'a') as handle:
        handle.write("ssl = on\nssl_cert_file = 'server.pem'\nssl_key_file = 'server.key'\n")
    with open(os.path.join(server.datadir, 'pg_hba.conf'), 'w') as handle:
        handle.write('local all all trust\n'
                     'hostnossl all all 127.0.0.1/32 reject\n'
                     'hostssl all postgres 127.0.0.1/32 trust\n'
                     'hostssl all all 127.0.0.1/32 scram-sha-256\n')


@pytest.fixture(scope='module')
def tls(tmp_path_factory):
    """A server with ssl=on (cert for IP 127.0.0.1 signed by a test CA) that rejects every
    connection without TLS; a source and a target database on it; a second, unrelated CA."""
    where = str(tmp_path_factory.mktemp('tls'))
    ca = _make_ca(where, 'ca')
    other_ca = _make_ca(where, 'other-ca')
    _server_cert(where)
    server = PgServer('tls').init()
    _require_tls(server, where)
    server.start()
    server.psql("CREATE ROLE tls_user LOGIN SUPERUSER PASSWORD '%s'" % TGT_PW)
    try:
        yield server, ca, other_ca, where
    finally:
        server.destroy()


@pytest.fixture
def tls_dbs(tls, tmp_path):
    server, ca, other_ca, _where = tls
    pair = DbPair(server, server, 'tls_src_%d' % id(tmp_path), 'tls_tgt_%d' % id(tmp_path))
    server.psql('CREATE DATABASE %s' % pair.source_db)
    server.psql('CREATE DATABASE %s' % pair.target_db)
    load_nasty(pair, rows=30)
    pair.manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    pair.ca, pair.other_ca = ca, other_ca
    yield pair
    server.psql('DROP DATABASE %s WITH (FORCE)' % pair.source_db)
    server.psql('DROP DATABASE %s WITH (FORCE)' % pair.target_db)


def _tls_args(dbs, source_ca, target_ca, host='127.0.0.1'):
    args = cli_conn_args(dbs)
    for flag in ('-U', '-u'):
        args[args.index(flag) + 1] = 'tls_user'
    args[args.index('-O') + 1] = host
    args[args.index('-o') + 1] = host
    return args + ['--source-sslmode', 'verify-full', '--source-sslrootcert', source_ca,
                   '--target-sslmode', 'verify-full', '--target-sslrootcert', target_ca,
                   '--source-password-env', 'PW', '--target-password-env', 'PW']


def test_tls_verify_full_on_every_connection_of_the_cli(tls_dbs):
    env = {'PW': TGT_PW}
    for source_ca, target_ca, side in ((tls_dbs.other_ca, tls_dbs.ca, 'source'),
                                       (tls_dbs.ca, tls_dbs.other_ca, 'target')):
        res = run_cli(['migrate', '--yes'] + _tls_args(tls_dbs, source_ca, target_ca) + [tls_dbs.manifest], env=env)
        assert res.returncode == 2
        assert 'cannot connect to the %s' % side in res.stderr and 'certificate verify failed' in res.stderr
    res = run_cli(['migrate', '--yes'] + _tls_args(tls_dbs, tls_dbs.ca, tls_dbs.ca, host='localhost')
                  + [tls_dbs.manifest], env=env)
    assert res.returncode == 2 and 'does not match host name "localhost"' in res.stderr, res.stderr
    res = run_cli(['migrate', '--yes', '--parallel', '3'] + _tls_args(tls_dbs, tls_dbs.ca, tls_dbs.ca)
                  + [tls_dbs.manifest], env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert fingerprint(tls_dbs.tgt_sql, 'agg_awc_2020-01-01_1') == fingerprint(tls_dbs.src_sql, 'agg_awc_2020-01-01_1')
    assert set(manifest_flags(tls_dbs.manifest).values()) == {(1, None)}
    status = run_cli(['status', tls_dbs.manifest, 'list', '-D', tls_dbs.source_db, '-O', '127.0.0.1',
                      '-U', 'tls_user', '--source-port', str(tls_dbs.source_server.port),
                      '--source-sslmode', 'verify-full', '--source-sslrootcert', tls_dbs.ca,
                      '--source-password-env', 'PW'], env=env)
    assert status.returncode == 0 and '% of Data' in status.stdout, status.stderr


def test_tls_verify_full_through_the_module(tls_dbs):
    def args(source_ca, target_ca):
        conn = dict(login_host='127.0.0.1', login_port=tls_dbs.target_server.port,
                    login_user='tls_user', login_password=TGT_PW, ssl_mode='verify-full')
        return dict(conn, login_db=tls_dbs.target_db, ca_cert=target_ca, path=tls_dbs.manifest,
                    source=dict(conn, login_db=tls_dbs.source_db, ca_cert=source_ca))
    bad = run_module('migrate_tables', args(tls_dbs.ca, tls_dbs.other_ca))
    assert bad['failed'] and 'cannot connect to the target' in bad['msg']
    assert 'certificate verify failed' in bad['msg']
    bad = run_module('migrate_tables', args(tls_dbs.other_ca, tls_dbs.ca), check=True)
    assert bad['failed'] and 'cannot connect to the source' in bad['msg']
    res = run_module('migrate_tables', args(tls_dbs.ca, tls_dbs.ca))
    assert not res.get('failed') and res['copied'] == 7, res
    _assert_no_secret(res.stdout, res.stderr)


@pytest.fixture(scope='module')
def tls_citus(tls):
    """A Citus coordinator (one worker) that, like the ``tls`` server, takes TLS only, with a
    certificate from the same CA. The coordinator reaches its worker with Citus's own
    node_conninfo (TLS when offered)."""
    if not citus_available():
        pytest.skip('citus extension is not installed in the PostgreSQL at %s: '
                    'Citus tests skipped' % pg_bindir())
    cluster = CitusCluster(workers=1)
    _require_tls(cluster.coordinator.init(), tls[3])
    cluster.coordinator.start()
    for worker in cluster.workers:
        worker.init().start()
    try:
        cluster.create_database('tls_cit')
        # created in the Citus database, so Citus creates it on the worker too; and its
        # password for the coordinator's own node connections (docs/copy-engine.md)
        cluster.coordinator.psql("CREATE ROLE tls_user LOGIN SUPERUSER PASSWORD '%s'" % TGT_PW,
                                 'tls_cit')
        cluster.coordinator.psql("INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) "
                                 "VALUES (0, 'tls_user', 'password=%s')" % TGT_PW, 'tls_cit')
        yield cluster
    finally:
        cluster.destroy()


@pytest.mark.citus
def test_tls_verify_full_into_citus(tls, tls_citus, tmp_path):
    """verify-full to a TLS-only Citus coordinator: the CLI and the module copy into a
    distributed table (the rows reach the worker's shards), a wrong CA is refused by name."""
    server = tls[0]
    pair = DbPair(server, tls_citus.coordinator, 'tls_src_cit', 'tls_cit', citus=True)
    server.psql('CREATE DATABASE %s' % pair.source_db)
    try:
        load_nasty(pair, rows=40)
        pair.tgt_sql("SELECT create_distributed_table('child_health_monthly', 'id')")
        env = {'PW': TGT_PW}
        manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS[:4])
        bad = run_cli(['migrate', '--yes'] + _tls_args(pair, tls[1], tls[2]) + [manifest], env=env)
        assert bad.returncode == 2 and 'cannot connect to the target' in bad.stderr
        assert 'certificate verify failed' in bad.stderr
        res = run_cli(['migrate', '--yes', '--parallel', '2'] + _tls_args(pair, tls[1], tls[1])
                      + [manifest], env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert fingerprint(pair.tgt_sql, 'child_health_monthly') == union_fingerprint(
            pair.src_sql, ['child_health_monthly', 'child_health_monthly_2020-01-01',
                           'child_health_monthly_2020-02-01'])
        # the coordinator reached the worker's shards (over its own node connections)
        on_shards = pair.tgt_sql("SELECT sum(result::bigint) FROM run_command_on_shards("
                                 "'child_health_monthly', 'SELECT count(*) FROM %s')").strip()
        assert on_shards == pair.tgt_sql('SELECT count(*) FROM child_health_monthly').strip() != '0'
        # the module, through the shared connection options, copies the rest
        conn = dict(login_host='127.0.0.1', login_user='tls_user', login_password=TGT_PW,
                    ssl_mode='verify-full', ca_cert=tls[1])
        out = run_module('migrate_tables', dict(
            conn, login_port=tls_citus.coordinator.port, login_db=pair.target_db,
            path=make_old_manifest(str(tmp_path / 'all.db'), MANIFEST_ROWS),
            source=dict(conn, login_port=server.port, login_db=pair.source_db)))
        assert not out.get('failed') and out['already_copied'] == 4 and out['copied'] == 3, out
        for table in ('agg_awc', 'agg_awc_2020-01-01_1', WEIRD):
            assert fingerprint(pair.tgt_sql, table) == fingerprint(pair.src_sql, table), table
    finally:
        server.psql('DROP DATABASE %s WITH (FORCE)' % pair.source_db)
