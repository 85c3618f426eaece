# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Append-only JSON-lines log of failed tables (one object per failure, no secrets)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import threading
from typing import Any, Dict, Optional

_LOCK = threading.Lock()


def default_error_log(manifest_path: str) -> str:
    return manifest_path + '.errors.jsonl'


def append_error(path: Optional[str], entry: Dict[str, Any]) -> None:
    """Append one JSON line; the file is created with mode 0600."""
    if not path:
        return
    line = json.dumps(entry, sort_keys=True, default=str) + '\n'
    with _LOCK:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode('utf-8'))
        finally:
            os.close(fd)
