# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mirror entries in CommCare's static UCR data source JSON files.

Plain Python, no Ansible imports.

A data source lists its mirrors at the top level::

    "mirrored_engine_ids": [{"server_environment": "icds", "engine_ids": ["icds-ucr-citus"]}]

The files are code under review, so an edit must look like a person made it: the result differs
from the original only by the lines that carry the new entry (same indentation unit, same layout,
every other byte untouched). Edits are textual, guided by the parsed JSON (this module records
where every value starts and ends); the edited text is parsed again and must equal the intended
object, otherwise nothing is written.

Adding never rewrites an existing line when the layout allows it: a new key goes on its own lines
before an existing member, a new entry or engine goes *first* in its list (appending would have to
add a comma to the line before). Only an empty or one-line list is edited within its line.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import datetime
import json
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from json.decoder import scanstring
from typing import Any, Dict, List, Optional, Sequence

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError

MIRRORS_KEY = 'mirrored_engine_ids'
DEFAULT_ENGINE_ID = 'ucr'  # what CommCare assumes when config.engine_id is absent
_WS = ' \t\r\n'
_DECODER = json.JSONDecoder()


class DataSourceError(MigrationError):
    """A data source file cannot be read, parsed, edited or written; the message names it."""


# --------------------------------------------------------------------------------------------
# JSON with positions


@dataclass
class Node:
    """A JSON value and where it sits in the text: ``text[start:end]``."""

    start: int
    end: int
    kind: str  # 'object', 'array' or 'scalar'
    members: List['Member'] = field(default_factory=list)
    items: List['Node'] = field(default_factory=list)

    def member(self, key: str) -> Optional['Member']:
        """The last member named ``key`` (the one ``json.loads`` keeps)."""
        found = None
        for m in self.members:
            if m.key == key:
                found = m
        return found


@dataclass
class Member:
    """``"key": value`` inside an object; ``key_start`` is the opening quote."""

    key: str
    key_start: int
    key_end: int
    value: Node

    @property
    def start(self) -> int:
        return self.key_start

    @property
    def end(self) -> int:
        return self.value.end


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _expect(text: str, i: int, char: str) -> None:
    if i >= len(text) or text[i] != char:
        raise DataSourceError('unexpected JSON at offset %d (wanted %r)' % (i, char))


def parse_spans(text: str, i: int = 0) -> Node:
    """Parse the JSON value at ``text[i:]`` (after whitespace) recording positions."""
    i = _skip_ws(text, i)
    if i >= len(text):
        raise DataSourceError('unexpected end of JSON')
    char = text[i]
    if char == '{':
        node = Node(i, -1, 'object')
        j = _skip_ws(text, i + 1)
        if text[j:j + 1] == '}':
            node.end = j + 1
            return node
        while True:
            j = _skip_ws(text, j)
            _expect(text, j, '"')
            key, key_end = scanstring(text, j + 1)
            colon = _skip_ws(text, key_end)
            _expect(text, colon, ':')
            value = parse_spans(text, colon + 1)
            node.members.append(Member(key, j, key_end, value))
            j = _skip_ws(text, value.end)
            if text[j:j + 1] == ',':
                j += 1
                continue
            _expect(text, j, '}')
            node.end = j + 1
            return node
    if char == '[':
        node = Node(i, -1, 'array')
        j = _skip_ws(text, i + 1)
        if text[j:j + 1] == ']':
            node.end = j + 1
            return node
        while True:
            item = parse_spans(text, j)
            node.items.append(item)
            j = _skip_ws(text, item.end)
            if text[j:j + 1] == ',':
                j += 1
                continue
            _expect(text, j, ']')
            node.end = j + 1
            return node
    try:
        end = _DECODER.raw_decode(text, i)[1]
    except ValueError as exc:
        raise DataSourceError('invalid JSON at offset %d: %s' % (i, exc))
    return Node(i, end, 'scalar')


# --------------------------------------------------------------------------------------------
# Layout


def _line_start(text: str, pos: int) -> int:
    return text.rfind('\n', 0, pos) + 1


