"""hq_toggle against a real CouchDB-compatible server (pouchdb-server, in memory).

The library is driven directly, the module through a real Python process (tests.module_runner)
and through the ``ansible`` command line, the way the runbook's pre- and post-flight use it.
"""

import socket

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.commcare.couch_toggles import (
    RANDOMNESS_KEY,
    CouchClient,
    CouchConnection,
    CouchError,
    ToggleConflict,
    ToggleEnabled,
    ToggleOptionError,
    assert_disabled,
    ensure_toggle,
    make_change,
    read_toggle,
)
from tests.fixtures.couchdb import ADMIN_PASSWORD, ADMIN_USER
from tests.module_runner import run_adhoc, run_module

ICDS = 'domain:icds-cas'


def client_for(db, **kw) -> CouchClient:
    return CouchClient(CouchConnection(url=db.url, user=db.user, password=db.password, **kw))


def module_args(db, **kw):
    args = dict(couch_url=db.url, couch_user=db.user, couch_password=db.password)
    args.update(kw)
    return args


def assert_no_secret(text: str) -> None:
    assert ADMIN_PASSWORD not in text


# ------------------------------------------------------------------------------------------
# library


def test_missing_toggle_reads_as_off_and_query_creates_nothing(couch_db):
    client = client_for(couch_db)
    state = read_toggle(client, 'parallel_agg')
    assert not state.exists and not state.enabled_for(ICDS)

    result = ensure_toggle(client, 'parallel_agg', make_change('query', ICDS))
    assert not result.changed
    result = ensure_toggle(client, 'parallel_agg', make_change('disabled', ICDS))
    assert not result.changed
    assert couch_db.get('hqFeatureToggle-parallel_agg') is None


def test_enable_creates_the_document_commcare_reads(couch_db):
    client = client_for(couch_db)
    result = ensure_toggle(client, 'enable_ucr_mirrors', make_change('enabled', ICDS))
    assert result.changed and result.after.enabled_for(ICDS)

    doc = couch_db.get('hqFeatureToggle-enable_ucr_mirrors')
    assert doc['slug'] == 'enable_ucr_mirrors'
    assert doc['doc_type'] == 'Toggle'
    assert doc['enabled_users'] == [ICDS]
    assert doc['last_modified'].endswith('Z')

    again = ensure_toggle(client, 'enable_ucr_mirrors', make_change('enabled', ICDS))
    assert not again.changed
    assert couch_db.get('hqFeatureToggle-enable_ucr_mirrors')['_rev'] == doc['_rev']


def test_enable_and_disable_touch_only_the_item(couch_db):
    couch_db.put({'_id': 'hqFeatureToggle-parallel_agg', 'doc_type': 'Toggle', 'slug': 'parallel_agg',
                  'enabled_users': ['domain:other', 'someone@example.org'],
                  'last_modified': '2019-01-01T00:00:00.000000Z', 'note': 'kept'})
    client = client_for(couch_db)

    ensure_toggle(client, 'parallel_agg', make_change('enabled', ICDS))
    doc = couch_db.get('hqFeatureToggle-parallel_agg')
    assert doc['enabled_users'] == ['domain:other', 'someone@example.org', ICDS]
    assert doc['note'] == 'kept'
    assert doc['last_modified'] != '2019-01-01T00:00:00.000000Z'

    result = ensure_toggle(client, 'parallel_agg', make_change('disabled', ICDS))
    assert result.changed
    doc = couch_db.get('hqFeatureToggle-parallel_agg')
    assert doc['enabled_users'] == ['domain:other', 'someone@example.org']
    assert doc['note'] == 'kept'
    assert not read_toggle(client, 'parallel_agg').enabled_for(ICDS)


def test_randomness_is_stored_in_the_toggle_document(couch_db):
    client = client_for(couch_db)
    slug = 'icds_compare_queries_against_citus'
    result = ensure_toggle(client, slug, make_change('enabled', randomness=0.1))
    assert result.changed
    doc = couch_db.get('hqFeatureToggle-' + slug)
    assert doc[RANDOMNESS_KEY] == 0.1 and doc['enabled_users'] == []
    assert read_toggle(client, slug).enabled_for(ICDS)

    assert not ensure_toggle(client, slug, make_change('enabled', randomness=0.1)).changed
    ensure_toggle(client, slug, make_change('enabled', randomness=0.25))
    assert couch_db.get('hqFeatureToggle-' + slug)[RANDOMNESS_KEY] == 0.25

    ensure_toggle(client, slug, make_change('disabled', randomness=0))
    assert couch_db.get('hqFeatureToggle-' + slug)[RANDOMNESS_KEY] == 0
    assert not read_toggle(client, slug).enabled_for(ICDS)


