# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CommCare feature toggles stored in CouchDB: read them, enable or disable them for an item.

Plain Python (stdlib ``urllib``, ``json``, ``ssl``), no Ansible imports.

A toggle is one document ``hqFeatureToggle-<slug>`` with ``slug``, ``enabled_users`` (namespaced
items such as ``domain:icds-cas``) and ``last_modified``; a random-sampling toggle keeps its rate
(0..1) in ``hq_dynamic_randomness``. Updates PUT the document with its current ``_rev``; when
another writer got there first CouchDB answers 409 and the change is planned again on the fresh
document.

Credentials live only in :class:`CouchConnection` (excluded from ``repr``) and in the
``Authorization`` header. Error messages name the host and the toggle, never a URL or a secret.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import copy
import datetime
import json
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlsplit
from urllib.request import HTTPSHandler, Request, build_opener

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError

TOGGLE_PREFIX = 'hqFeatureToggle-'
RANDOMNESS_KEY = 'hq_dynamic_randomness'
STATES = ('enabled', 'disabled', 'query')


class CouchError(MigrationError):
    """CouchDB could not be reached, refused the request, or holds something unexpected."""


class ToggleConflict(CouchError):
    """The toggle document kept changing under us (HTTP 409 on every attempt)."""


class ToggleEnabled(MigrationError):
    """A toggle that must be off (pre-flight) is on."""


class ToggleOptionError(MigrationError):
    """The requested change makes no sense (bad state, item, randomness or slug)."""


class _Conflict(Exception):
    """Internal: one PUT answered 409."""


@dataclass(frozen=True)
class CouchConnection:
    """Where the toggle database is and how to talk to it.

    ``url`` is the database URL, e.g. ``http://127.0.0.1:5984/commcarehq``; it must not carry
    credentials (use ``user``/``password``).
    """

    url: str
    user: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    validate_certs: bool = True
    ca_path: Optional[str] = None
    timeout: float = 30.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url or '')
        if parts.scheme not in ('http', 'https') or not parts.hostname:
            raise CouchError('couch_url must be an http:// or https:// URL of the database '
                             '(for example http://127.0.0.1:5984/commcarehq)')
        if parts.username is not None or parts.password is not None:
            raise CouchError('couch_url must not contain credentials: '
                             'pass them as couch_user and couch_password')
        if not parts.path.strip('/'):
            raise CouchError('couch_url names no database: append it to the server URL '
                             '(for example http://127.0.0.1:5984/commcarehq)')
        if self.password is not None and not self.user:
            raise CouchError('couch_password is set but couch_user is not')

    @property
    def where(self) -> str:
        """``host:port`` for messages (no scheme, path or credentials)."""
        parts = urlsplit(self.url)
        port = parts.port or (443 if parts.scheme == 'https' else 80)
        return '%s:%s' % (parts.hostname, port)

    @property
    def database(self) -> str:
        """The database name (last path segment of the URL)."""
        return urlsplit(self.url).path.strip('/').split('/')[-1]


def build_ssl_context(validate_certs: bool = True, ca_path: Optional[str] = None) -> ssl.SSLContext:
    """TLS context: system CAs (or ``ca_path``) with hostname checks, or no checks at all."""
    if not validate_certs:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        return ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise CouchError('cannot load the CA certificates in ca_path %s: %s'
                         % (ca_path, getattr(exc, 'strerror', None) or exc))


