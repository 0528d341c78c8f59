"""Persistence in the request path: which server a user must go back to.

The article's "Persistence" section, wired into the proxy. The mechanisms
themselves are sans-io (``appliance/persist``): cookie insertion, prefix and
rewrite (``cookie.py``) and learned associations in a stick table
(``table.py``). This module asks them, for each request, whether the user
already belongs to a server, and fixes up each response (cookies to insert,
rewrite or learn from).

A persisted server that is DOWN or in MAINT cannot take its user back: with
``redispatch`` the request is balanced to another server and the user is
persisted there (a new cookie, an updated table entry); without it the user
gets a 503. A server in DRAIN still serves its persisted users.
"""

from __future__ import annotations

import ipaddress
import re
import time
from typing import TYPE_CHECKING

from appliance.checks.state import Admin
from appliance.log.httplog import escape_request_line
from appliance.persist.cookie import NO_COOKIE, CookiePersistence, RequestDecision
from appliance.persist.table import StickTable

if TYPE_CHECKING:
    from appliance.proxy.backend import Backend
    from appliance.proxy.client import ClientConnection
    from appliance.proxy.server import Server

_RESPONSE_COOKIE_FIELDS = re.compile(
    rb"\r\n(set-cookie|cache-control):[ \t]*([^\r\n]*?)[ \t]*(?=\r\n|$)", re.IGNORECASE
)
_SET_COOKIE_LINES = re.compile(rb"\r\nset-cookie:[^\r\n]*", re.IGNORECASE)
_CACHE_CONTROL_LINES = re.compile(rb"\r\ncache-control:[^\r\n]*", re.IGNORECASE)
_JSESSIONID_PARAM = re.compile(rb";jsessionid=([^;?/#]+)", re.IGNORECASE)
CAPTURE_LEN = 63  # bytes of our cookie shown in the log, as HAProxy's "capture cookie ... len"
EXPIRED_ENTRIES_PER_LEARN = 2  # purge a little on every write: the table never fills with dead


def takes_persisted_users(server: Server) -> bool:
    """DRAIN keeps its users; DOWN and MAINT send them elsewhere."""
    state = server.state
    return state.operational and state.admin is not Admin.MAINT


class BackendPersistence:
    """The persistence configured on one backend: a cookie, a stick table, or both."""

    __slots__ = ("by_id", "cookie", "cookie_prefix", "stick_cookie", "stick_src", "table")

    def __init__(self, backend: Backend) -> None:
        config = backend.config
        servers = backend.servers
        self.by_id = {s.id: s for s in servers}
        self.cookie: CookiePersistence | None = None
        self.cookie_prefix = b""  # b"SERVERID=": how our cookie starts
        if config.cookie is not None:
            self.cookie_prefix = config.cookie.name.encode() + b"="
            self.cookie = CookiePersistence(
                config.cookie, {s.config.cookie or s.name: s for s in servers}
            )
        self.table: StickTable | None = None
        self.stick_src = False
        self.stick_cookie = b""  # application cookie learned from Set-Cookie
        if config.stick is not None:
            stick = config.stick
            if stick.on == "src":
                self.stick_src = True
                self.table = StickTable(backend.name, "ipv6", stick.size, stick.expire)
            else:
                self.stick_cookie = stick.on.partition(":")[2].encode()
                self.table = StickTable(backend.name, "string", stick.size, stick.expire)

    # -- requests -------------------------------------------------------------

    def request(
        self, cc: ClientConnection, cookies: list[bytes]
    ) -> tuple[Server | None, RequestDecision, bool]:
        """The server this request is persisted to, the cookie decision, and whether the
        persisted server is gone (the caller redispatches or answers 503)."""
        decision = NO_COOKIE
        if self.cookie is not None:
            cc.captured_req = self._capture(cookies)
            decision = self.cookie.on_request(cookies, time.time(), takes_persisted_users)
            if decision.state == "V":
                return decision.server, decision, False
            if decision.state == "D":
                return None, decision, True
        if self.table is not None:
            key = self._request_key(cc, cookies)
            if key is not None:
                server = self.by_id.get(self.table.lookup(key))
                if server is not None:
                    if takes_persisted_users(server):
                        return server, decision, False
                    return None, decision, True
        return None, decision, False

    def _capture(self, cookies: list[bytes]) -> str:
        """Our cookie as the client sent it, for the log."""
        prefix = self.cookie_prefix
        for header in cookies:
            for part in header.split(b";"):
                part = part.strip()
                if part.startswith(prefix):
                    return captured(part)
        return "-"

    def _request_key(self, cc: ClientConnection, cookies: list[bytes]) -> object | None:
        if self.stick_src:
            return _client_address(cc.client_ip)
        name = self.stick_cookie
        for header in cookies:
            for part in header.split(b";"):
                cname, sep, value = part.strip().partition(b"=")
                if sep and cname == name and value:
                    return value
        if name.lower() == b"jsessionid":
            match = _JSESSIONID_PARAM.search(cc.path)
            if match is not None:
                return match.group(1)
        return None

    # -- responses ------------------------------------------------------------

    def response(self, cc: ClientConnection, server: Server, fields: bytes) -> tuple[bytes, str]:
        """Learn from and fix up the response's fields; return them and the log's cookie
        character for the response ('-' without cookie persistence)."""
        cookie = self.cookie
        set_cookies: list[bytes] = []
        cache_control: list[bytes] = []
        if cookie is not None or self.stick_cookie:
            for name, value in _RESPONSE_COOKIE_FIELDS.findall(fields):
                if len(name) == 10:  # set-cookie
                    set_cookies.append(value)
                else:
                    cache_control.append(value)
        table = self.table
        if table is not None:
            if self.stick_src:
                self._learn(table, _client_address(cc.client_ip), server.id)
            else:
                prefix = self.stick_cookie + b"="
                for value in set_cookies:
                    if value.startswith(prefix):
                        learned = value[len(prefix) :].split(b";", 1)[0].strip()
                        if learned:
                            self._learn(table, learned, server.id)
        if cookie is None:
            return fields, "-"
        decision = cookie.on_response(
            set_cookies,
            server.config.cookie or server.name,
            cc.cookie_decision,
            time.time(),
            cache_control,
        )
        if decision.set_cookie_headers is not None:
            fields = _SET_COOKIE_LINES.sub(b"", fields) + b"".join(
                b"\r\nSet-Cookie: " + value for value in decision.set_cookie_headers
            )
            prefix = self.cookie_prefix
            for value in decision.set_cookie_headers:
                if value.startswith(prefix):
                    cc.captured_res = captured(value.split(b";", 1)[0])
                    break
        if decision.cache_control is not None:
            fields = _CACHE_CONTROL_LINES.sub(b"", fields) + b"".join(
                b"\r\nCache-Control: " + value for value in decision.cache_control
            )
        return fields, decision.state

    @staticmethod
    def _learn(table: StickTable, key: object, server_id: int) -> None:
        table.learn(key, server_id)
        table.purge(max_entries=EXPIRED_ENTRIES_PER_LEARN)


def captured(cookie: bytes) -> str:
    """A cookie as the log's captured-cookie fields show it (HAProxy's ``capture cookie``):
    ``NAME=value``, cut at ``CAPTURE_LEN`` bytes, escaped so the field stays one word."""
    return escape_request_line(cookie[:CAPTURE_LEN]).replace(" ", "#20") or "-"


def _client_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(ip.partition("%")[0])
