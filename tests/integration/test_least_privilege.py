"""The engine under roles holding exactly the grants of docs/copy-engine.md ("Least
privilege"); each grant removed in turn gives an error naming what is missing."""


import pytest

from tests.integration.copy_helpers import (
    MANIFEST_ROWS, fingerprint, last_error, load_nasty, make_old_manifest, manifest_flags, run_cli,
    union_fingerprint)

READER_PW, WRITER_PW = 'Reader-pw-1x', 'Writer-pw-2y'


def _roles(dbs, tag):
    reader, writer = 'reader_%s' % tag, 'writer_%s' % tag
    src, tgt = dbs.source_db, dbs.target_db
    dbs.src_sql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (reader, READER_PW))
    dbs.tgt_sql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (writer, WRITER_PW))
    # nothing by default: no PUBLIC grants on the databases or the schemas
    dbs.src_sql('REVOKE ALL ON DATABASE %s FROM PUBLIC; REVOKE ALL ON SCHEMA public FROM PUBLIC' % src)
    dbs.tgt_sql('REVOKE ALL ON DATABASE %s FROM PUBLIC; REVOKE ALL ON SCHEMA public FROM PUBLIC' % tgt)
    # exactly the documented grants
    dbs.src_sql('GRANT CONNECT ON DATABASE %s TO %s' % (src, reader))
    dbs.src_sql('GRANT USAGE ON SCHEMA public TO %s' % reader)
    dbs.src_sql('GRANT SELECT ON ALL TABLES IN SCHEMA public TO %s' % reader)
    dbs.tgt_sql('GRANT CONNECT, CREATE ON DATABASE %s TO %s' % (tgt, writer))
    dbs.tgt_sql('GRANT USAGE ON SCHEMA public TO %s' % writer)
    dbs.tgt_sql('GRANT INSERT ON ALL TABLES IN SCHEMA public TO %s' % writer)
    return reader, writer


@pytest.fixture
def least(dbs, tmp_path, request):
    load_nasty(dbs, rows=20)
    tag = '%d' % (abs(hash(request.node.name)) % 10 ** 8)
    dbs.reader, dbs.writer = _roles(dbs, tag)
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    yield dbs
    for server, db, role in ((dbs.source_server, dbs.source_db, dbs.reader),
                             (dbs.target_server, dbs.target_db, dbs.writer)):
        server.psql('DROP OWNED BY %s CASCADE' % role, db)
        server.psql('REVOKE ALL ON DATABASE %s FROM %s' % (db, role))
        server.psql('DROP ROLE %s' % role)


def _args(dbs):
    return ['-D', dbs.source_db, '-O', '127.0.0.1', '-U', dbs.reader, '--source-port', str(dbs.source_server.port),
            '--source-password-env', 'SRC_PW',
            '-d', dbs.target_db, '-o', '127.0.0.1', '-u', dbs.writer, '--target-port', str(dbs.target_server.port),
            '--target-password-env', 'TGT_PW']


def _migrate(dbs, *extra):
    return run_cli(['migrate', '--yes'] + list(extra) + _args(dbs) + [dbs.manifest],
                   env={'SRC_PW': READER_PW, 'TGT_PW': WRITER_PW})


def test_documented_grants_are_enough(least):
    res = _migrate(least, '--parallel', '2')
    assert res.returncode == 0, res.stdout + res.stderr
    for table in ('agg_awc', 'agg_awc_2020-01-01_1', 'agg_awc_2020-02-01_1'):
        assert fingerprint(least.tgt_sql, table) == fingerprint(least.src_sql, table)
    assert fingerprint(least.tgt_sql, 'child_health_monthly') == union_fingerprint(
        least.src_sql, ['child_health_monthly', 'child_health_monthly_2020-01-01',
                        'child_health_monthly_2020-02-01'])
    assert set(manifest_flags(least.manifest).values()) == {(1, None)}
    # with the ledger schema in place, CREATE on the database is no longer needed
    least.tgt_sql('REVOKE CREATE ON DATABASE %s FROM %s' % (least.target_db, least.writer))
    fresh = make_old_manifest(least.manifest + '.2', MANIFEST_ROWS)
    least.manifest = fresh
    res = _migrate(least)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize('side,revoke,table,expected', [
    ('source', 'REVOKE SELECT ON "agg_awc_2020-01-01_1" FROM {role}', 'agg_awc_2020-01-01_1',
     'source: permission denied for table agg_awc_2020-01-01_1 (the source role needs SELECT on it)'),
    ('target', 'REVOKE INSERT ON "agg_awc_2020-01-01_1" FROM {role}', 'agg_awc_2020-01-01_1',
     'target: permission denied for table agg_awc_2020-01-01_1 (the target role needs INSERT on it)'),
])
def test_missing_table_grant_names_table_and_privilege(least, side, revoke, table, expected):
    sql_fn, role = (least.src_sql, least.reader) if side == 'source' else (least.tgt_sql, least.writer)
    sql_fn(revoke.format(role=role))
    res = _migrate(least, '--no-stop-on-error')
    assert res.returncode == 1, res.stdout + res.stderr
    assert last_error(least.manifest, table) == (expected, '42501')
    assert 'ERROR %s -> %s: %s' % (table, table, expected) in res.stdout
    flags = manifest_flags(least.manifest)
    assert [t for t, f in flags.items() if f != (1, None)] == [table]


