# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument spec for the shared connection options (mirrors doc_fragments/postgres.py)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from typing import Any, Dict

SSL_MODE_CHOICES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']


def postgres_common_argument_spec() -> Dict[str, Any]:
    """Top-level connection options of every module."""
    return dict(
        login_host=dict(type='str', aliases=['host']),
        login_port=dict(type='int', default=5432, aliases=['port']),
        login_user=dict(type='str', aliases=['login']),
        login_password=dict(type='str', no_log=True),
        login_db=dict(type='str', aliases=['db']),
        ssl_mode=dict(type='str', default='prefer', choices=SSL_MODE_CHOICES),
        ca_cert=dict(type='path', aliases=['ssl_rootcert']),
        ssl_cert=dict(type='path'),
        ssl_key=dict(type='path', no_log=False),
        connect_timeout=dict(type='int', default=10),
    )


def source_argument_spec() -> Dict[str, Any]:
    """The ``source`` option: a dict with the same connection keys."""
    return dict(source=dict(type='dict', required=True, options=postgres_common_argument_spec()))
