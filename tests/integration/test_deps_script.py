"""tools/deps.sh (make deps) with the real dpkg-query, on a copy of this machine's dpkg status
database in which the packages it needs are held (apt-mark hold), as on a database host."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile

import pytest

from tests.module_runner import ROOT

SCRIPT = os.path.join(ROOT, 'tools', 'deps.sh')
STATUS = '/var/lib/dpkg/status'


def _needed():
    text = open(SCRIPT, encoding='utf-8').read()
    return re.search(r'APT_PACKAGES=\(([^)]*)\)', text).group(1).split()


def _installed(status_text, package):
    block = re.search(r'^Package: %s\n(?:.+\n)*?Status: (.+)$' % re.escape(package),
                      status_text, re.M)
    return block is not None and block.group(1).endswith(' installed')


@pytest.mark.skipif(not os.path.exists(STATUS) or shutil.which('dpkg-query') is None
                    or shutil.which('node') is None or shutil.which('npm') is None,
                    reason='needs a Debian dpkg database, node and npm')
def test_held_packages_count_as_installed():
    # a directory the unprivileged user below can read (pytest's tmp_path is private to root)
    tmp = tempfile.mkdtemp(prefix='deps-held-')
    try:
        _check(tmp)
    finally:
        shutil.rmtree(tmp)


def _check(tmp):
    tmp_path = pathlib.Path(tmp)
    status = open(STATUS, encoding='utf-8').read()
    needed = _needed()
    if not all(_installed(status, p) for p in needed):
        pytest.skip('the packages deps.sh needs are not all installed here')
    held = status
    for package in needed:
        held = re.sub(r'(^Package: %s\n(?:.+\n)*?)Status: install ok installed$' % re.escape(package),
                      r'\1Status: hold ok installed', held, flags=re.M)
    admin = tmp_path / 'dpkg'
    (admin / 'info').mkdir(parents=True)
    (admin / 'updates').mkdir()
    (admin / 'status').write_text(held, encoding='utf-8')
    # every needed package is now held (what `apt-mark hold` writes)
    out = subprocess.run(['dpkg-query', '-W', '-f=${Status}\\n'] + needed, capture_output=True,
                         text=True, env=dict(os.environ, DPKG_ADMINDIR=str(admin)), check=True)
    assert set(out.stdout.split('\n')) - {''} == {'hold ok installed'}
    # pouchdb-server already in NODE_PREFIX, so only the Debian step matters
    prefix = tmp_path / 'node'
    pkg = prefix / 'node_modules' / 'pouchdb-server'
    pkg.mkdir(parents=True)
    (pkg / 'package.json').write_text(json.dumps({'name': 'pouchdb-server', 'version': '9.9.9'}))
    (prefix / 'node_modules' / '.bin').mkdir()
    (prefix / 'node_modules' / '.bin' / 'pouchdb-server').write_text('#!/bin/sh\n')
    (prefix / 'node_modules' / '.bin' / 'pouchdb-server').chmod(0o755)
    for path in (tmp_path, admin, prefix):
        os.chmod(path, 0o755)
    cmd = [SCRIPT]
    if os.geteuid() == 0:  # never let a wrong answer reach apt-get: run unprivileged
        cmd = ['runuser', '-u', 'postgres', '--'] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=dict(
        os.environ, DPKG_ADMINDIR=str(admin), POUCHDB_SERVER_VERSION='9.9.9',
        NODE_PREFIX=str(prefix)))
    assert proc.returncode == 0, proc.stderr
    assert 'deps: Debian packages present' in proc.stdout
    assert 'missing' not in proc.stderr