def _indent_if_line_start(text: str, pos: int) -> Optional[str]:
    """The whitespace before ``pos`` if ``pos`` is the first non-blank of its line, else None."""
    prefix = text[_line_start(text, pos):pos]
    return prefix if prefix.strip(' \t') == '' else None


def _line_indent(text: str, pos: int) -> str:
    """Leading whitespace of the line holding ``pos``."""
    start = _line_start(text, pos)
    end = start
    while end < len(text) and text[end] in ' \t':
        end += 1
    return text[start:end]


def detect_newline(text: str) -> str:
    """``\\r\\n`` if the file uses it, else ``\\n``."""
    return '\r\n' if '\r\n' in text else '\n'


def detect_indent(text: str, root: Optional[Node] = None) -> str:
    """The file's indentation unit: the indent of the first top-level key on its own line."""
    root = root or parse_spans(text)
    for m in root.members:
        indent = _indent_if_line_start(text, m.key_start)
        if indent:
            return indent
    return '    '


def detect_compact(text: str, root: Node) -> bool:
    """True when the file writes short lists on one line (``"domains": ["icds-cas"]``)."""
    for key in ('domains', 'server_environment'):
        m = root.member(key)
        if m is not None and m.value.kind == 'array' and m.value.items:
            return '\n' not in text[m.value.start:m.value.end]
    for m in root.members:
        if m.value.kind == 'array' and m.value.items and all(i.kind == 'scalar' for i in m.value.items):
            return '\n' not in text[m.value.start:m.value.end]
    return False


def _one_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def render(value: Any, base: str, unit: str, compact: bool, newline: str = '\n') -> str:
    """``value`` as JSON text whose first line is already indented by ``base``.

    Expanded: ``json.dumps(indent=unit)``. Compact: a list of objects puts one object per line,
    anything else is one line.
    """
    if not compact:
        return json.dumps(value, indent=unit, ensure_ascii=False).replace('\n', newline + base)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        inner = base + unit
        return ('[' + newline + (',' + newline).join(inner + _one_line(v) for v in value)
                + newline + base + ']')
    return _one_line(value)


# --------------------------------------------------------------------------------------------
# Text edits (each returns the new text)


def _prepend_item(text: str, array: Node, value: Any, unit: str, compact: bool, newline: str) -> str:
    """Insert ``value`` as the first element of ``array``."""
    if array.items:
        first = array.items[0].start
        indent = _indent_if_line_start(text, first)
        if indent is not None:
            piece = render(value, indent, unit, compact, newline) + ',' + newline + indent
        else:
            piece = _one_line(value) + ', '
        return text[:first] + piece + text[first:]
    # empty list: it has no line to add to, so it is rewritten in place
    if '\n' in text[array.start:array.end] or not compact:
        outer = _line_indent(text, array.start)
        inner = outer + unit
        piece = '[' + newline + inner + render(value, inner, unit, compact, newline) + newline + outer + ']'
    else:
        piece = '[' + _one_line(value) + ']'
    return text[:array.start] + piece + text[array.end:]


def _insert_member_before(text: str, anchor: Member, key: str, value: Any, unit: str,
                          compact: bool, newline: str) -> str:
    """Insert ``"key": value`` just before the member ``anchor`` of the same object."""
    separator = text[anchor.key_end:anchor.value.start]
    indent = _indent_if_line_start(text, anchor.key_start)
    if indent is not None:
        piece = (_one_line(key) + separator + render(value, indent, unit, compact, newline)
                 + ',' + newline + indent)
    else:
        piece = _one_line(key) + separator + _one_line(value) + ', '
    return text[:anchor.key_start] + piece + text[anchor.key_start:]


def _remove_at(text: str, container: Node, index: int) -> str:
    """Remove element (or member) ``index`` of ``container`` with its separating comma."""
    spans = container.items if container.kind == 'array' else container.members
    if len(spans) == 1:
        empty = '[]' if container.kind == 'array' else '{}'
        return text[:container.start] + empty + text[container.end:]
    if index < len(spans) - 1:
        return text[:spans[index].start] + text[spans[index + 1].start:]
    return text[:spans[index - 1].end] + text[spans[index].end:]