class CouchClient:
    """Minimal CouchDB document client: GET and PUT of one document."""

    def __init__(self, conn: CouchConnection) -> None:
        self.conn = conn
        ctx = None
        if urlsplit(conn.url).scheme == 'https':
            ctx = build_ssl_context(conn.validate_certs, conn.ca_path)
        self._opener = build_opener(HTTPSHandler(context=ctx)) if ctx else build_opener()

    def _doc_url(self, doc_id: str) -> str:
        return self.conn.url.rstrip('/') + '/' + quote(doc_id, safe='')

    def _request(self, method: str, doc_id: str, what: str,
                 body: Optional[Dict[str, Any]] = None) -> Tuple[int, Dict[str, Any]]:
        """Send one request; return (status, decoded JSON body) for 2xx, 404 and 409."""
        data = json.dumps(body).encode('utf-8') if body is not None else None
        req = Request(self._doc_url(doc_id), data=data, method=method)
        req.add_header('Accept', 'application/json')
        if data is not None:
            req.add_header('Content-Type', 'application/json')
        if self.conn.user:
            token = '%s:%s' % (self.conn.user, self.conn.password or '')
            req.add_header('Authorization',
                           'Basic ' + base64.b64encode(token.encode('utf-8')).decode('ascii'))
        try:
            with self._opener.open(req, timeout=self.conn.timeout) as resp:
                return resp.status, _decode(resp.read())
        except HTTPError as exc:
            payload = _decode(exc.read())
            if exc.code in (404, 409):
                return exc.code, payload
            reason = payload.get('reason') or payload.get('error') or exc.reason
            hint = ''
            if exc.code == 401:
                hint = ' (check couch_user and couch_password)'
            elif exc.code == 403:
                hint = ' (couch_user may not write this database)'
            raise CouchError('CouchDB at %s answered HTTP %s %s: %s%s'
                             % (self.conn.where, exc.code, what, reason, hint))
        except URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLError):
                raise CouchError('TLS handshake with CouchDB at %s failed %s: %s (set ca_path to '
                                 'the CA that signed the server certificate, or validate_certs: '
                                 'false)' % (self.conn.where, what, getattr(reason, 'verify_message', None)
                                             or getattr(reason, 'reason', None) or reason))
            raise CouchError('cannot reach CouchDB at %s %s: %s'
                             % (self.conn.where, what, getattr(reason, 'strerror', None) or reason))
        except (socket.timeout, TimeoutError):
            raise CouchError('CouchDB at %s did not answer within %s s %s'
                             % (self.conn.where, self.conn.timeout, what))
        except (ConnectionError, ssl.SSLError) as exc:
            raise CouchError('connection to CouchDB at %s failed %s: %s'
                             % (self.conn.where, what, exc.__class__.__name__))

    def get_doc(self, doc_id: str) -> Optional[Dict[str, Any]]:
        """The document, or None if it does not exist (or was deleted)."""
        what = 'reading %s' % doc_id
        status, payload = self._request('GET', doc_id, what)
        if status == 404:
            if payload.get('reason') in ('missing', 'deleted'):
                return None
            raise CouchError('CouchDB at %s has no database %s (%s)'
                             % (self.conn.where, self.conn.database, payload.get('reason', 'not found')))
        if not isinstance(payload, dict) or payload.get('_id') != doc_id:
            raise CouchError('CouchDB at %s returned something that is not document %s'
                             % (self.conn.where, doc_id))
        return payload

    def put_doc(self, doc: Dict[str, Any]) -> str:
        """Write the document (its ``_rev`` must be current); return the new revision."""
        doc_id = doc['_id']
        what = 'writing %s' % doc_id
        status, payload = self._request('PUT', doc_id, what, body=doc)
        if status == 409:
            raise _Conflict()
        if status == 404:
            raise CouchError('CouchDB at %s has no database %s (%s)'
                             % (self.conn.where, self.conn.database, payload.get('reason', 'not found')))
        return str(payload.get('rev', ''))


def _decode(raw: bytes) -> Dict[str, Any]:
    try:
        value = json.loads(raw.decode('utf-8')) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def toggle_doc_id(slug: str) -> str:
    """``hqFeatureToggle-<slug>``."""
    return TOGGLE_PREFIX + slug


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%fZ')


@dataclass(frozen=True)
class ToggleState:
    """What a toggle document says (an absent document is a toggle that is off)."""

    slug: str
    exists: bool = False
    enabled_users: Tuple[str, ...] = ()
    randomness: Optional[float] = None

    @classmethod
    def from_doc(cls, slug: str, doc: Optional[Dict[str, Any]]) -> 'ToggleState':
        if doc is None:
            return cls(slug=slug)
        users = doc.get('enabled_users') or []
        if not isinstance(users, list):
            raise CouchError('toggle %s: enabled_users is not a list' % slug)
        rate = doc.get(RANDOMNESS_KEY)
        if rate is not None:
            try:
                rate = float(rate)
            except (TypeError, ValueError):
                raise CouchError('toggle %s: %s is not a number' % (slug, RANDOMNESS_KEY))
        return cls(slug=slug, exists=True, enabled_users=tuple(str(u) for u in users), randomness=rate)

    def enabled_for(self, item: Optional[str] = None) -> bool:
        """On for ``item`` (listed, or sampled at a rate > 0); without item: on for anyone."""
        if self.randomness is not None and self.randomness > 0:
            return True
        if item is None:
            return bool(self.enabled_users)
        return item in self.enabled_users

    def summary(self) -> Dict[str, Any]:
        """The fields a user cares about (used for diff before/after)."""
        out: Dict[str, Any] = {'slug': self.slug, 'exists': self.exists,
                               'enabled_users': list(self.enabled_users)}
        if self.randomness is not None:
            out['randomness'] = self.randomness
        return out


@dataclass(frozen=True)
class ToggleChange:
    """What should happen: ``item`` listed (True) / unlisted (False) / untouched (None), rate."""

    item: Optional[str] = None
    listed: Optional[bool] = None
    randomness: Optional[float] = None


