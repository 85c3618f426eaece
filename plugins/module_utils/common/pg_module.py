# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Ansible side shared by the PostgreSQL modules: AnsibleModule setup and error reporting.

Unlike the engine beside it, this file imports Ansible; only modules import it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import traceback
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_argspec import (
    module_argument_spec,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import (
    HAS_PSYCOPG2, PSYCOPG2_IMPORT_ERROR,
)


def postgres_module(options: Dict[str, Any], source: bool = True, table_plan: bool = False,
                    **kwargs: Any) -> AnsibleModule:
    """An AnsibleModule (check mode supported) with the connection options and ``options``.

    ``source`` adds the ``source`` connection dict, ``table_plan`` the ``plan``,
    ``ucr_folder`` and ``schema`` options; ``kwargs`` go to AnsibleModule
    (``required_one_of``, ...). Fails the task when psycopg2 is not installed.
    """
    argument_spec = module_argument_spec(options, source=source, table_plan=table_plan)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **kwargs)
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib('psycopg2'), exception=str(PSYCOPG2_IMPORT_ERROR))
    return module


@contextmanager
def fail_json_on_error(module: AnsibleModule, result: Optional[Dict[str, Any]] = None,
                       unexpected: bool = False) -> Iterator[None]:
    """Turn a MigrationError raised in the block into ``module.fail_json(msg=str(exc), **result)``.

    ``result`` is read when the error happens, so later updates to it are reported. With
    ``unexpected``, any other Exception fails the task too, as ``unexpected error: ...``
    with its traceback.
    """
    try:
        yield
    except MigrationError as exc:
        module.fail_json(msg=str(exc), **(result or {}))
    except Exception as exc:  # pragma: no cover - unexpected, keep the trace for a bug report
        if not unexpected:
            raise
        module.fail_json(msg='unexpected error: %s' % exc, exception=traceback.format_exc(),
                         **(result or {}))


def exit_with_warnings(module: AnsibleModule, values: Dict[str, Any]) -> None:
    """Emit ``values['warnings']`` as task warnings, then exit_json with the other values."""
    values = dict(values)
    for warning in values.pop('warnings'):
        module.warn(warning)
    module.exit_json(**values)
