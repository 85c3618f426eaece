# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manifest updates of a copy run, written from a thread of their own.

Every manifest commit costs an fsync (7-13 ms on the machines measured, see
benchmarks/README.md), and a run makes two writes per table. Made by the scheduler itself,
those commits capped a run at about 70 small tables a second whatever the servers could do.
Here the scheduler only queues the updates; the writer thread applies everything queued so
far in one transaction, so a commit covers as many tables as finished meanwhile and the
copy workers never wait for the disk.

Durability is unchanged: every update is committed with the manifest's normal sync, in the
order it was queued, and ``flush()``/``close()`` return only once all of them are on disk.
The target's ledger, not the manifest, decides what was copied, so an update still queued
when the process dies is restored by the next run ("already copied").
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
from collections import deque
from typing import Any, Callable, Deque, List, Optional, Tuple

from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import Manifest

_Update = Tuple[str, Tuple[Any, ...]]


class ManifestWriter:
    """Queue of manifest updates applied in batches by one thread with its own connection.

    Offers the manifest's update methods (``mark_running``, ``mark_migrated``,
    ``mark_errored``, ``mark_pending``). A failed write (the file locked too long, the
    disk full...) is raised by the next call, by ``check()`` and by ``flush()``.
    """

    def __init__(self, path: str, opener: Callable[[str], Manifest] = Manifest.open):
        self.path = path
        self._opener = opener
        self._queue: Deque[_Update] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._closing = False
        self._error: Optional[BaseException] = None
        self._opened = threading.Event()
        self.commits = 0
        self._thread = threading.Thread(target=self._loop, name='manifest-writer', daemon=True)
        self._thread.start()
        self._opened.wait()
        self.check()

    # -- the manifest's update methods ---------------------------------------------------
    def mark_running(self, *args: Any) -> None:
        self._put('mark_running', args)

    def mark_migrated(self, *args: Any) -> None:
        self._put('mark_migrated', args)

    def mark_errored(self, *args: Any) -> None:
        self._put('mark_errored', args)

    def mark_segments(self, *args: Any) -> None:
        self._put('mark_segments', args)

    def mark_pending(self, *args: Any) -> None:
        self._put('mark_pending', args)

    # -- control -------------------------------------------------------------------------
    def check(self) -> None:
        """Raise the writer's failure, if it had one."""
        if self._error is not None:
            raise self._error

    def flush(self) -> None:
        """Until every queued update is committed (or the writer failed)."""
        with self._cond:
            while (self._queue or self._busy) and self._error is None:
                self._cond.wait()
        self.check()

    def close(self) -> None:
        """Flush, stop the thread and close its connection; raises a write failure."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()
        self.check()

    def _put(self, method: str, args: Tuple[Any, ...]) -> None:
        with self._cond:
            self.check()
            if self._closing:
                raise RuntimeError('manifest writer used after close()')
            self._queue.append((method, args))
            self._cond.notify_all()

    # -- the thread ------------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            manifest = self._opener(self.path)
        except BaseException as exc:  # raised to the caller by __init__
            self._error = exc
            self._opened.set()
            return
        self._opened.set()
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if not self._queue:
                        return
                    batch: List[_Update] = list(self._queue)
                    self._queue.clear()
                    self._busy = True
                try:
                    with manifest.batch():
                        for method, args in batch:
                            getattr(manifest, method)(*args)
                    self.commits += 1
                except BaseException as exc:  # ManifestError, readable; raised to the caller
                    with self._cond:
                        self._error = exc
                        self._queue.clear()
                        self._busy = False
                        self._cond.notify_all()
                    return
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        finally:
            manifest.close()
            with self._cond:
                self._busy = False
                self._cond.notify_all()
