"""connection_pair opens source then target and always closes what it opened."""

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.common import pg_connection
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import ConnectionFailed
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import (
    ConnParams, connection_pair, source_target_from_module_options)


class FakeConn:
    def __init__(self, role, autocommit):
        self.role = role
        self.autocommit = autocommit
        self.closed = False

    def close(self):
        self.closed = True


@pytest.fixture
def opened(monkeypatch):
    """The fake connections connect() handed out; a target host 'down' fails to connect."""
    conns = []

    def fake_connect(params, role='database', autocommit=False):
        if params.host == 'down':
            raise ConnectionFailed('cannot connect to the %s %s: down' % (role, params.describe()))
        conn = FakeConn(role, autocommit)
        conns.append(conn)
        return conn

    monkeypatch.setattr(pg_connection, 'connect', fake_connect)
    return conns


def test_yields_source_then_target_and_closes_both(opened):
    with connection_pair(ConnParams(host='a'), ConnParams(host='b'), autocommit=True) as (src, tgt):
        assert (src.role, tgt.role) == ('source', 'target')
        assert src.autocommit and tgt.autocommit
        assert not src.closed and not tgt.closed
    assert src.closed and tgt.closed


def test_closes_both_when_the_block_raises(opened):
    with pytest.raises(RuntimeError):
        with connection_pair(ConnParams(host='a'), ConnParams(host='b')):
            raise RuntimeError('boom')
    assert [c.closed for c in opened] == [True, True]


def test_closes_the_source_when_the_target_cannot_connect(opened):
    with pytest.raises(ConnectionFailed, match='cannot connect to the target'):
        with connection_pair(ConnParams(host='a'), ConnParams(host='down')):
            pytest.fail('the block must not run')
    assert [(c.role, c.closed) for c in opened] == [('source', True)]


def test_source_target_from_module_options():
    source, target = source_target_from_module_options(
        {'login_host': 't', 'login_port': 5433, 'source': {'login_host': 's', 'login_db': 'x'}})
    assert (source.host, source.dbname, target.host, target.port) == ('s', 'x', 't', 5433)
