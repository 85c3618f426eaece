"""The toggle pre-flight, first in a play whose later roles do change things (UCR mirrors,
the target's tables, the toggles): a toggle on for the domain stops the play, naming it,
before any of them runs; UCR files, target database and toggles are left as they were. The
control: toggles off, the same play runs through and every one of those snapshots changes."""

import hashlib
import os
import subprocess

import psycopg2
import pytest

from tests.fixtures.couchdb import ADMIN_PASSWORD, ADMIN_USER, http
from tools.testkit.synthetic_dataset import create_dataset
from tests.module_runner import ROOT, run_role

UCR_FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'ucr_data_sources')
DOMAIN = 'icds-cas'
# as playbooks/pre_migration.yml and post_migration.yml order them, in one play
ROLES = ['toggles_preflight', 'ucr_mirrors', 'schema_bootstrap', 'toggles_enable']


@pytest.fixture
def world(dbs, couch_db, tmp_path):
    conn = psycopg2.connect(**dbs.source.libpq_kwargs())
    try:
        create_dataset(conn, months=1, scale=2, ucr_folder=UCR_FIXTURE)
        conn.commit()
    finally:
        conn.close()
    folder = tmp_path / 'ucr_data_sources'
    subprocess.run(['cp', '-a', UCR_FIXTURE, str(folder)], check=True)
    dbs.couch = couch_db
    dbs.ucr_folder = str(folder)
    dbs.variables = dict(
        citus_migration_target_conn=dbs.module_conn('target'),
        citus_migration_source=dict(alias='src', conn=dbs.module_conn('source')),
        citus_migration_copy_host='localhost', citus_migration_require_citus=False,
        citus_migration_couch_url=couch_db.url, couchdb2=dict(username=ADMIN_USER, password=ADMIN_PASSWORD),
        citus_migration_domain=DOMAIN, citus_migration_domain_item='domain:' + DOMAIN,
        citus_migration_ucr_folder=str(folder), citus_migration_target_alias='icds-ucr-citus',
        SERVER_ENVIRONMENT='icds')
    return dbs


def _snapshot(world) -> dict:
    """What the later roles would change: UCR files (sha256 each, new files show), the
    target's relations, every CouchDB document and its revision."""
    files = {}
    for base, dummy, names in os.walk(world.ucr_folder):
        for name in names:
            with open(os.path.join(base, name), 'rb') as handle:
                files[os.path.relpath(os.path.join(base, name), world.ucr_folder)] = hashlib.sha256(
                    handle.read()).hexdigest()
    relations = world.tgt_sql(
        "SELECT string_agg(n.nspname || '.' || c.relname, ',' ORDER BY 1) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')").strip()
    status, answer = http('GET', world.couch.url + '/_all_docs')
    assert status == 200, answer
    docs = {row['id']: row['value']['rev'] for row in answer['rows']}
    return {'ucr_files': files, 'target_relations': relations, 'couch_docs': docs}


def _turn_on(world, slug):
    world.couch.put({'_id': 'hqFeatureToggle-' + slug, 'doc_type': 'Toggle', 'slug': slug,
                     'enabled_users': ['domain:' + DOMAIN]})


@pytest.mark.parametrize('slug', ['enable_ucr_mirrors', 'parallel_agg'])
def test_a_toggle_on_stops_the_play_before_any_change(world, tmp_path, slug):
    _turn_on(world, slug)
    before = _snapshot(world)
    play = run_role(ROLES, world.variables, str(tmp_path))
    assert play.returncode == 2, (play.stdout, play.stderr)
    check = play.task('Check that the toggle is off for the domain')
    assert check.get('failed'), check
    failed = [r for r in check['results'] if r.get('failed')]
    assert [r['toggles_preflight_slug'] for r in failed] == [slug]
    assert slug in failed[0]['msg'] and DOMAIN in failed[0]['msg'], failed[0]['msg']
    assert play.tasks[-1][0].startswith('Check that the toggle is off'), [n for n, dummy in play.tasks]
    assert play.changed == 0
    assert _snapshot(world) == before


def test_toggles_off_the_same_play_changes_all_three(world, tmp_path):
    before = _snapshot(world)
    play = run_role(ROLES, world.variables, str(tmp_path))
    assert play.returncode == 0, (play.stdout, play.stderr)
    after = _snapshot(world)
    assert [k for k in before if before[k] != after[k]] == list(before)