# --------------------------------------------------------------------------------------------
# Mirror entries


def _mirrors(doc: Dict[str, Any]) -> Optional[List[Any]]:
    mirrors = doc.get(MIRRORS_KEY)
    if mirrors is not None and not isinstance(mirrors, list):
        raise DataSourceError('%s is not a list' % MIRRORS_KEY)
    return mirrors


def _engines(entry: Dict[str, Any]) -> Optional[List[Any]]:
    engines = entry.get('engine_ids')
    if engines is not None and not isinstance(engines, list):
        raise DataSourceError('%s entry for %s: engine_ids is not a list'
                              % (MIRRORS_KEY, entry.get('server_environment')))
    return engines


def _is_env(entry: Any, env: str) -> bool:
    return isinstance(entry, dict) and entry.get('server_environment') == env


def has_mirror(doc: Dict[str, Any], env: str, engine: str) -> bool:
    """True when an entry for ``env`` already lists ``engine``."""
    return any(_is_env(e, env) and engine in (_engines(e) or []) for e in (_mirrors(doc) or []))


def _verify(new_text: str, intended: Any) -> str:
    try:
        parsed = json.loads(new_text)
    except ValueError as exc:
        raise DataSourceError('the edit would produce invalid JSON (%s); nothing written' % exc)
    if parsed != intended:
        raise DataSourceError('the edit would not produce the intended content; nothing written')
    return new_text


def _anchor_for_new_key(text: str, root: Node) -> Member:
    """Where the new top-level key goes: after ``server_environment``, else before ``config``."""
    candidates: List[Member] = []
    env = root.member('server_environment')
    if env is not None:
        idx = root.members.index(env)
        if idx + 1 < len(root.members):
            candidates.append(root.members[idx + 1])
    config = root.member('config')
    if config is not None:
        candidates.append(config)
    candidates.extend(root.members)
    for m in candidates:
        if _indent_if_line_start(text, m.key_start) is not None:
            return m
    return candidates[0]


def add_mirror(text: str, env: str, engine: str) -> Optional[str]:
    """``text`` with ``engine`` mirrored for ``env``, or None if it already is."""
    doc = json.loads(text)
    if has_mirror(doc, env, engine):
        return None
    root = parse_spans(text)
    newline = detect_newline(text)
    unit = detect_indent(text, root)
    intended = copy.deepcopy(doc)
    entry = {'server_environment': env, 'engine_ids': [engine]}
    mirrors = _mirrors(doc)
    if mirrors is None:
        anchor = _anchor_for_new_key(text, root)
        new = _insert_member_before(text, anchor, MIRRORS_KEY, [entry], unit,
                                    detect_compact(text, root), newline)
        intended[MIRRORS_KEY] = [entry]
        return _verify(new, intended)
    array = root.member(MIRRORS_KEY).value
    for idx, existing in enumerate(mirrors):
        if not _is_env(existing, env):
            continue
        engines = _engines(existing)
        entry_node = array.items[idx]
        if engines is None:
            first = entry_node.members[0]
            compact = '\n' not in text[entry_node.start:entry_node.end]
            new = _insert_member_before(text, first, 'engine_ids', [engine], unit, compact, newline)
            intended[MIRRORS_KEY][idx]['engine_ids'] = [engine]
        else:
            engines_node = entry_node.member('engine_ids').value
            new = _prepend_item(text, engines_node, engine, unit, True, newline)
            intended[MIRRORS_KEY][idx]['engine_ids'] = [engine] + engines
        return _verify(new, intended)
    compact = bool(array.items) and '\n' not in text[array.items[0].start:array.items[0].end]
    if not array.items:
        compact = detect_compact(text, root)
    new = _prepend_item(text, array, entry, unit, compact, newline)
    intended[MIRRORS_KEY] = [entry] + mirrors
    return _verify(new, intended)