@pytest.mark.parametrize('side', ['source', 'target'])
def test_missing_schema_usage(least, side):
    sql_fn, role = (least.src_sql, least.reader) if side == 'source' else (least.tgt_sql, least.writer)
    sql_fn('REVOKE USAGE ON SCHEMA public FROM %s' % role)
    res = _migrate(least)
    assert res.returncode == 1, res.stdout + res.stderr
    message, sqlstate = last_error(least.manifest, MANIFEST_ROWS[0][0])
    assert sqlstate == '42501'
    assert message == '%s: permission denied for schema public (the %s role needs USAGE on it)' % (
        side, side)


@pytest.mark.parametrize('side', ['source', 'target'])
def test_missing_connect(least, side):
    sql_fn, role, db = ((least.src_sql, least.reader, least.source_db) if side == 'source'
                        else (least.tgt_sql, least.writer, least.target_db))
    sql_fn('REVOKE CONNECT ON DATABASE %s FROM %s' % (db, role))
    res = _migrate(least)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and 'cannot connect to the %s' % side in lines[0]
    assert 'permission denied for database "%s"' % db in lines[0]
    assert 'User does not have CONNECT privilege' in lines[0]


def test_missing_create_for_the_ledger(least):
    least.tgt_sql('REVOKE CREATE ON DATABASE %s FROM %s' % (least.target_db, least.writer))
    res = _migrate(least)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in res.stderr, res.stderr
    assert lines[0] == (
        'migrate_tables: error: cannot create the ledger schema "icds_citus_migration" on the '
        'target: permission denied for database %s: grant CREATE on the database to the copying '
        'role, or create the schema beforehand owned by it' % least.target_db)
    assert set(manifest_flags(least.manifest).values()) == {(None, None)}


def test_recopy_needs_delete_and_select_on_the_target(least):
    assert _migrate(least).returncode == 0
    least.src_sql('INSERT INTO "child_health_monthly_2020-01-01" (id, month) VALUES (99, DATE \'2020-01-01\')')
    res = _migrate(least, '--recopy', 'child_health_monthly_2020-01-01')
    assert res.returncode == 1, res.stdout + res.stderr
    assert ('ERROR child_health_monthly_2020-01-01 -> child_health_monthly: target: permission denied '
            'for table child_health_monthly (re-copying needs DELETE, SELECT and INSERT on it)') in res.stdout
    least.tgt_sql('GRANT DELETE, SELECT ON ALL TABLES IN SCHEMA public TO %s' % least.writer)
    res = _migrate(least, '--recopy', 'child_health_monthly_2020-01-01')
    assert res.returncode == 0, res.stdout + res.stderr
    assert least.tgt_sql('SELECT count(*) FROM child_health_monthly WHERE id = 99').strip() == '1'


@pytest.fixture
def least_citus(citus_dbs, tmp_path):
    dbs = citus_dbs
    load_nasty(dbs, rows=20)
    dbs.tgt_sql("SELECT create_distributed_table('child_health_monthly', 'id')")
    dbs.reader, dbs.writer = _roles(dbs, 'citus%d' % (abs(hash(str(tmp_path))) % 10 ** 6))
    # the coordinator reaches the workers as the copying role: its password for those
    # connections (docs/copy-engine.md, "Least privilege")
    dbs.tgt_sql("INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) "
                "VALUES (0, '%s', 'password=%s')" % (dbs.writer, WRITER_PW))
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    yield dbs
    dbs.source_server.psql('DROP OWNED BY %s CASCADE' % dbs.reader, dbs.source_db)
    dbs.source_server.psql('REVOKE ALL ON DATABASE %s FROM %s' % (dbs.source_db, dbs.reader))
    dbs.source_server.psql('DROP ROLE %s' % dbs.reader)


@pytest.mark.citus
def test_documented_grants_are_enough_on_citus(least_citus):
    """The same grants on a Citus coordinator: INSERT reaches the shards of a distributed
    table (Citus propagates the grant), the ledger schema is created by the copying role."""
    dbs = least_citus
    res = _migrate(dbs, '--parallel', '2')
    assert res.returncode == 0, res.stdout + res.stderr
    assert fingerprint(dbs.tgt_sql, 'child_health_monthly') == union_fingerprint(
        dbs.src_sql, ['child_health_monthly', 'child_health_monthly_2020-01-01',
                      'child_health_monthly_2020-02-01'])
    for table in ('agg_awc', 'agg_awc_2020-01-01_1', 'agg_awc_2020-02-01_1'):
        assert fingerprint(dbs.tgt_sql, table) == fingerprint(dbs.src_sql, table)
    assert set(manifest_flags(dbs.manifest).values()) == {(1, None)}
    owner = dbs.tgt_sql("SELECT nspowner::regrole FROM pg_namespace "
                        "WHERE nspname = 'icds_citus_migration'").strip()
    assert owner == dbs.writer