class InterferingClient(CouchClient):
    """A real client; after some of its reads a second, independent writer updates the doc."""

    def __init__(self, conn, other_db, interfere_times):
        super().__init__(conn)
        self.other_db = other_db
        self.interfere_times = interfere_times
        self.reads = 0

    def get_doc(self, doc_id):
        doc = super().get_doc(doc_id)
        self.reads += 1
        if self.reads <= self.interfere_times:
            theirs = self.other_db.get(doc_id)
            theirs['enabled_users'].append('domain:writer-%d' % self.reads)
            self.other_db.put(theirs)
        return doc


def test_conflict_rereads_and_keeps_the_other_writers_change(couch_db):
    couch_db.put({'_id': 'hqFeatureToggle-parallel_agg', 'doc_type': 'Toggle', 'slug': 'parallel_agg',
                  'enabled_users': ['domain:other']})
    client = InterferingClient(CouchConnection(couch_db.url, ADMIN_USER, ADMIN_PASSWORD), couch_db, 1)

    result = ensure_toggle(client, 'parallel_agg', make_change('enabled', ICDS))

    assert result.changed and result.attempts == 2
    assert couch_db.get('hqFeatureToggle-parallel_agg')['enabled_users'] == [
        'domain:other', 'domain:writer-1', ICDS]


def test_conflict_that_never_ends_fails_cleanly(couch_db):
    couch_db.put({'_id': 'hqFeatureToggle-parallel_agg', 'slug': 'parallel_agg', 'enabled_users': []})
    client = InterferingClient(CouchConnection(couch_db.url, ADMIN_USER, ADMIN_PASSWORD), couch_db, 100)

    with pytest.raises(ToggleConflict) as err:
        ensure_toggle(client, 'parallel_agg', make_change('enabled', ICDS), conflict_retries=2)

    message = str(err.value)
    assert '409' in message and 'parallel_agg' in message and '3 times' in message
    assert_no_secret(message)
    assert 'http' not in message
    assert ICDS not in couch_db.get('hqFeatureToggle-parallel_agg')['enabled_users']


def test_wrong_password_is_reported_without_secrets(couch_db):
    client = CouchClient(CouchConnection(couch_db.url, ADMIN_USER, 'not-the-password-991'))
    with pytest.raises(CouchError) as err:
        ensure_toggle(client, 'parallel_agg', make_change('enabled', ICDS))
    message = str(err.value)
    assert '401' in message and 'couch_password' in message
    assert 'not-the-password-991' not in message and 'http' not in message


def test_missing_database_and_unreachable_server_are_clear(couch_db, couchdb_server):
    client = CouchClient(CouchConnection(couchdb_server + '/no_such_db', ADMIN_USER, ADMIN_PASSWORD))
    with pytest.raises(CouchError, match='no database no_such_db'):
        read_toggle(client, 'parallel_agg')

    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    client = CouchClient(CouchConnection('http://127.0.0.1:%d/hq' % port, ADMIN_USER, ADMIN_PASSWORD))
    with pytest.raises(CouchError) as err:
        read_toggle(client, 'parallel_agg')
    assert 'cannot reach CouchDB at 127.0.0.1:%d' % port in str(err.value)
    assert_no_secret(str(err.value))


def test_credentials_in_the_url_are_refused_without_echoing_them():
    with pytest.raises(CouchError) as err:
        CouchConnection('http://admin:pw-in-url-55@127.0.0.1:5984/hq')
    assert 'pw-in-url-55' not in str(err.value) and 'couch_user' in str(err.value)


def test_tls_certificate_checks(couch_db, couchdb_tls):
    url = '%s/%s' % (couchdb_tls.url, couch_db.name)
    couch_db.put({'_id': 'hqFeatureToggle-parallel_agg', 'slug': 'parallel_agg', 'enabled_users': [ICDS]})

    untrusted = CouchClient(CouchConnection(url, ADMIN_USER, ADMIN_PASSWORD))
    with pytest.raises(CouchError) as err:
        read_toggle(untrusted, 'parallel_agg')
    assert 'TLS' in str(err.value) and 'ca_path' in str(err.value)
    assert_no_secret(str(err.value))

    trusted = CouchClient(CouchConnection(url, ADMIN_USER, ADMIN_PASSWORD, ca_path=couchdb_tls.ca_file))
    assert read_toggle(trusted, 'parallel_agg').enabled_for(ICDS)

    unchecked = CouchClient(CouchConnection(url, ADMIN_USER, ADMIN_PASSWORD, validate_certs=False))
    assert ensure_toggle(unchecked, 'parallel_agg', make_change('disabled', ICDS)).changed
    assert couch_db.get('hqFeatureToggle-parallel_agg')['enabled_users'] == []


@pytest.mark.parametrize('state, item, randomness, message', [
    ('query', ICDS, 0.5, 'use it with state=enabled'),
    ('enabled', None, None, 'needs item'),
    ('disabled', None, None, 'needs item'),
    ('enabled', ICDS, 1.5, 'between 0 and 1'),
    ('disabled', None, 0.3, 'must be 0'),
    ('enabled', '  ', None, 'must not be empty'),
])
def test_meaningless_requests_are_refused(state, item, randomness, message):
    with pytest.raises(ToggleOptionError, match=message):
        make_change(state, item, randomness)


