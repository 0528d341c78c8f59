"""Cookie persistence: the article's "Persistence" by cookie, HAProxy's ``cookie`` keyword.

Three modes, as in HAProxy:

- ``insert``: Weir adds its own cookie (``SERVERID=web1; path=/``) to the
  responses of clients that do not hold a valid one, and sends requests
  carrying it to the server it names.
- ``prefix``: the application's own session cookie carries the server in
  front of its value (``JSESSIONID=web1~abc``); Weir adds the prefix on the
  way out and removes it on the way in, so the server only ever sees ``abc``.
- ``rewrite``: the server sets the cookie with any placeholder value and Weir
  replaces the value with the server's cookie value.

Sans-io: the proxy passes the ``Cookie`` / ``Set-Cookie`` / ``Cache-Control``
header values it received and applies the ``RequestDecision`` /
``ResponseDecision`` returned. Nothing here touches a socket, a clock or a
body: cookies live in headers only. Which server is usable, and whether to
redispatch, is the caller's business; the decisions say what it needs.

Syntax is RFC 6265 (§4.1 ``Set-Cookie``, §4.2 ``Cookie``, §5.2 parsing),
read leniently: spaces and tabs around names and values are ignored, a
quoted value keeps its quotes, and a pair without ``=`` is, as browsers and
RFC 6265bis have it, a cookie with an empty name whose value is the text (so
it can never be mistaken for ours). Nothing in here raises on input bytes.

Choices where HAProxy's manual leaves room, all documented for users in
docs/persistence.md:

- A cookie (its ``name=value`` bytes) over ``MAX_COOKIE_BYTES`` is treated as
  absent and counted. With ``indirect`` ours is still removed from requests.
- When a client sends our cookie several times, the first occurrence naming a
  usable-looking server (V or D) decides; otherwise the first occurrence's
  state is logged.
- Dates (``maxidle``/``maxlife``, insert mode only) use HAProxy's encoding, so
  a cookie issued by HAProxy is understood by Weir and the other way round:
  ``value|LLLLL|FFFFF`` where each date is the Unix time divided by 4 (rounded
  up), written as 5 characters of base64 (``A-Za-z0-9+/``), most significant
  first. ``L`` is the last-seen date, ``F`` the first-seen date (only with
  ``maxlife``). Dates are not signed, so they are checked for consistency
  instead: a date that does not decode, lies more than ``DATE_SKEW`` seconds
  in the future, or a first date after the last date marks the cookie
  expired (E) and counted. A cookie without the dates the configuration
  requires is ignored as old (O) -- unlike HAProxy, which accepts and re-dates
  it -- so removing the dates never buys a fresh life.
- The last-seen date is refreshed (server cookie state U) once it is at least
  ``maxidle / 4`` old, not on every request: an active client is never
  expired, and a busy one does not receive a ``Set-Cookie`` with every
  response. The first-seen date is copied from the validated cookie, never
  renewed.
- A still-valid cookie is not sent again, with or without ``indirect`` (as
  HAProxy's code does). ``indirect`` removes our cookie from requests in
  insert mode, and in rewrite mode removes the server's own cookie when the
  client already holds a valid one. In prefix mode the request cookie is
  always restored, and ``indirect`` does not touch the application's cookie
  in responses (a new session id must reach the client).
- In insert mode a ``Set-Cookie`` with our name coming from the server is
  removed (HAProxy does the same): our cookie is never duplicated.
- ``nocache`` applies to every response in which Weir adds or changes a
  cookie (insert, update, delete, prefix, rewrite): ``public`` is removed from
  ``Cache-Control`` and ``private`` added, and the response is flagged
  uncacheable. Weir does not judge whether the response was cacheable in the
  first place; ``private`` on an uncacheable response is harmless.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from appliance.config.model import CookieConfig
from appliance.config.values import TOKEN

S = TypeVar("S")

MODES = ("insert", "prefix", "rewrite")

# RFC 6265 §6.1: user agents keep at least 4096 bytes per cookie; anything
# larger did not come from us or from a well-behaved application.
MAX_COOKIE_BYTES = 4096
# How far in the future a date may lie: dates are rounded up to 4 seconds,
# and the two nodes of a pair may disagree a little about the time.
DATE_SKEW = 60
DATE_DELIM = b"|"
PREFIX_DELIM = b"~"

_OWS = b" \t"
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {c: i for i, c in enumerate(_B64)}
_EXPIRED = b"; Expires=Thu, 01-Jan-1970 00:00:01 GMT"


# --- cookie syntax ---------------------------------------------------------------------------


def _pairs(value: bytes) -> Iterator[tuple[bytes, bytes, bytes]]:
    """(name, value, the pair's bytes) for each non-empty pair of a ``Cookie`` header."""
    for raw in value.split(b";"):
        pair = raw.strip(_OWS)
        if not pair:
            continue
        name, eq, val = pair.partition(b"=")
        if eq:
            yield name.rstrip(_OWS), val.lstrip(_OWS), pair
        else:
            yield b"", pair, pair


def parse_cookie_header(value: bytes) -> list[tuple[bytes, bytes]]:
    """The (name, value) pairs of one ``Cookie`` header, in order.

    Cookies over ``MAX_COOKIE_BYTES`` are left out; empty pairs are skipped;
    ``abc`` (no ``=``) is ``(b"", b"abc")``.
    """
    return [(n, v) for n, v, pair in _pairs(value) if len(pair) <= MAX_COOKIE_BYTES]


def serialise_cookie_header(cookies: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A ``Cookie`` header value for the pairs, as user agents write it (RFC 6265 §5.4)."""
    return b"; ".join(name + b"=" + value if name else value for name, value in cookies)


def remove_cookie(value: bytes, name: bytes) -> bytes | None:
    """``value`` without the cookies called ``name``; None when nothing else is left.

    The other cookies keep their order and bytes; the header comes back
    unchanged (the same object) when it held no such cookie.
    """
    if name not in value:
        return value
    pairs = list(_pairs(value))
    kept = [pair for n, _, pair in pairs if n != name]
    if len(kept) == len(pairs):
        return value
    return b"; ".join(kept) or None


@dataclass(frozen=True, slots=True)
class SetCookie:
    """One ``Set-Cookie`` header value (RFC 6265 §5.2)."""

    name: bytes
    value: bytes
    attributes: tuple[tuple[bytes, bytes | None], ...]  # as sent; None: no "="
    raw_attributes: bytes  # everything from the first ";", verbatim

    def with_value(self, value: bytes) -> bytes:
        """The same header with another value; the attributes are kept byte for byte."""
        return self.name + b"=" + value + self.raw_attributes


def _set_cookie_name(value: bytes) -> bytes:
    pair = value.partition(b";")[0]
    name, eq, _ = pair.partition(b"=")
    return name.strip(_OWS) if eq else b""


def parse_set_cookie(value: bytes) -> SetCookie | None:
    """The cookie a ``Set-Cookie`` header sets; None when it sets none or one too large."""
    pair, semi, rest = value.partition(b";")
    pair = pair.strip(_OWS)
    if not pair or len(pair) > MAX_COOKIE_BYTES:
        return None
    name, eq, val = pair.partition(b"=")
    if eq:
        name, val = name.rstrip(_OWS), val.lstrip(_OWS)
    else:
        name, val = b"", pair
    if not name and not val:
        return None
    attributes = []
    for raw in rest.split(b";"):
        attribute = raw.strip(_OWS)
        if attribute:
            key, eq, arg = attribute.partition(b"=")
            attributes.append((key.rstrip(_OWS), arg.lstrip(_OWS) if eq else None))
    raw_attributes = value[len(value) - len(rest) - 1 :] if semi else b""
    return SetCookie(name, val, tuple(attributes), raw_attributes)


def format_set_cookie(
    name: bytes,
    value: bytes,
    *,
    expires: bytes = b"",
    path: bytes = b"/",
    domain: bytes = b"",
    httponly: bool = False,
    secure: bool = False,
) -> bytes:
    """A ``Set-Cookie`` value, attributes in HAProxy's order."""
    parts = [name + b"=" + value]
    if expires:
        parts.append(b"Expires=" + expires)
    if path:
        parts.append(b"path=" + path)
    if domain:
        parts.append(b"domain=" + domain)
    if httponly:
        parts.append(b"HttpOnly")
    if secure:
        parts.append(b"Secure")
    return b"; ".join(parts)


def _unquote(value: bytes) -> bytes:
    if len(value) >= 2 and value[0] == 0x22 and value[-1] == 0x22:
        return value[1:-1]
    return value


def prefix_value(server_cookie: bytes, value: bytes) -> bytes:
    """Prefix mode's cookie value: ``web1~abc``; inside the quotes of a quoted value."""
    if len(value) >= 2 and value[0] == 0x22 and value[-1] == 0x22:
        return b'"' + server_cookie + PREFIX_DELIM + value[1:-1] + b'"'
    return server_cookie + PREFIX_DELIM + value


def split_prefixed(value: bytes) -> tuple[bytes, bytes] | None:
    """(server cookie, application value) of a prefixed value; None without a prefix."""
    inner = _unquote(value)
    server, delim, rest = inner.partition(PREFIX_DELIM)
    if not delim:
        return None
    return server, (b'"' + rest + b'"' if inner is not value else rest)


def encode_date(seconds: float) -> bytes:
    """HAProxy's cookie date: Unix time / 4, rounded up, in 5 base64 characters."""
    quarters = ((int(seconds) + 3) >> 2) & 0x3FFFFFFF
    return bytes(_B64[(quarters >> shift) & 0x3F] for shift in (24, 18, 12, 6, 0))


def decode_date(text: bytes) -> int | None:
    """The Unix time of an encoded date (a multiple of 4); None if it is not one."""
    if len(text) != 5:
        return None
    quarters = 0
    for c in text:
        digit = _B64_VALUE.get(c)
        if digit is None:
            return None
        quarters = (quarters << 6) | digit
    return quarters << 2 if quarters else None


def make_private(cache_control: Sequence[bytes]) -> list[bytes] | None:
    """``Cache-Control`` values that keep shared caches from storing the response.

    ``public`` directives are dropped and ``private`` is added; None when the
    values already say ``private`` or ``no-store`` and not ``public``.
    """
    # Only a bare "private" counts: private="Set-Cookie" leaves the rest storable.
    directives = {d.strip(_OWS).lower() for value in cache_control for d in value.split(b",")}
    private = b"private" in directives
    if b"public" not in directives and (private or b"no-store" in directives):
        return None
    kept = []
    for value in cache_control:
        pieces = [p for p in value.split(b",") if p.strip(_OWS).lower() != b"public"]
        joined = b",".join(pieces).strip(_OWS)
        if joined:
            kept.append(joined)
    if not private:
        kept.append(b"private")
    return kept


# --- decisions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestDecision(Generic[S]):
    """What the client's cookie says, for the request to the server and for the log.

    ``state`` is the log's client cookie character: N none, I invalid (no
    server has that value, or garbage), D the server it names is not
    usable (the caller redispatches or answers 503), V valid, E expired
    (``maxidle``/``maxlife``, or dates that cannot be trusted), O old: no
    date while the configuration requires dates. With E and O the cookie is
    ignored: balance as if there were none.
    """

    state: str = "N"
    server: S | None = None  # the server the cookie names, for V and D only
    server_cookie: bytes | None = None  # that server's cookie value
    cookie_headers: list[bytes] | None = None  # replacement Cookie values; None: unchanged
    app_cookie: bytes | None = None  # prefix mode: the application's value, prefix removed
    last_date: int | None = None  # insert mode with dates: the validated dates
    first_date: int | None = None
    dated: bool = False  # the cookie carried dates (insert mode)


@dataclass(frozen=True, slots=True)
class ResponseDecision:
    """What to change in the response.

    ``state`` is the log's server cookie character: N nothing, I inserted, U
    updated (dates), P the server's cookie passed on unchanged, R the
    server's cookie rewritten, D deleted (the server's copy of our cookie was
    removed, or the client told to drop it).
    """

    state: str = "N"
    set_cookie_headers: list[bytes] | None = None  # all Set-Cookie values; None: unchanged
    cache_control: list[bytes] | None = None  # all Cache-Control values; None: unchanged
    uncacheable: bool = False  # the response carries our cookie: no cache may store it


@dataclass(slots=True)
class CookieCounters:
    oversized: int = 0  # cookies with our name over MAX_COOKIE_BYTES, treated as absent
    invalid: int = 0  # cookies naming no server (including garbage)
    forged: int = 0  # dates that do not decode, lie in the future or contradict each other


NO_COOKIE: RequestDecision = RequestDecision()
NOTHING = ResponseDecision()


@dataclass(frozen=True, slots=True)
class _Verdict(Generic[S]):
    state: str
    server: S | None = None
    server_cookie: bytes | None = None
    restored: bytes | None = None
    last_date: int | None = None
    first_date: int | None = None
    dated: bool = False


class CookiePersistence(Generic[S]):
    """One backend's cookie persistence: ``servers`` maps each server's cookie value to it."""

    def __init__(self, config: CookieConfig, servers: Mapping[str, S]) -> None:
        if config.mode not in MODES:
            raise ValueError(f"cookie mode {config.mode!r}: must be one of {', '.join(MODES)}")
        if not TOKEN.fullmatch(config.name):
            raise ValueError(f"cookie name {config.name!r}: must be a token")
        reserved = {"insert": "|", "prefix": "~", "rewrite": ""}[config.mode]
        by_cookie: dict[bytes, S] = {}
        for value, server in servers.items():
            if not TOKEN.fullmatch(value) or (reserved and reserved in value):
                raise ValueError(
                    f"cookie {config.name!r}: server cookie value {value!r} must be a token"
                    + (f" without {reserved!r} in {config.mode} mode" if reserved else "")
                )
            by_cookie[value.encode("ascii")] = server
        self.config = config
        self.counters = CookieCounters()
        self._servers = by_cookie
        self._name = config.name.encode("ascii")
        self._mode = config.mode
        self._dated = config.mode == "insert" and (config.maxidle > 0 or config.maxlife > 0)
        self._strip = config.mode == "insert" and config.indirect
        attributes = format_set_cookie(
            b"",
            b"",
            domain=config.domain.encode("ascii"),
            httponly=config.httponly,
            secure=config.secure,
        )[1:]
        self._insert_tail = attributes  # "; path=/; domain=...; HttpOnly; Secure"
        self._delete = self._name + b"=" + _EXPIRED + attributes

    # -- request side --

    def on_request(
        self,
        cookie_headers: Sequence[bytes],
        now: float,
        available: Callable[[S], bool] | None = None,
    ) -> RequestDecision[S]:
        """Read the client's ``Cookie`` headers (each value as received).

        ``now`` is the wall-clock time (``time.time()``): cookie dates are
        absolute. ``available`` says whether a server may take the request;
        without it every known server counts as usable.
        """
        if not cookie_headers:
            return NO_COOKIE
        name = self._name
        rewritten: list[bytes] = []
        changed = False
        chosen: _Verdict[S] | None = None
        first: _Verdict[S] | None = None
        for header in cookie_headers:
            if name not in header:
                rewritten.append(header)
                continue
            kept: list[bytes] = []
            touched = False
            for n, v, pair in _pairs(header):
                if n != name:
                    kept.append(pair)
                    continue
                if len(pair) > MAX_COOKIE_BYTES:
                    self.counters.oversized += 1
                    verdict = None
                else:
                    verdict = self._judge(v, now, available)
                    if first is None:
                        first = verdict
                    if chosen is None and verdict.state in "VD":
                        chosen = verdict
                if self._strip:
                    touched = True
                elif verdict is not None and verdict.restored is not None:
                    kept.append(name + b"=" + verdict.restored)
                    touched = True
                else:
                    kept.append(pair)
            if touched:
                changed = True
                if kept:
                    rewritten.append(b"; ".join(kept))
            else:
                rewritten.append(header)
        verdict = chosen or first
        if verdict is None:
            return NO_COOKIE if not changed else RequestDecision(cookie_headers=rewritten)
        return RequestDecision(
            state=verdict.state,
            server=verdict.server,
            server_cookie=verdict.server_cookie,
            cookie_headers=rewritten if changed else None,
            app_cookie=verdict.restored,
            last_date=verdict.last_date,
            first_date=verdict.first_date,
            dated=verdict.dated,
        )

    def _judge(
        self, value: bytes, now: float, available: Callable[[S], bool] | None
    ) -> _Verdict[S]:
        restored = None
        dates = b""
        dated = False
        if self._mode == "prefix":
            split = split_prefixed(value)
            if split is None:
                self.counters.invalid += 1
                return _Verdict("I")
            key, restored = split
        elif self._mode == "insert":
            key, bar, dates = _unquote(value).partition(DATE_DELIM)
            dated = bool(bar)
        else:
            key = _unquote(value)
        server = self._servers.get(key)
        if server is None:
            self.counters.invalid += 1
            return _Verdict("I", restored=restored)
        last = first = None
        if self._dated:
            if not dated:
                return _Verdict("O")
            checked = self._check_dates(dates, now)
            if isinstance(checked, str):
                return _Verdict(checked, dated=True)
            last, first = checked
        state = "D" if available is not None and not available(server) else "V"
        return _Verdict(state, server, key, restored, last, first, dated)

    def _check_dates(self, dates: bytes, now: float) -> tuple[int, int | None] | str:
        """The (last, first) dates, or the state of a cookie they disqualify."""
        fields = dates.split(DATE_DELIM)
        last = decode_date(fields[0])
        first = decode_date(fields[1]) if len(fields) == 2 else None
        if (
            len(fields) > 2
            or last is None
            or (len(fields) == 2 and first is None)
            or last > now + DATE_SKEW
            or (first is not None and first > last)
        ):
            self.counters.forged += 1
            return "E"
        maxlife = self.config.maxlife
        maxidle = self.config.maxidle
        if maxlife > 0:
            if first is None:
                return "O"
            if now - first > maxlife:
                return "E"
        if maxidle > 0 and now - last > maxidle:
            return "E"
        return last, first

    # -- response side --

    def on_response(
        self,
        set_cookie_headers: Sequence[bytes],
        chosen_server_cookie: str | None,
        request: RequestDecision[S],
        now: float,
        cache_control: Sequence[bytes] = (),
    ) -> ResponseDecision:
        """Decide the response's cookies.

        ``chosen_server_cookie`` is the cookie value of the server that
        actually answered (after any redispatch), None or "" for a server
        without one; ``request`` is what ``on_request`` returned for this
        request; ``cache_control`` the response's ``Cache-Control`` values.
        """
        name = self._name
        mode = self._mode
        chosen = chosen_server_cookie.encode("ascii") if chosen_server_cookie else b""
        direct = bool(chosen) and request.server_cookie == chosen
        out: list[bytes] = []
        changed = False
        carries = False
        state = "N"
        for header in set_cookie_headers:
            if name not in header or _set_cookie_name(header) != name:
                out.append(header)
                continue
            cookie = parse_set_cookie(header)
            if mode == "insert" or (mode == "rewrite" and self.config.indirect and direct):
                changed = True
                state = "D"
                if cookie is None:
                    self.counters.oversized += 1
                continue
            if cookie is None:
                self.counters.oversized += 1
                out.append(header)
            elif mode == "rewrite" and chosen:
                out.append(cookie.with_value(chosen))
                changed = carries = True
                state = "R"
            elif mode == "prefix" and chosen and cookie.value:
                out.append(cookie.with_value(prefix_value(chosen, cookie.value)))
                changed = carries = True
                state = "R"  # HAProxy logs a prefixed cookie as rewritten
            else:
                out.append(header)
                state = "P"
        if mode == "insert":
            added = self._insertion(chosen, direct, request, now)
            if added is not None:
                out.append(added)
                changed = carries = True
                state = "D" if added is self._delete else "U" if direct else "I"
        if not changed and state == "N":
            return NOTHING
        private = None
        if carries and self.config.nocache:
            private = make_private(cache_control)
        return ResponseDecision(
            state=state,
            set_cookie_headers=out if changed else None,
            cache_control=private,
            uncacheable=carries and self.config.nocache,
        )

    def _insertion(
        self, chosen: bytes, direct: bool, request: RequestDecision[S], now: float
    ) -> bytes | None:
        """Insert mode's own Set-Cookie, if one is due."""
        if not chosen:
            return self._delete if request.state != "N" else None
        if not direct:
            return self._cookie(chosen, now, None)
        config = self.config
        if not self._dated:
            due = request.dated
        else:
            due = (request.first_date is not None and config.maxlife <= 0) or (
                config.maxidle > 0
                and request.last_date is not None
                and now - request.last_date >= config.maxidle / 4
            )
        return self._cookie(chosen, now, request.first_date) if due else None

    def _cookie(self, server_cookie: bytes, now: float, first: int | None) -> bytes:
        value = server_cookie
        if self._dated:
            value += DATE_DELIM + encode_date(now)
            if self.config.maxlife > 0:
                value += DATE_DELIM + encode_date(now if first is None else first)
        return self._name + b"=" + value + self._insert_tail