def make_change(state: str, item: Optional[str] = None,
                randomness: Optional[float] = None) -> ToggleChange:
    """Validate the options of one request and turn them into a :class:`ToggleChange`."""
    if state not in STATES:
        raise ToggleOptionError('state must be one of %s, not %r' % (', '.join(STATES), state))
    if item is not None:
        item = item.strip()
        if not item:
            raise ToggleOptionError('item must not be empty')
    if randomness is not None:
        randomness = float(randomness)
        if not 0.0 <= randomness <= 1.0:
            raise ToggleOptionError('randomness must be between 0 and 1, not %s' % randomness)
    if state == 'query':
        if randomness is not None:
            raise ToggleOptionError('randomness sets the sampling rate: use it with state=enabled')
        return ToggleChange(item=item)
    if item is None and randomness is None:
        raise ToggleOptionError('state=%s needs item (for example domain:icds-cas) or randomness' % state)
    if state == 'disabled' and randomness not in (None, 0.0):
        raise ToggleOptionError('state=disabled turns sampling off: randomness must be 0 or unset')
    return ToggleChange(item=item, listed=None if item is None else state == 'enabled',
                        randomness=randomness)


def plan_doc(slug: str, doc: Optional[Dict[str, Any]], change: ToggleChange,
             now: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The document to PUT for ``change``, or None when nothing needs to change.

    Keeps every other field (``doc_type``, ``_rev``, unknown keys) and the order of
    ``enabled_users``; a new item goes at the end. A missing document is created only when
    something is to be enabled.
    """
    users = list(ToggleState.from_doc(slug, doc).enabled_users)
    new_users = list(users)
    if change.listed is True and change.item not in new_users:
        new_users.append(change.item)
    elif change.listed is False:
        new_users = [u for u in new_users if u != change.item]
    current_rate = doc.get(RANDOMNESS_KEY) if doc is not None else None
    rate_changes = (change.randomness is not None
                    and (current_rate is None or float(current_rate) != change.randomness))
    if doc is None and change.randomness == 0.0:
        rate_changes = False  # an absent toggle already samples nobody
    if new_users == users and not rate_changes:
        return None
    new = copy.deepcopy(doc) if doc is not None else {
        '_id': toggle_doc_id(slug), 'doc_type': 'Toggle', 'slug': slug, 'enabled_users': []}
    new['enabled_users'] = new_users
    if rate_changes:
        new[RANDOMNESS_KEY] = change.randomness
    new['last_modified'] = now or _now()
    return new


@dataclass
class ToggleResult:
    """Outcome of :func:`ensure_toggle`."""

    changed: bool
    before: ToggleState
    after: ToggleState
    attempts: int = 1
    rev: Optional[str] = None


def read_toggle(client: CouchClient, slug: str) -> ToggleState:
    """Current state of ``slug`` (an absent document reads as off)."""
    return ToggleState.from_doc(slug, client.get_doc(toggle_doc_id(slug)))


def ensure_toggle(client: CouchClient, slug: str, change: ToggleChange, check_mode: bool = False,
                  conflict_retries: int = 5) -> ToggleResult:
    """Bring the toggle to ``change``; on HTTP 409 re-read and re-apply (``conflict_retries`` times).

    In check mode nothing is written; ``after`` is what would be written.
    """
    if not slug or not slug.strip():
        raise ToggleOptionError('slug must not be empty')
    doc_id = toggle_doc_id(slug)
    attempts = 0
    while True:
        attempts += 1
        doc = client.get_doc(doc_id)
        before = ToggleState.from_doc(slug, doc)
        new = plan_doc(slug, doc, change)
        if new is None:
            return ToggleResult(False, before, before, attempts, doc.get('_rev') if doc else None)
        after = ToggleState.from_doc(slug, new)
        if check_mode:
            return ToggleResult(True, before, after, attempts, doc.get('_rev') if doc else None)
        try:
            rev = client.put_doc(new)
        except _Conflict:
            if attempts > conflict_retries:
                raise ToggleConflict('toggle %s: CouchDB at %s answered 409 (document update conflict) '
                                     '%d times in a row; another writer keeps changing it, try again'
                                     % (slug, client.conn.where, attempts))
            continue
        return ToggleResult(True, before, after, attempts, rev)


def assert_disabled(state: ToggleState, item: Optional[str] = None) -> None:
    """Raise :class:`ToggleEnabled` (one readable line) if the toggle is on for ``item``."""
    if not state.enabled_for(item):
        return
    who = 'for %s' % item if item else 'for %s' % ', '.join(state.enabled_users or ('everyone',))
    if state.randomness and (item is None or item not in state.enabled_users):
        who = 'by random sampling (%s = %s)' % (RANDOMNESS_KEY, state.randomness)
    raise ToggleEnabled('toggle %s is enabled %s; it must be disabled at this point' % (state.slug, who))