def _intended_without(doc: Dict[str, Any], env: str, engine: str) -> Dict[str, Any]:
    intended = copy.deepcopy(doc)
    kept = []
    for entry in intended[MIRRORS_KEY]:
        if _is_env(entry, env) and engine in (_engines(entry) or []):
            entry['engine_ids'] = [e for e in entry['engine_ids'] if e != engine]
            if not entry['engine_ids']:
                continue
        kept.append(entry)
    if kept:
        intended[MIRRORS_KEY] = kept
    else:
        del intended[MIRRORS_KEY]
    return intended


def remove_mirror(text: str, env: str, engine: str) -> Optional[str]:
    """``text`` without ``engine`` in the entries for ``env``, or None if it is not there.

    An entry left with no engine is removed, and so is an emptied ``mirrored_engine_ids``, so
    removing undoes adding byte for byte.
    """
    doc = json.loads(text)
    if not has_mirror(doc, env, engine):
        return None
    intended = _intended_without(doc, env, engine)
    new = text
    while True:
        current = json.loads(new)
        mirrors = _mirrors(current) or []
        hit = next((i for i, e in enumerate(mirrors)
                    if _is_env(e, env) and engine in (_engines(e) or [])), None)
        if hit is None:
            break
        root = parse_spans(new)
        array = root.member(MIRRORS_KEY).value
        engines = mirrors[hit]['engine_ids']
        if len(engines) > 1:
            engines_node = array.items[hit].member('engine_ids').value
            new = _remove_at(new, engines_node, engines.index(engine))
        elif len(mirrors) > 1:
            new = _remove_at(new, array, hit)
        else:
            member = root.member(MIRRORS_KEY)
            new = _remove_at(new, root, root.members.index(member))
    return _verify(new, intended)


# --------------------------------------------------------------------------------------------
# Files


@dataclass(frozen=True)
class MirrorSpec:
    """Which data sources to touch and which mirror to add or remove."""

    server_environment: str
    mirror_engine_id: str
    domains: Sequence[str]
    engine_id: str = 'icds-ucr'

    def __post_init__(self) -> None:
        if not self.server_environment:
            raise DataSourceError('server_environment must not be empty')
        if not self.mirror_engine_id:
            raise DataSourceError('mirror_engine_id must not be empty')
        if not self.domains or not all(self.domains):
            raise DataSourceError('domains must list at least one domain')
        if not self.engine_id:
            raise DataSourceError('engine_id must not be empty')


@dataclass
class FileResult:
    """What happened (or would happen) to one file."""

    path: str
    status: str  # 'changed', 'unchanged' or 'skipped'
    reason: Optional[str] = None
    before: Optional[str] = None
    after: Optional[str] = None
    backup_file: Optional[str] = None


@dataclass
class MirrorResult:
    """Outcome for a folder of data sources."""

    files: List[FileResult]

    def paths(self, status: str) -> List[str]:
        return [f.path for f in self.files if f.status == status]

    @property
    def changed(self) -> bool:
        return any(f.status == 'changed' for f in self.files)


def skip_reason(doc: Any, spec: MirrorSpec) -> Optional[str]:
    """Why a parsed file is not one of the data sources to edit (None: it is)."""
    if not isinstance(doc, dict) or not isinstance(doc.get('config'), dict):
        return 'not a UCR data source (no config object)'
    domains = doc.get('domains')
    if not isinstance(domains, list) or not set(spec.domains) & set(d for d in domains if isinstance(d, str)):
        return 'domains %s do not include %s' % (
            ', '.join(str(d) for d in domains) if isinstance(domains, list) else 'missing',
            ', '.join(spec.domains))
    own = doc['config'].get('engine_id', DEFAULT_ENGINE_ID)
    if own != spec.engine_id:
        return 'engine_id %s is not %s' % (own, spec.engine_id)
    return None


def _read(path: str) -> str:
    try:
        with open(path, 'rb') as fh:
            raw = fh.read()
    except OSError as exc:
        raise DataSourceError('%s: cannot read: %s' % (path, exc.strerror or exc))
    try:
        return raw.decode('utf-8')
    except UnicodeDecodeError as exc:
        raise DataSourceError('%s is not UTF-8 text (byte %d)' % (path, exc.start))


