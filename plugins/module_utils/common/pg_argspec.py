# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs the modules share: the connection options (mirrors doc_fragments/postgres.py),
the table plan options, and the two put together with a module's own."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from typing import Any, Dict

from ansible_collections.icds.citus_migration.plugins.module_utils.common import defaults


def postgres_common_argument_spec() -> Dict[str, Any]:
    """Top-level connection options of every module."""
    return dict(
        login_host=dict(type='str', aliases=['host']),
        login_port=dict(type='int', default=defaults.PORT, aliases=['port']),
        login_user=dict(type='str', aliases=['login']),
        login_password=dict(type='str', no_log=True),
        login_db=dict(type='str', aliases=['db']),
        ssl_mode=dict(type='str', default=defaults.SSL_MODE, choices=list(defaults.SSL_MODES)),
        ca_cert=dict(type='path', aliases=['ssl_rootcert']),
        ssl_cert=dict(type='path'),
        ssl_key=dict(type='path', no_log=False),
        connect_timeout=dict(type='int', default=defaults.CONNECT_TIMEOUT),
    )


def source_argument_spec() -> Dict[str, Any]:
    """The ``source`` option: a dict with the same connection keys."""
    return dict(source=dict(type='dict', required=True, options=postgres_common_argument_spec()))


def table_plan_argument_spec() -> Dict[str, Any]:
    """``plan``, ``ucr_folder`` and ``schema``: the table plan options of the DDL and manifest modules."""
    return dict(
        plan=dict(type='path'),
        ucr_folder=dict(type='path'),
        schema=dict(type='str', default=defaults.SCHEMA),
    )


def schemas_argument_spec() -> Dict[str, Any]:
    """``source_schema`` and ``target_schema``: where the tables are on each side."""
    return dict(
        source_schema=dict(type='str', default=defaults.SCHEMA),
        target_schema=dict(type='str', default=defaults.SCHEMA),
    )


def module_argument_spec(options: Dict[str, Any], source: bool = True,
                         table_plan: bool = False) -> Dict[str, Any]:
    """The connection options, ``source`` (unless ``source=False``), the table plan options
    (with ``table_plan=True``), then the module's own ``options``."""
    argument_spec = postgres_common_argument_spec()
    if source:
        argument_spec.update(source_argument_spec())
    if table_plan:
        argument_spec.update(table_plan_argument_spec())
    argument_spec.update(options)
    return argument_spec
