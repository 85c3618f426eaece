# ICDS-CITUS-MIGRATION GET_PIP STAND-IN (marker: tools/install-get-pip.sh only replaces files carrying it)
"""Offline stand-in for ansible-test's cached ``get-pip.py`` bootstrap script.

``ansible-test sanity --venv`` creates empty virtual environments and bootstraps pip
into each one by running a ``get-pip.py`` script that it downloads from a host this
machine cannot reach, caching it as ``~/.ansible/test/cache/get_pip_<X_Y>.py``
(see ansible_test/_util/target/setup/requirements.py, ``bootstrap()``).

ansible-test runs it as::

    <venv python> get_pip_<X_Y>.py --disable-pip-version-check pip==<X.Y> --no-setuptools --no-wheel

with ``GET_PIP`` set to the script's path.  Like the real script, this one installs
pip into the running interpreter and then hands the remaining arguments to
``pip install``.  It gets the first pip from Python's bundled ``ensurepip`` and the
requested version from the package index (PyPI is reachable here).
"""

import importlib.util
import subprocess
import sys

OWN_FLAGS = ('--no-setuptools', '--no-wheel')


def installed(name):
    importlib.invalidate_caches()
    return importlib.util.find_spec(name) is not None


def main(argv):
    pip_args = [arg for arg in argv if arg not in OWN_FLAGS]
    had_setuptools = installed('setuptools')
    had_wheel = installed('wheel')

    # Python 3.11's ensurepip also installs setuptools; get-pip.py would not with --no-setuptools.
    # ensurepip runs in a child process: in-process it blanks the PIP_* environment and sets
    # PIP_CONFIG_FILE=/dev/null, which would hide the machine's pip.conf (index, CA bundle) from
    # the `pip install` below.
    subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'])

    if pip_args:
        subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + pip_args)

    remove = []
    if '--no-setuptools' in argv and not had_setuptools and installed('setuptools'):
        remove.append('setuptools')
    if '--no-wheel' in argv and not had_wheel and installed('wheel'):
        remove.append('wheel')
    if remove:
        subprocess.check_call([sys.executable, '-m', 'pip', 'uninstall', '--yes', '--quiet',
                               '--disable-pip-version-check'] + remove)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
