# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Array values spliced into SQL as ONE constant: ``'{"a","b"}'::text[]``.

psycopg2 renders a Python list as ``ARRAY['a','b']``: one parse node per element, so a
look-up of a few thousand keys costs the server milliseconds to parse and plan, and Citus
deparses the whole constructor again into the query of every shard it sends (about 90 ms of
coordinator planning for 1,200 keys over 32 shards, measured). An array literal is a single
string constant, cast once.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from typing import Iterable, Optional, Union

try:
    from psycopg2 import sql
except ImportError:  # pragma: no cover - modules report the missing library
    sql = None


def array_text(values: Iterable[Optional[object]]) -> str:
    """PostgreSQL's array input form of ``values``: every element double-quoted (so spaces,
    commas, braces and the word NULL stay data), ``None`` as NULL."""
    items = []
    for value in values:
        if value is None:
            items.append('NULL')
        else:
            text = str(value).replace('\\', '\\\\').replace('"', '\\"')
            items.append('"%s"' % text)
    return '{%s}' % ','.join(items)


def array_literal(values: Iterable[Optional[object]], element_type: Union[str, object]):
    """``'{...}'::element_type[]``; ``element_type``: SQL (a ``sql.SQL``, or a type name the
    caller has checked, e.g. from ``format_type``)."""
    typ = sql.SQL(element_type) if isinstance(element_type, str) else element_type
    return sql.SQL('{}::{}[]').format(sql.Literal(array_text(values)), typ)
