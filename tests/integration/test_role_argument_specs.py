"""Every role's argument spec (meta/argument_specs.yml) through ansible-playbook: a wrongly
typed or missing variable stops the role on entry, naming the variable, before any task runs.
No server is needed: nothing is reached when the validation stops the role.

Also, statically: each role declares every citus_migration_* variable it reads, and the spec's
``default:`` values equal the inline ``| default(...)`` of its tasks and templates (those stay
the source of the defaults; there is no defaults/main.yml)."""

import hashlib
import os
import re
import subprocess

import pytest
import yaml

from tests.module_runner import ROOT, run_role

ROLES_DIR = os.path.join(ROOT, 'roles')
ROLES = sorted(os.listdir(ROLES_DIR))
UCR_FIXTURE = os.path.join(ROOT, 'tests', 'fixtures', 'ucr_data_sources')
# A port nothing listens on: were a task to run, it would fail without naming any variable.
CLOSED = dict(login_host='127.0.0.1', login_port=1, login_db='nowhere', login_user='postgres', ssl_mode='disable')


def _play(role, tmp_path, variables, check=False):
    """Run one play with the role; (return code, [(task name, localhost result)])."""
    play = run_role(role, variables, str(tmp_path), check=check, timeout=120)
    return play.returncode, play.tasks


def _stopped_on_entry(rc, tasks, named):
    """The play failed in the validation task, naming the variable, and ran nothing else."""
    assert rc == 2, tasks
    assert len(tasks) == 1, [name for name, _ in tasks]
    name, result = tasks[0]
    assert name.startswith("Validating arguments against arg spec 'main'"), name
    assert result.get('failed'), result
    assert named in result['msg'], result['msg']


@pytest.fixture
def ucr_folder(tmp_path):
    folder = tmp_path / 'ucr_data_sources'
    subprocess.run(['cp', '-a', UCR_FIXTURE, str(folder)], check=True)
    return folder


def _tree(folder):
    """file name -> sha256 of every file under the folder (new files, such as backups, show too)."""
    out = {}
    for base, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(base, name)
            with open(path, 'rb') as handle:
                out[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return out


def _ucr_vars(folder, **changes):
    variables = dict(citus_migration_ucr_folder=str(folder), citus_migration_domain='icds-cas',
                     citus_migration_target_alias='icds-ucr-citus', SERVER_ENVIRONMENT='icds')
    variables.update(changes)
    return {k: v for k, v in variables.items() if v is not None}


def test_ucr_mirrors_valid_variables_pass_validation(ucr_folder, tmp_path):
    """The control for the cases below: the same variables, well typed, get past the spec
    (in check mode, so nothing is written)."""
    before = _tree(ucr_folder)
    rc, tasks = _play('ucr_mirrors', tmp_path, _ucr_vars(ucr_folder), check=True)
    assert rc == 0, tasks
    assert len(tasks) > 1 and not tasks[0][1].get('failed')
    assert _tree(ucr_folder) == before


@pytest.mark.parametrize('changes, named', [
    (dict(citus_migration_ucr_backup='perhaps'), 'citus_migration_ucr_backup'),
    (dict(SERVER_ENVIRONMENT=None), 'SERVER_ENVIRONMENT'),  # missing
])
def test_ucr_mirrors_bad_variable_is_named_and_no_file_touched(ucr_folder, tmp_path, changes, named):
    before = _tree(ucr_folder)
    rc, tasks = _play('ucr_mirrors', tmp_path, _ucr_vars(ucr_folder, **changes))
    _stopped_on_entry(rc, tasks, named)
    assert _tree(ucr_folder) == before


def test_ucr_mirrors_list_for_the_folder_touches_nothing(ucr_folder, tmp_path):
    """A limit of argument specs: types str and path accept any value (Ansible converts it to a
    string), so a list where the folder is expected gets past the spec. The module then refuses
    the converted value, naming it, before any file is read or written."""
    before = _tree(ucr_folder)
    rc, tasks = _play('ucr_mirrors', tmp_path, _ucr_vars(ucr_folder, citus_migration_ucr_folder=[str(ucr_folder)]))
    assert rc == 2
    failed = [(name, result) for name, result in tasks if result.get('failed')]
    assert [name for name, _ in failed] == ['Add the mirror entry to every ICDS UCR data source']
    assert "['%s'] is not a folder of data source files" % ucr_folder in failed[0][1]['msg']
    assert _tree(ucr_folder) == before


@pytest.mark.parametrize('changes, named', [
    (dict(citus_migration_validate_timeout='soon'), 'citus_migration_validate_timeout'),
    (dict(citus_migration_source='src'), 'citus_migration_source'),
])
def test_validate_migration_bad_variable_is_named(tmp_path, changes, named):
    variables = dict(citus_migration_workdir=str(tmp_path), citus_migration_target_conn=CLOSED,
                     citus_migration_source=dict(alias='src', conn=CLOSED),
                     citus_migration_validate_tables={'src': ['t']}, citus_migration_validate_column='inserted_at',
                     citus_migration_validate_since='2020-01-01T00:00:00+00:00')
    variables.update(changes)
    rc, tasks = _play('validate_migration', tmp_path, variables)
    _stopped_on_entry(rc, tasks, named)
    assert os.listdir(tmp_path) == ['validate_migration.yml']


def test_toggles_enable_bad_rate_is_named(tmp_path):
    rc, tasks = _play('toggles_enable', tmp_path, dict(
        citus_migration_couch_url='http://127.0.0.1:1/commcarehq', citus_migration_domain_item='domain:icds-cas',
        citus_migration_compare_queries_rate='often'))
    _stopped_on_entry(rc, tasks, 'citus_migration_compare_queries_rate')


# --- static: the specs against what the tasks read -------------------------------------------

def _spec(role):
    with open(os.path.join(ROLES_DIR, role, 'meta', 'argument_specs.yml')) as handle:
        return yaml.safe_load(handle)['argument_specs']['main']


def _role_text(role):
    text = []
    for sub in ('tasks', 'templates'):
        for base, _, files in os.walk(os.path.join(ROLES_DIR, role, sub)):
            for name in sorted(files):
                with open(os.path.join(base, name)) as handle:
                    text.append(handle.read())
    return '\n'.join(text)


@pytest.mark.parametrize('role', ROLES)
def test_spec_declares_every_variable_the_role_reads(role):
    spec = _spec(role)
    assert spec['short_description'] and spec['description']
    options = spec['options']
    read = set(re.findall(r'\bcitus_migration_\w+', _role_text(role)))
    assert read <= set(options), sorted(read - set(options))
    for name, option in options.items():
        assert option.get('description') and option.get('type'), name
        assert not (option.get('required') and 'default' in option), name
        if option.get('type') == 'dict':
            assert 'options' not in option, name  # extra keys would be rejected


@pytest.mark.parametrize('role', ROLES)
def test_spec_defaults_equal_the_inline_defaults(role):
    text = _role_text(role)
    for name, option in _spec(role)['options'].items():
        inline = {yaml.safe_load(literal) for literal in re.findall(
            r'\b%s \| default\((\'[^\']*\'|"[^"]*"|-?[0-9.]+|true|false)\)' % re.escape(name), text)}
        if 'default' in option:
            assert inline == {option['default']}, (name, inline, option['default'])
        else:
            assert not inline, (name, inline)
