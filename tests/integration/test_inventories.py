"""The shipped inventories, as an operator first uses them: `--list-hosts` / `--list-tasks`
of site.yml, and where the derived connection settings point, without any server.

The ICDS inventory is run with its vault example, as the README of that folder says."""

import json
import os
import subprocess
import sys

import pytest

from tests.module_runner import DEV_COLLECTIONS, ROOT, VENV_BIN, _env

ICDS = ['-i', os.path.join(ROOT, 'inventories', 'icds', 'inventory.ini'),
        '-e', '@' + os.path.join(ROOT, 'inventories', 'icds', 'vault.example.yml')]


def _ansible_playbook(*args: str) -> subprocess.CompletedProcess:
    env = _env({'ANSIBLE_COLLECTIONS_PATH': DEV_COLLECTIONS + os.pathsep + os.path.join(ROOT, '.collections'),
                'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
                'ANSIBLE_STDOUT_CALLBACK': 'ansible.builtin.default'})
    return subprocess.run([os.path.join(VENV_BIN, 'ansible-playbook')] + list(args),
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def _plays(listing: str):
    """play name -> the hosts listed under it (``--list-hosts`` output)."""
    plays, current = {}, None
    for line in listing.splitlines():
        text = line.strip()
        if text.startswith('play #'):
            current = text.split(': ', 1)[1].rsplit('\tTAGS', 1)[0].strip()
            plays[current] = []
        elif current and text and not text.startswith(('pattern:', 'hosts (')):
            plays[current].append(text)
    return plays


@pytest.mark.parametrize('flag', ['--list-hosts', '--list-tasks'])
def test_icds_inventory_lists_site_yml_cleanly(flag):
    res = _ansible_playbook(*ICDS + ['playbooks/site.yml', flag])
    assert res.returncode == 0, res.stdout + res.stderr
    # no deprecation or other warning for an operator to puzzle over
    assert 'WARNING' not in res.stdout + res.stderr, res.stdout + res.stderr
    if flag == '--list-hosts':
        plays = _plays(res.stdout)
        assert plays['Pre-flight - the toggles that send writes to the target must be off'] == ['192.0.2.30']
        assert plays['Pre-flight - the Citus cluster is complete and shard_count is set'] == ['192.0.2.20']
        assert plays['Migrate every source database to the target'] == ['192.0.2.20']
        assert plays['Register the Citus database in the Django settings'] == ['192.0.2.40']


def test_icds_inventory_connections_point_at_the_right_servers(tmp_path):
    """What a run against the ICDS inventory would connect to, resolved by the collection's
    own filters from postgresql.yml, the inventory groups and the vault."""
    out = tmp_path / 'conns.json'
    playbook = tmp_path / 'show.yml'
    playbook.write_text(
        '- hosts: citusdb_master[0]\n'
        '  gather_facts: false\n'
        '  connection: local\n'
        '  vars_files: [%s]\n'
        '  tasks:\n'
        '    - ansible.builtin.copy:\n'
        '        dest: %s\n'
        '        content: "{{ {\'target\': citus_migration_target_conn, \'sources\': citus_migration_sources,'
        ' \'workers\': citus_migration_worker_conns, \'couch\': citus_migration_couch_url,'
        ' \'shard_count\': citus_migration_target_entry.pg_config} | to_json }}"\n'
        '      delegate_to: localhost\n'
        % (os.path.join(ROOT, 'playbooks', 'vars', 'connections.yml'), out))
    res = _ansible_playbook(*ICDS + [str(playbook)])
    assert res.returncode == 0, res.stdout + res.stderr
    got = json.loads(out.read_text())
    target = got['target']
    assert (target['login_host'], target['login_port'], target['login_db']) == ('192.0.2.20', 5432, 'icds_ucr_citus')
    assert (target['login_user'], target['ssl_mode']) == ('commcarehq', 'prefer')
    assert target['login_password'] == 'change-me-postgres'  # from the vault, for no_log tasks only
    assert [(s['alias'], s['conn']['login_host'], s['conn']['login_db']) for s in got['sources']] == [
        ('icds-ucr', '192.0.2.10', 'commcarehq_icds_ucr'),
        ('icds-aggregate', '192.0.2.11', 'commcarehq_icds_aggregatedata')]
    assert sorted(w['login_host'] for w in got['workers']) == ['192.0.2.21', '192.0.2.22']
    assert {w['login_db'] for w in got['workers']} == {'icds_ucr_citus'}
    assert got['couch'] == 'https://192.0.2.30:5984/commcarehq'
    assert got['shard_count'] == [{'name': 'citus.shard_count', 'value': 32}]
    # the secret went to the file the test asked for, never to the play's output
    assert 'change-me-postgres' not in res.stdout + res.stderr
