"""The harness itself: servers answer, databases are isolated, Citus when installed."""

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import connect
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import ConnectionFailed


def test_source_and_target_are_separate_servers(dbs):
    assert dbs.source_server.port != dbs.target_server.port
    dbs.src_sql('CREATE TABLE only_here (id int)')
    assert dbs.tgt_sql("SELECT count(*) FROM pg_class WHERE relname = 'only_here'").strip() == '0'


def test_connect_names_endpoint_on_failure(dbs):
    from dataclasses import replace
    bad = replace(dbs.target, port=1)
    with pytest.raises(ConnectionFailed) as err:
        connect(bad, role='target')
    assert 'target postgres@127.0.0.1:1/' in str(err.value)


@pytest.mark.citus
def test_citus_cluster_has_two_active_workers(citus_dbs):
    out = citus_dbs.tgt_sql("SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' "
                            "AND isactive AND groupid <> 0")
    assert out.strip() == '2'