def plan_file(path: str, spec: MirrorSpec, state: str = 'present') -> FileResult:
    """Read one file and work out its new text; writes nothing."""
    text = _read(path)
    bom = text.startswith('\ufeff')
    body = text[1:] if bom else text
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise DataSourceError('%s is not valid JSON: %s' % (path, exc))
    reason = skip_reason(doc, spec)
    if reason:
        return FileResult(path, 'skipped', reason=reason)
    own = doc['config'].get('engine_id', DEFAULT_ENGINE_ID)
    if spec.mirror_engine_id == own:
        raise DataSourceError('%s: the mirror engine %s is the data source\'s own engine_id; '
                              'a data source cannot mirror into itself' % (path, own))
    try:
        if state == 'present':
            new = add_mirror(body, spec.server_environment, spec.mirror_engine_id)
        elif state == 'absent':
            new = remove_mirror(body, spec.server_environment, spec.mirror_engine_id)
        else:
            raise DataSourceError('state must be present or absent, not %r' % state)
    except DataSourceError as exc:
        raise DataSourceError('%s: %s' % (path, exc))
    if new is None:
        return FileResult(path, 'unchanged')
    return FileResult(path, 'changed', before=text, after=('\ufeff' + new) if bom else new)


def list_datasource_files(path: str, recursive: bool = False) -> List[str]:
    """The ``*.json`` files in folder ``path`` (sorted; hidden folders skipped), or ``path`` itself."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise DataSourceError('%s is not a folder of data source files' % path)
    found: List[str] = []
    if recursive:
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
            found.extend(os.path.join(folder, f) for f in sorted(files) if f.endswith('.json'))
    else:
        found = [os.path.join(path, f) for f in sorted(os.listdir(path))
                 if f.endswith('.json') and os.path.isfile(os.path.join(path, f))]
    return found


def backup_name(path: str, now: Optional[datetime.datetime] = None) -> str:
    """``<file>.<pid>.<YYYY-MM-DD@HH:MM:SS>~`` (Ansible's backup naming; never ``*.json``)."""
    stamp = (now or datetime.datetime.now()).strftime('%Y-%m-%d@%H:%M:%S')
    candidate = '%s.%d.%s~' % (path, os.getpid(), stamp)
    n = 1
    while os.path.exists(candidate):
        candidate = '%s.%d.%s.%d~' % (path, os.getpid(), stamp, n)
        n += 1
    return candidate


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` through a temp file in the same folder; keeps mode and owner."""
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    st = os.stat(target)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix='.' + os.path.basename(target) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as fh:
            fh.write(text.encode('utf-8'))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        if hasattr(os, 'chown'):
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except PermissionError:
                pass
        os.replace(tmp, target)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise DataSourceError('%s: cannot write: %s' % (path, exc.strerror or exc))


def mirror_datasources(path: str, spec: MirrorSpec, state: str = 'present', recursive: bool = False,
                       check_mode: bool = False, backup: bool = False) -> MirrorResult:
    """Add (``present``) or remove (``absent``) the mirror in every matching data source.

    Every file is read, parsed and planned before the first one is written, so a broken file
    stops the run with nothing changed.
    """
    files = [plan_file(f, spec, state) for f in list_datasource_files(path, recursive)]
    if check_mode:
        return MirrorResult(files)
    written: List[str] = []
    for result in files:
        if result.status != 'changed':
            continue
        try:
            if backup:
                result.backup_file = backup_name(result.path)
                try:
                    shutil.copy2(result.path, result.backup_file)
                except OSError as exc:
                    raise DataSourceError('%s: cannot make a backup: %s'
                                          % (result.path, exc.strerror or exc))
            write_atomic(result.path, result.after)
        except DataSourceError as exc:
            if written:
                raise DataSourceError('%s (already written: %s)' % (exc, ', '.join(written)))
            raise
        written.append(result.path)
    return MirrorResult(files)
