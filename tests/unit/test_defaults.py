"""The defaults are written once (module_utils/common/defaults.py): what ansible-doc shows
for each module (its DOCUMENTATION and doc fragments, as rendered) and what the CLI's parser
uses equal those constants. ansible-test's validate-modules checks the documentation against
each argument spec, which takes its defaults from the same constants."""

import json
import os
import subprocess

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.cli import build_parser
from ansible_collections.icds.citus_migration.plugins.module_utils.common import defaults
from tests.module_runner import DEV_COLLECTIONS, ROOT, VENV_BIN

CONNECTION = {'login_port': defaults.PORT, 'ssl_mode': defaults.SSL_MODE,
              'connect_timeout': defaults.CONNECT_TIMEOUT}
SCHEMAS = {'source_schema': defaults.SCHEMA, 'target_schema': defaults.SCHEMA}
COPY = dict(SCHEMAS, parallel=defaults.PARALLEL, split_threshold=defaults.SPLIT_THRESHOLD,
            segment_size=defaults.SEGMENT_SIZE,
            small_table_threshold=defaults.SMALL_TABLE_THRESHOLD, ledger_schema=defaults.LEDGER_SCHEMA)
TABLE_PLAN = {'schema': defaults.SCHEMA}
MODULES = {
    'migrate_tables': dict(CONNECTION, **COPY),
    'citus_bootstrap': dict(CONNECTION, **TABLE_PLAN),
    'citus_child_tables': dict(CONNECTION, **TABLE_PLAN),
    'migration_manifest': dict(CONNECTION, **TABLE_PLAN),
    'compare_tables': dict(CONNECTION, **SCHEMAS),
    'sync_sequences': dict(CONNECTION),
}


@pytest.fixture(scope='module')
def docs():
    names = ['icds.citus_migration.' + name for name in MODULES]
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=DEV_COLLECTIONS)
    res = subprocess.run([os.path.join(VENV_BIN, 'ansible-doc'), '-t', 'module', '-j'] + names,
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    return {name.rsplit('.', 1)[1]: doc['doc'] for name, doc in json.loads(res.stdout).items()}


@pytest.mark.parametrize('module', sorted(MODULES))
def test_documented_defaults_are_the_constants(docs, module):
    options = docs[module]['options']
    documented = {name: options[name].get('default') for name in MODULES[module]}
    assert documented == MODULES[module]
    assert options['ssl_mode']['choices'] == list(defaults.SSL_MODES)
    source = options.get('source', {}).get('suboptions')
    if source:
        assert {name: source[name].get('default') for name in CONNECTION} == CONNECTION


def test_cli_defaults_are_the_constants():
    parser = build_parser()
    args = parser.parse_args(['migrate', '-D', 's', '-O', 'h', '-U', 'u', '-d', 't', '-o', 'h',
                              '-u', 'u', 'm.db'])
    assert {name: getattr(args, name) for name in COPY} == COPY
    text = ' '.join(parser._subparsers._group_actions[0].choices['migrate'].format_help().split())
    assert 'Default %s' % defaults.SPLIT_THRESHOLD in text
    assert 'Default %s' % defaults.SEGMENT_SIZE in text
    assert 'Default %s' % defaults.SMALL_TABLE_THRESHOLD in text
