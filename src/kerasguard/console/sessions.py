"""Server-side console sessions: a random id in an HttpOnly cookie, everything else in this process.

The store token a reviewer logged in with never leaves the server after the login form. A session
carries its own CSRF token (synchronizer pattern); a login replaces the pre-login session with a new id
(no fixation). Sessions expire after ``IDLE_S`` without use and ``ABSOLUTE_S`` after login, and the
table is bounded so a flood of login pages cannot grow memory without limit.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from kerasguard.store.rbac import Principal

COOKIE = "kg_console"
IDLE_S = 30 * 60.0
ABSOLUTE_S = 8 * 3600.0
MAX_SESSIONS = 5_000  # logged-in sessions
MAX_ANONYMOUS = 2_000  # pre-login sessions, kept apart: a flood of login pages cannot evict reviewers
LOGIN_FAILURES = 10  # per client address within LOGIN_WINDOW_S, then 429
LOGIN_WINDOW_S = 300.0


@dataclass
class Session:
    id: str
    csrf: str
    created: float
    seen: float
    token: str | None = None
    principal: Principal | None = None
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def logged_in(self) -> bool:
        return self.principal is not None and self.token is not None

    def csrf_ok(self, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(self.csrf.encode(), (sent or "").encode())


class Sessions:
    def __init__(self) -> None:
        self._table: OrderedDict[str, Session] = OrderedDict()
        self._anonymous: OrderedDict[str, Session] = OrderedDict()
        self._failures: dict[str, deque[float]] = {}

    def _new(self, table: OrderedDict[str, Session], bound: int) -> Session:
        now = time.monotonic()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        table[session.id] = session
        while len(table) > bound:
            table.popitem(last=False)
        return session

    def anonymous(self) -> Session:
        """A pre-login session: it only carries the login form's CSRF token."""
        return self._new(self._anonymous, MAX_ANONYMOUS)

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 100:
            return None
        table = self._table if session_id in self._table else self._anonymous
        session = table.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.seen > IDLE_S or now - session.created > ABSOLUTE_S:
            self.drop(session_id)
            return None
        session.seen = now
        table.move_to_end(session_id)
        return session

    def login(self, old: Session, token: str, principal: Principal) -> Session:
        """A fresh session (new id, new CSRF token) for the authenticated reviewer."""
        self.drop(old.id)
        session = self._new(self._table, MAX_SESSIONS)
        session.token, session.principal = token, principal
        return session

    def drop(self, session_id: str) -> None:
        self._table.pop(session_id, None)
        self._anonymous.pop(session_id, None)

    def throttled(self, client: str) -> bool:
        window = self._failures.get(client)
        if window is None:
            return False
        cutoff = time.monotonic() - LOGIN_WINDOW_S
        while window and window[0] < cutoff:
            window.popleft()
        if not window:
            del self._failures[client]
            return False
        return len(window) >= LOGIN_FAILURES

    def failed(self, client: str) -> None:
        if len(self._failures) > MAX_SESSIONS:
            self._failures.clear()
        self._failures.setdefault(client, deque(maxlen=LOGIN_FAILURES)).append(time.monotonic())

    def __len__(self) -> int:
        return len(self._table) + len(self._anonymous)