def test_assert_disabled_names_the_toggle_and_the_reason(couch_db):
    client = client_for(couch_db)
    assert_disabled(read_toggle(client, 'parallel_agg'), ICDS)  # absent: off

    ensure_toggle(client, 'parallel_agg', make_change('enabled', ICDS))
    with pytest.raises(ToggleEnabled, match='toggle parallel_agg is enabled for domain:icds-cas'):
        assert_disabled(read_toggle(client, 'parallel_agg'), ICDS)
    assert_disabled(read_toggle(client, 'parallel_agg'), 'domain:other')

    ensure_toggle(client, 'enable_ucr_mirrors', make_change('enabled', randomness=0.5))
    with pytest.raises(ToggleEnabled, match='random sampling'):
        assert_disabled(read_toggle(client, 'enable_ucr_mirrors'), ICDS)


# ------------------------------------------------------------------------------------------
# the module


def test_module_check_mode_reports_and_writes_nothing(couch_db):
    run = run_module('hq_toggle', module_args(couch_db, slug='parallel_agg', item=ICDS, state='enabled'),
                     check=True, diff=True)
    assert not run.get('failed'), run
    assert run['changed'] and run['enabled'] and run['enabled_users'] == [ICDS]
    assert ICDS not in run['diff']['before'] and ICDS in run['diff']['after']
    assert couch_db.get('hqFeatureToggle-parallel_agg') is None


def test_module_enable_is_idempotent_and_shows_a_diff(couch_db):
    args = module_args(couch_db, slug='parallel_agg', item=ICDS, state='enabled')
    first = run_module('hq_toggle', args, diff=True)
    assert first['changed'] and first['enabled'] and first['exists']
    assert first['diff']['before_header'] == 'hqFeatureToggle-parallel_agg'
    assert couch_db.get('hqFeatureToggle-parallel_agg')['enabled_users'] == [ICDS]

    second = run_module('hq_toggle', args, diff=True)
    assert not second['changed']
    assert second['diff']['before'] == second['diff']['after']


def test_module_failure_keeps_the_password_out_of_every_output(couch_db):
    run = run_module('hq_toggle', module_args(couch_db, slug='parallel_agg', item=ICDS, state='enabled',
                                              couch_password='wrong-pw-4471'))
    assert run['failed'] and '401' in run['msg']
    assert 'wrong-pw-4471' not in run.stdout + run.stderr

    run = run_module('hq_toggle', module_args(couch_db, slug='parallel_agg', item=ICDS, state='enabled'))
    assert run['changed']
    assert_no_secret(run.stdout + run.stderr)


def test_runbook_pre_and_post_flight_through_the_ansible_cli(couch_db):
    """Pre-flight passes while both toggles are off, post-flight enables all three,
    and the pre-flight then stops the run naming the toggle."""
    for slug in ('enable_ucr_mirrors', 'parallel_agg'):
        pre = run_adhoc('hq_toggle', module_args(couch_db, slug=slug, item=ICDS, state='query',
                                                 fail_if_enabled=True))
        assert not pre.get('failed'), pre
        assert pre['enabled'] is False and not pre['changed']
        assert_no_secret(pre.stdout + pre.stderr)

    for slug in ('enable_ucr_mirrors', 'parallel_agg'):
        post = run_adhoc('hq_toggle', module_args(couch_db, slug=slug, item=ICDS, state='enabled'))
        assert post['changed'] and post['enabled']
    post = run_adhoc('hq_toggle', module_args(couch_db, slug='icds_compare_queries_against_citus',
                                              randomness=0.1, state='enabled'))
    assert post['changed'] and post['randomness'] == 0.1
    assert_no_secret(post.stdout + post.stderr)

    assert couch_db.get('hqFeatureToggle-enable_ucr_mirrors')['enabled_users'] == [ICDS]
    assert couch_db.get('hqFeatureToggle-parallel_agg')['enabled_users'] == [ICDS]
    assert couch_db.get('hqFeatureToggle-icds_compare_queries_against_citus')[RANDOMNESS_KEY] == 0.1

    pre = run_adhoc('hq_toggle', module_args(couch_db, slug='parallel_agg', item=ICDS,
                                             fail_if_enabled=True))
    assert pre['failed']
    assert pre['msg'] == 'toggle parallel_agg is enabled for domain:icds-cas; it must be disabled at this point'
    assert_no_secret(pre.stdout + pre.stderr)


def test_module_refuses_fail_if_enabled_with_a_write(couch_db):
    run = run_module('hq_toggle', module_args(couch_db, slug='parallel_agg', item=ICDS, state='enabled',
                                              fail_if_enabled=True))
    assert run['failed'] and 'fail_if_enabled only goes with state=query' in run['msg']
    assert couch_db.get('hqFeatureToggle-parallel_agg') is None
