# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""``<manifest>.live.json``: what a running copy is doing now, for readers elsewhere.

The copy (``copy/live_state.py``) replaces the file every few seconds; ``status`` and the
Ansible ``wait_for_copy`` task read it. It holds no secret: table names and figures only.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
from typing import Dict, Optional


def live_path(manifest_path: str) -> str:
    """The snapshot file written beside the manifest while a copy runs."""
    return manifest_path + '.live.json'


def write_snapshot(path: str, data: Dict[str, object]) -> None:
    """Replace ``path`` atomically (a reader never sees half a file); errors are ignored:
    the copy never fails because its progress could not be written."""
    tmp = '%s.%d.tmp' % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def read_snapshot(path: str) -> Optional[Dict[str, object]]:
    """The last snapshot written, or None when there is none (or it cannot be read)."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def current_run(manifest_path: str) -> Optional[Dict[str, object]]:
    """The snapshot of a copy of this manifest that is running now (its process is alive on
    this host), else None: a finished or killed run's last figures are not shown as live."""
    snap = read_snapshot(live_path(manifest_path))
    if not snap or snap.get('finished'):
        return None
    try:
        pid = int(snap.get('pid') or 0)
    except (ValueError, TypeError):
        return None
    if pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:  # alive, run by another user
        return snap
    except OSError:
        return None
    return snap
