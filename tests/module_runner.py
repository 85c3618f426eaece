"""Run a module of this collection for real, the way Ansible executes it on a host.

``run_module`` executes the module file in a fresh Python process with its arguments in
``ANSIBLE_MODULE_ARGS`` (what AnsiballZ hands a module), so argument parsing, check mode,
diff, no_log and exit_json/fail_json all run for real; it only skips the zip transport.
``run_adhoc`` goes through the ``ansible`` command line against localhost; ``run_role`` runs
one role with ``ansible-playbook``.
"""

import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV_COLLECTIONS = os.path.join(ROOT, '.cache', 'dev_collections')
VENV_BIN = os.path.join(ROOT, '.venv', 'bin')


class ModuleRun(dict):
    """The module's JSON result plus the raw streams (to check what leaked)."""

    stdout: str = ''
    stderr: str = ''


def _env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([DEV_COLLECTIONS, env.get('PYTHONPATH', '')]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


def run_module(name: str, args: Dict[str, Any], check: bool = False, diff: bool = False,
               env: Optional[Dict[str, str]] = None, timeout: float = 600) -> ModuleRun:
    path = os.path.join(ROOT, 'plugins', 'modules', name + '.py')
    payload = dict(args)
    payload['_ansible_check_mode'] = check
    payload['_ansible_diff'] = diff
    payload['_ansible_tmpdir'] = None
    payload['_ansible_remote_tmp'] = '/tmp'
    proc = subprocess.run([sys.executable, path], input=json.dumps({'ANSIBLE_MODULE_ARGS': payload}),
                          capture_output=True, text=True, env=_env(env), timeout=timeout)
    try:
        result = ModuleRun(json.loads(proc.stdout))
    except ValueError:
        raise AssertionError('module %s printed no JSON (rc=%s)\nstdout: %s\nstderr: %s'
                             % (name, proc.returncode, proc.stdout, proc.stderr))
    result.stdout, result.stderr = proc.stdout, proc.stderr
    return result


def run_adhoc(name: str, args: Dict[str, Any], check: bool = False,
              env: Optional[Dict[str, str]] = None, timeout: float = 600) -> ModuleRun:
    """``ansible localhost -m icds.citus_migration.<name>`` with the json stdout callback."""
    cmd = [os.path.join(VENV_BIN, 'ansible'), 'localhost', '-c', 'local', '-i', 'localhost,',
           '-m', 'icds.citus_migration.' + name, '-a', json.dumps(args)]
    if check:
        cmd.append('--check')
    extra = {'ANSIBLE_COLLECTIONS_PATH': DEV_COLLECTIONS + os.pathsep + os.path.join(ROOT, '.collections'),
             'ANSIBLE_STDOUT_CALLBACK': 'ansible.builtin.json', 'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1',
             'ANSIBLE_PYTHON_INTERPRETER': sys.executable, 'ANSIBLE_NOCOLOR': '1',
             'ANSIBLE_LOCALHOST_WARNING': '0', 'ANSIBLE_INVENTORY_UNPARSED_WARNING': '0'}
    extra.update(env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(extra), timeout=timeout)
    try:
        doc = json.loads(proc.stdout)
        result = ModuleRun(doc['plays'][0]['tasks'][0]['hosts']['localhost'])
    except (ValueError, KeyError, IndexError):
        raise AssertionError('ansible printed no result (rc=%s)\nstdout: %s\nstderr: %s'
                             % (proc.returncode, proc.stdout, proc.stderr))
    result.stdout, result.stderr = proc.stdout, proc.stderr
    return result


class RolePlay:
    """One ``ansible-playbook`` run of a play holding one role of this collection, on localhost."""

    def __init__(self, returncode: int, tasks: List[Tuple[str, Dict[str, Any]]], changed: int,
                 stdout: str, stderr: str):
        self.returncode = returncode
        self.tasks = tasks  # (task name without the role prefix, localhost result), in order
        self.changed = changed
        self.stdout, self.stderr = stdout, stderr

    def task(self, start: str) -> Dict[str, Any]:
        """The result of the one task whose name starts with ``start``."""
        (result,) = [r for name, r in self.tasks if name.startswith(start)]
        return result


def _streamed(cmd: List[str], env: Dict[str, str], on_line: Callable[[str], None],
              timeout: float) -> subprocess.CompletedProcess:
    """Run ``cmd``, handing each line of its stdout to ``on_line`` as it comes."""
    with tempfile.TemporaryFile('w+') as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=ROOT)
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line)
                on_line(line)
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, ''.join(lines), err.read())


def run_role(role: Union[str, Sequence[str]], variables: Dict[str, Any], workdir: str,
             check: bool = False, timeout: float = 300,
             on_line: Optional[Callable[[str], None]] = None) -> RolePlay:
    """``ansible-playbook`` of one play with ``icds.citus_migration.<role>`` (or several roles,
    in order) and ``variables`` as play vars (the playbook is written into ``workdir``), read
    through the json callback. ``on_line``: called with each line of its output as it comes
    (progress lines)."""
    roles = [role] if isinstance(role, str) else list(role)
    playbook = os.path.join(str(workdir), '%s.yml' % '-'.join(roles))
    with open(playbook, 'w') as handle:
        yaml.safe_dump([{'name': ' '.join(roles), 'hosts': 'localhost', 'gather_facts': False,
                         'vars': variables, 'roles': ['icds.citus_migration.' + r for r in roles]}], handle)
    cmd = [os.path.join(VENV_BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', playbook]
    if check:
        cmd.append('--check')
    env = {'ANSIBLE_COLLECTIONS_PATH': DEV_COLLECTIONS + os.pathsep + os.path.join(ROOT, '.collections'),
           'ANSIBLE_STDOUT_CALLBACK': 'ansible.builtin.json', 'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1',
           'ANSIBLE_PYTHON_INTERPRETER': sys.executable, 'ANSIBLE_NOCOLOR': '1',
           'ANSIBLE_LOCALHOST_WARNING': '0'}
    if on_line is None:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(env), cwd=ROOT,
                              timeout=timeout)
    else:
        proc = _streamed(cmd, _env(env), on_line, timeout)
    out = proc.stdout  # progress lines (wait_for_copy) come before the JSON document
    try:
        doc = json.loads(out[out.index('{') if out.startswith('{') else out.index('\n{') + 1:])
    except ValueError:
        raise AssertionError('no JSON from ansible-playbook (rc=%s): %s %s'
                             % (proc.returncode, proc.stdout, proc.stderr))
    tasks = [(t['task']['name'].split(' : ', 1)[-1], t['hosts'].get('localhost', {}))
             for t in doc['plays'][0]['tasks']]
    changed = doc['stats'].get('localhost', {}).get('changed', 0)
    return RolePlay(proc.returncode, tasks, changed, proc.stdout, proc.stderr)
