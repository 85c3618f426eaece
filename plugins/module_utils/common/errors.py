# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors the engine raises. Each message is one readable line naming what is wrong."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class MigrationError(Exception):
    """Base class: a problem the operator must fix; shown as one line, no traceback."""


class ConnectionFailed(MigrationError):
    """A database could not be reached or refused the credentials."""


class ManifestError(MigrationError):
    """The manifest file is missing, not a manifest, locked or inconsistent."""


class SelectionError(MigrationError):
    """Bad filters: invalid date, unknown or already migrated --table, bad --parallel."""


class TableMappingError(MigrationError):
    """Source and target tables do not line up (missing table or column)."""


class PlanError(MigrationError):
    """The table plan is invalid."""
