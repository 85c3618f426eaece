"""Server-side faults during a copy: restarts of either server, the target gone for a while,
statement_timeout on the target role, a full target tablespace. After each, a re-run with
--retry-errors must leave the target equal to the source with a truthful manifest."""

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from tests.faults.common import (
    BIG, check_final, check_truthful, manifest_state, query, recorded, release_throttle,
    throttle_big, unthrottle, wait_for_backends_gone, wait_for_target_copy)
from tools.testkit.pg_cluster import SUPERUSER
from tests.integration.copy_helpers import cli_conn_args, last_error, run_cli


def _start(pair, *extra, args=None, env=None):
    return run_cli(['migrate', '--yes'] + list(extra) + (args or cli_conn_args(pair))
                   + [pair.manifest], env=env, background=True)


def _rerun(pair, *extra, args=None, env=None):
    res = run_cli(['migrate', '--yes', '--retry-errors'] + list(extra) + (args or cli_conn_args(pair))
                  + [pair.manifest], env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return res


def _no_traceback(err: str) -> None:
    assert 'Traceback' not in err, err


def _first_run_failed(proc, entry) -> None:
    """The faulted run ended with exit status 1 and a readable error, no traceback."""
    out, err = proc.communicate(timeout=300)
    entry['first_rc'] = proc.returncode
    _no_traceback(err)
    assert proc.returncode == 1, (out, err)


def _recover(world, pair, entry) -> None:
    """Once the runner is gone: the manifest tells the truth, and an unthrottled re-run
    leaves the target equal to the source."""
    wait_for_backends_gone(pair)
    entry.update(check_truthful(world, pair))
    unthrottle(pair)
    _rerun(pair, '--parallel', '2')
    check_final(world, pair)


@pytest.mark.slow
@pytest.mark.parametrize('side', ['target', 'source'])
@pytest.mark.parametrize('mode', ['fast', 'immediate'])
def test_server_restart_mid_copy(world, pair, side, mode):
    server = world.target_server if side == 'target' else world.source_server
    with recorded('test_server_restart_mid_copy', None, '%s restart (%s)' % (side, mode),
                  side=side, mode=mode) as entry:
        throttle_big(pair)  # BIG takes >= 6 s: the restart lands mid-copy, idle machine or not
        proc = _start(pair, '--parallel', '2')
        wait_for_target_copy(pair, proc)
        time.sleep(0.3)
        server.restart(mode)
        server.wait_ready()
        release_throttle(pair)  # the fault has landed: let the target drain its input quickly
        _first_run_failed(proc, entry)
        assert manifest_state(pair.manifest)[BIG] == (None, 1)
        message, _sqlstate = last_error(pair.manifest, BIG)
        entry['error'] = message
        assert message.startswith(side + ':') or 'cannot connect' in message, message
        _recover(world, pair, entry)


@pytest.mark.slow
def test_target_gone_for_a_while(world, pair):
    """The target disappears mid-copy (a network cut) and comes back 3 s later: the tables
    in flight and every table started meanwhile fail cleanly; a re-run finishes the job."""
    with recorded('test_target_gone_for_a_while', None, 'target down 3s') as entry:
        throttle_big(pair)  # BIG takes >= 6 s: the target goes away mid-copy
        proc = _start(pair, '--parallel', '2', '--no-stop-on-error')
        wait_for_target_copy(pair, proc)
        world.target_server.stop('immediate')
        time.sleep(3)
        world.target_server.start()
        world.target_server.wait_ready()
        _first_run_failed(proc, entry)
        errored = [t for t, f in manifest_state(pair.manifest).items() if f[1]]
        entry['errored'] = errored
        assert BIG in errored
        _recover(world, pair, entry)


@pytest.mark.slow
def test_statement_timeout_on_the_target_role(world, pair):
    role = 'copier_%s' % pair.target_db
    secret = 'Timeout-pw-%d' % os.getpid()
    world.target_server.psql("CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'" % (role, secret))
    try:
        world.target_server.psql('ALTER ROLE %s IN DATABASE %s SET statement_timeout = 100'
                                 % (role, pair.target_db))
        args = cli_conn_args(pair)
        args[args.index('-u') + 1] = role
        env = {'TGT_PW': secret}
        with recorded('test_statement_timeout_on_the_target_role', None,
                      'statement_timeout 100ms') as entry:
            res = run_cli(['migrate', '--yes', '--no-stop-on-error', '--target-password-env', 'TGT_PW']
                          + args + [pair.manifest], env=env, timeout=300)
            entry['first_rc'] = res.returncode
            _no_traceback(res.stderr)
            assert res.returncode == 1, res.stdout + res.stderr
            message, sqlstate = last_error(pair.manifest, BIG)
            entry['error'] = message
            assert sqlstate == '57014' and 'statement timeout' in message, message
            with open(pair.manifest + '.errors.jsonl') as handle:
                logged = [json.loads(line) for line in handle]
            assert any(e['source_table'] == BIG and e['sqlstate'] == '57014' for e in logged)
            entry.update(check_truthful(world, pair))
            world.target_server.psql('ALTER ROLE %s IN DATABASE %s RESET statement_timeout'
                                     % (role, pair.target_db))
            _rerun(pair, '--target-password-env', 'TGT_PW', args=args, env=env)
            check_final(world, pair)
    finally:
        world.drop(pair)
        world.target_server.psql('DROP ROLE IF EXISTS %s' % role)


@pytest.fixture
def tiny_tablespace(world):
    """A 2 MB tmpfs mounted as a tablespace directory on the target server."""
    where = tempfile.mkdtemp(prefix='icds-tiny-ts-')
    res = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', where],
                         capture_output=True, text=True)
    if res.returncode != 0:
        os.rmdir(where)
        pytest.skip('cannot mount a 2 MB tmpfs for a full tablespace (%s)' % res.stderr.strip())
    shutil.chown(where, SUPERUSER, SUPERUSER)
    name = 'tiny_%d' % os.getpid()
    world.target_server.psql("CREATE TABLESPACE %s LOCATION '%s'" % (name, where))
    try:
        yield name
    finally:
        world.ensure_up()
        world.target_server.psql('DROP TABLESPACE IF EXISTS %s' % name)
        subprocess.run(['umount', where], capture_output=True)
        os.rmdir(where)


@pytest.mark.slow
def test_full_tablespace(world, pair, tiny_tablespace):
    pair.tgt_sql('ALTER TABLE "%s" SET TABLESPACE %s' % (BIG, tiny_tablespace))
    try:
        with recorded('test_full_tablespace', None, 'target tablespace full (2 MB tmpfs)') as entry:
            res = run_cli(['migrate', '--yes', '--no-stop-on-error', '--parallel', '2']
                          + cli_conn_args(pair) + [pair.manifest], timeout=300)
            entry['first_rc'] = res.returncode
            _no_traceback(res.stderr)
            assert res.returncode == 1, res.stdout + res.stderr
            message, sqlstate = last_error(pair.manifest, BIG)
            entry['error'] = message
            assert sqlstate == '53100' and 'No space left on device' in message, message
            flags = manifest_state(pair.manifest)
            assert [t for t, f in flags.items() if f != (1, None)] == [BIG]
            entry.update(check_truthful(world, pair))
            pair.tgt_sql('ALTER TABLE "%s" SET TABLESPACE pg_default' % BIG)  # the operator's fix
            _rerun(pair, '--parallel', '2')
            check_final(world, pair)
    finally:
        world.drop(pair)  # before the tablespace goes
