"""Stick tables: learned persistence, key -> server (HAProxy's stick_table.c).

The article's "Persistence" section: when the application's session cannot be
told from the request itself, the load balancer learns the association (the
client's address, or the session cookie the server set) and sends the user's
later requests to the same server. A ``StickTable`` holds those associations:

- **Entry**: key -> server id (the server's numeric ``id``, HAProxy's
  ``server_id`` data type), plus the time the entry expires.
- **Idle expiry**: an entry lives ``expire`` seconds after its last access
  (``lookup`` and ``learn`` both refresh it). An expired entry is never
  returned; it is dropped when met (``lookup``, ``learn``) or by ``purge``,
  which works from the least recently used end in bounded steps.
- **Size**: at most ``size`` entries; storing a new key in a full table evicts
  the least recently used entry (HAProxy evicts the oldest-expiring one, which
  is the same thing with one ``expire`` per table).
- **Update log**: every local change gets an update id from a counter that
  only grows; ``changes_since`` returns the entries changed after a given id in
  id order. Each entry sits once in the log at its latest id (HAProxy's
  "updates" tree): an entry changed twice is found once, at its last id. The
  peers protocol (ha/sync, issue 6) pushes the log to the other node;
  ``on_local_change``, when set, is called after each change to it with the
  new update id, the key (as stored) and the server id.

Key types, as HAProxy's ``stick-table type``:

- ``"string"``: stored as bytes; a ``str`` is encoded as UTF-8. Keys longer
  than ``key_len`` bytes (default 32, HAProxy's ``len 32``) are truncated, as
  HAProxy does, both when stored and when looked up: two keys that share their
  first ``key_len`` bytes are the same entry.
- ``"ipv4"``: an address as ``str`` or ``ipaddress`` object, stored as an int.
  An IPv4-mapped IPv6 address (``::ffff:198.18.0.1``) counts as its IPv4
  address; any other IPv6 address raises ``ValueError``.
- ``"ipv6"``: stored as an int; an IPv4 address is stored as its IPv4-mapped
  IPv6 address (HAProxy's ipv4 -> ipv6 conversion), so both spellings match.
- ``"integer"``: a 32-bit unsigned key; other ints are reduced modulo 2**32,
  as HAProxy casts its 64-bit samples.

A key that cannot be converted raises ``ValueError`` or ``TypeError`` naming
the table. Keys come back (iteration, ``changes_since``) as bytes,
``IPv4Address``, ``IPv6Address`` or int.

What gets logged (and so pushed to peers):

- a new entry, or an entry whose server changed: always;
- a pure refresh (``lookup`` with ``touch``, ``learn`` of the same server):
  only when the entry's last logged update is at least ``refresh_interval``
  seconds old (default ``expire / 8``; 0 logs every refresh, like HAProxy).
  The peer needs refreshes only coarsely: they keep its copy of an entry in
  use here from expiring, and its copy then expires at most
  ``refresh_interval`` before ours;
- ``apply_remote`` (an update received from a peer): never; such entries are
  kept out of the local log so they are not pushed back.
  ``changes_since(..., include_remote=True)`` includes them, for teaching a
  peer the whole table (full resync);
- ``remove``, ``clear``, expiry and eviction: never (the peers protocol has no
  delete; each node expires entries by itself).

Update ids are plain ints, 1, 2, 3, ..., strictly increasing and never reused
(also across ``clear``), with gaps: ids taken by ``apply_remote`` are not in
the local log. The peers protocol carries 32-bit ids: its wire view of an id
is ``update_id & 0xFFFFFFFF``, and two wire ids are compared with serial
number arithmetic (``a`` is after ``b`` when ``(a - b) & 0xFFFFFFFF`` is
between 1 and 2**31 - 1), as HAProxy does; within the table no wrap happens.

Layout, for memory (1,000,000 string keys must fit in 250 MB, issue 3): one
dict key -> slot number, and per-slot parallel arrays (``array`` module) for
the server id, expiry, update id, and the links of two doubly linked lists
threaded through the slots: the LRU order, and the update log (local and
learned-from-peer entries on separate lists). No object per entry besides the
key and its slot number. Sans-io: time comes from ``clock`` (injectable).
Not thread-safe; it lives in the proxy's event loop.
"""

from __future__ import annotations

import operator
import socket
import time
from array import array
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import NamedTuple

KEY_TYPES = ("string", "ipv4", "ipv6", "integer")
MAX_SERVER_ID = 0x7FFFFFFF  # HAProxy's server ids are signed 32-bit ints
NIL = -1  # "no slot" in the linked lists
_HINTS = 32  # resume points remembered by changes_since (one or two per peer)
_GROW = 256  # slots added at a time when the table needs more
_V4_MAPPED = 0xFFFF << 32

Key = bytes | int
KeyInput = str | bytes | bytearray | memoryview | int | IPv4Address | IPv6Address
PublicKey = bytes | int | IPv4Address | IPv6Address


class Entry(NamedTuple):
    """One live entry, as ``show table`` lists it."""

    key: PublicKey
    server_id: int
    expires_in: float  # seconds until it expires unless used again


class Change(NamedTuple):
    """One entry of the update log, in its latest state."""

    update_id: int
    key: PublicKey
    server_id: int
    expires_in: float  # seconds; the peer stores the entry for that long


def _unlink(prev: array, nxt: array, ends: list[int], slot: int) -> None:
    p, n = prev[slot], nxt[slot]
    if p == NIL:
        ends[0] = n
    else:
        nxt[p] = n
    if n == NIL:
        ends[1] = p
    else:
        prev[n] = p


def _append(prev: array, nxt: array, ends: list[int], slot: int) -> None:
    tail = ends[1]
    prev[slot] = tail
    nxt[slot] = NIL
    if tail == NIL:
        ends[0] = slot
    else:
        nxt[tail] = slot
    ends[1] = slot


class StickTable:
    """A stick table: see the module docstring for the rules."""

    def __init__(
        self,
        name: str,
        key_type: str,
        size: int,
        expire: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        key_len: int = 32,
        refresh_interval: float | None = None,
    ) -> None:
        if key_type not in KEY_TYPES:
            raise ValueError(
                f"stick table {name}: unknown key type {key_type!r} "
                f"(expected one of {', '.join(KEY_TYPES)})"
            )
        if size < 1:
            raise ValueError(f"stick table {name}: size must be at least 1, not {size}")
        if not expire > 0:
            raise ValueError(f"stick table {name}: expire must be positive, not {expire}")
        if key_len < 1:
            raise ValueError(f"stick table {name}: key length must be at least 1, not {key_len}")
        self.name = name
        self.key_type = key_type
        self.size = size
        self.expire = float(expire)
        self.key_len = key_len
        self.refresh_interval = expire / 8 if refresh_interval is None else refresh_interval
        self._clock = clock
        self._key: Callable[[KeyInput], Key] = getattr(self, f"_{key_type}_key")
        self._public: Callable[[Key], PublicKey] = {
            "ipv4": IPv4Address,
            "ipv6": IPv6Address,
        }.get(key_type, _same)
        self._next_id = 0  # last update id handed out, local or remote
        self.update_id = 0  # last update id in the local log
        self.evicted = 0  # live entries dropped because the table was full
        self.expired = 0  # entries dropped because they had expired
        # Called after each change to the local log: the sync service pushes the change to the
        # peers at once, before the proxy forwards the response it was learned from.
        self.on_local_change: Callable[[int, Key, int], None] | None = None
        self._reset()

    def _reset(self) -> None:
        self._slots: dict[Key, int] = {}
        self._keys: list[Key | None] = []  # slot -> key, None for a free slot
        self._free: list[int] = []
        self._server = array("i")
        self._expires = array("d")  # clock time at which the entry expires
        self._logged = array("d")  # clock time of the entry's last update id
        self._uid = array("Q")  # the entry's last update id; 0 for a free slot
        self._remote = bytearray()  # 1: on the learned-from-peer list, else on the local log
        self._lru_prev = array("i")
        self._lru_next = array("i")
        self._upd_prev = array("i")
        self._upd_next = array("i")
        self._lru = [NIL, NIL]  # head (least recently used), tail
        self._local = [NIL, NIL]  # update log of local changes: oldest id, newest id
        self._learned = [NIL, NIL]  # entries last written by apply_remote, by id
        self._hints: dict[tuple[int, int], tuple[int, int]] = {}

    # -- keys ---------------------------------------------------------------------------------

    def _string_key(self, key: KeyInput) -> Key:
        if type(key) is bytes:  # the usual case, first
            return key[: self.key_len]
        if isinstance(key, str):
            key = key.encode()
        elif isinstance(key, bytearray | memoryview):
            key = bytes(key)
        elif not isinstance(key, bytes):
            raise TypeError(f"stick table {self.name}: string key expected, not {key!r}")
        return key[: self.key_len]

    def _ipv4_key(self, key: KeyInput) -> Key:
        # inet_pton is a pure conversion (no I/O), and much faster than ipaddress for the common
        # case of the proxy's peer address as text.
        if isinstance(key, str):
            try:
                return int.from_bytes(socket.inet_pton(socket.AF_INET, key), "big")
            except OSError:
                key = self._parse_address(key)
        if isinstance(key, IPv6Address) and key.ipv4_mapped is not None:
            key = key.ipv4_mapped
        if isinstance(key, IPv4Address):
            return int(key)
        raise ValueError(f"stick table {self.name}: not an IPv4 address: {key!r}")

    def _ipv6_key(self, key: KeyInput) -> Key:
        if isinstance(key, str):
            try:
                return int.from_bytes(socket.inet_pton(socket.AF_INET6, key), "big")
            except OSError:
                key = self._parse_address(key)
        if isinstance(key, IPv6Address):
            return int(key)
        if isinstance(key, IPv4Address):
            return _V4_MAPPED | int(key)
        raise ValueError(f"stick table {self.name}: not an IP address: {key!r}")

    def _integer_key(self, key: KeyInput) -> Key:
        try:
            return operator.index(key) & 0xFFFFFFFF
        except TypeError:
            raise TypeError(f"stick table {self.name}: integer key expected, not {key!r}") from None

    def _parse_address(self, text: str) -> IPv4Address | IPv6Address:
        try:
            return ip_address(text)
        except ValueError:
            raise ValueError(f"stick table {self.name}: not an IP address: {text!r}") from None

    # -- the entries --------------------------------------------------------------------------

    def lookup(self, key: KeyInput, touch: bool = True) -> int | None:
        """The server id stored for ``key``, or None if there is none or it expired.

        With ``touch`` (the default) a hit counts as a use: the entry's idle time restarts and it
        becomes the most recently used.
        """
        k = self._key(key)
        slot = self._slots.get(k)
        if slot is None:
            return None
        now = self._clock()
        if self._expires[slot] <= now:
            self._drop(k, slot)
            self.expired += 1
            return None
        if touch:
            self._touch(slot, now)
            if now - self._logged[slot] >= self.refresh_interval:
                self._log(slot, now, self._local)
        return self._server[slot]

    def learn(self, key: KeyInput, server_id: int) -> None:
        """Store ``key`` -> ``server_id`` (insert, change of server, or refresh)."""
        if not 0 <= server_id <= MAX_SERVER_ID:
            self._check_server(server_id)
        k = self._key(key)
        now = self._clock()
        slot = self._slots.get(k)
        if slot is not None and self._expires[slot] <= now:
            self._drop(k, slot)
            self.expired += 1
            slot = None
        if slot is None:
            slot = self._insert(k, server_id, now + self.expire)
        elif self._server[slot] != server_id:
            self._server[slot] = server_id
            self._touch(slot, now)
        else:
            self._touch(slot, now)
            if now - self._logged[slot] < self.refresh_interval:
                return
        self._log(slot, now, self._local)

    def apply_remote(self, key: KeyInput, server_id: int, expire_ms: int | None = None) -> None:
        """Store an update received from a peer, without logging it for a push.

        ``expire_ms`` is the entry's remaining time as the peer sent it (timed updates), capped
        at this table's ``expire``; None means this table's ``expire``. An update already
        expired (``expire_ms <= 0``) changes nothing. Size limit and eviction apply as for
        ``learn``.
        """
        if not 0 <= server_id <= MAX_SERVER_ID:
            self._check_server(server_id)
        k = self._key(key)
        now = self._clock()
        lifetime = self.expire if expire_ms is None else min(expire_ms / 1000, self.expire)
        if lifetime <= 0:
            return
        slot = self._slots.get(k)
        if slot is None:
            slot = self._insert(k, server_id, now + lifetime)
        else:
            self._server[slot] = server_id
            self._expires[slot] = now + lifetime
            _unlink(self._lru_prev, self._lru_next, self._lru, slot)
            _append(self._lru_prev, self._lru_next, self._lru, slot)
        self._log(slot, now, self._learned)

    def entry(self, key: KeyInput) -> Entry | None:
        """The live entry for ``key``, without counting as a use (``show table NAME key K``)."""
        k = self._key(key)
        found = self.find(k)
        return None if found is None else Entry(self._public(k), *found)

    def find(self, key: Key) -> tuple[int, float] | None:
        """(server id, seconds left) of the live entry for ``key`` as the table holds it (for a
        string table: bytes, at most ``key_len`` long), without counting as a use."""
        slot = self._slots.get(key)
        if slot is None:
            return None
        remaining = self._expires[slot] - self._clock()
        return (self._server[slot], remaining) if remaining > 0 else None

    def remove(self, key: KeyInput) -> bool:
        """Drop the entry for ``key`` (locally only); whether there was one."""
        k = self._key(key)
        slot = self._slots.get(k)
        if slot is None:
            return False
        self._drop(k, slot)
        return True

    def clear(self) -> None:
        """Drop every entry (locally only). Update ids keep growing from where they were."""
        self._reset()

    def purge(self, now: float | None = None, max_entries: int = 1000) -> int:
        """Drop up to ``max_entries`` expired entries, least recently used first.

        Returns how many were dropped. Call it periodically (e.g. every second) so that a large
        table never stalls the event loop; as long as it returns ``max_entries`` there may be
        more. An entry a peer sent with a shorter life than its neighbours' is not reached until
        those expire too; it is still never returned.
        """
        if now is None:
            now = self._clock()
        dropped = 0
        expires, lru = self._expires, self._lru
        while dropped < max_entries and lru[0] != NIL and expires[lru[0]] <= now:
            slot = lru[0]
            self._drop(self._keys[slot], slot)
            dropped += 1
        self.expired += dropped
        return dropped

    def __len__(self) -> int:
        """Entries held, including expired ones not yet dropped."""
        return len(self._slots)

    def __iter__(self) -> Iterator[Entry]:
        """Live entries, least recently used first. Do not change the table while iterating."""
        now = self._clock()
        slot = self._lru[0]
        while slot != NIL:
            remaining = self._expires[slot] - now
            if remaining > 0:
                yield Entry(self._public(self._keys[slot]), self._server[slot], remaining)
            slot = self._lru_next[slot]

    # -- the update log -----------------------------------------------------------------------

    def changes_since(
        self, update_id: int, limit: int = 1000, include_remote: bool = False
    ) -> list[Change]:
        """Up to ``limit`` live entries whose last update id is above ``update_id``, by id.

        Each entry appears once, in its current state. Without ``include_remote`` only local
        changes (what to push to peers); with it also entries learned from peers (what to teach
        a peer that asks for a full resync). Streaming the log by passing the last id returned
        resumes in constant time; another starting id costs a walk from the nearer end of the
        log.
        """
        public = self._public
        return [
            Change(uid, public(key), server_id, left)
            for uid, key, server_id, left in self.log_since(update_id, limit, include_remote)
        ]

    def log_since(
        self, update_id: int, limit: int = 1000, include_remote: bool = False
    ) -> list[tuple[int, Key, int, float]]:
        """``changes_since`` as plain tuples (update id, key, server id, seconds left), with the
        key as the table stores it: bytes for a string key, an int for the other types. What
        the sync push encodes, without an object per entry."""
        now = self._clock()
        uid, nxt, expires = self._uid, self._upd_next, self._expires
        keys, server = self._keys, self._server
        lists = (self._local, self._learned) if include_remote else (self._local,)
        cursors = [self._seek(which, ends, update_id) for which, ends in enumerate(lists)]
        visited = [NIL] * len(lists)
        changes: list[tuple[int, Key, int, float]] = []
        if len(lists) == 1:
            slot = cursors[0]
            while slot != NIL and len(changes) < limit:
                left = expires[slot] - now
                if left > 0:
                    changes.append((uid[slot], keys[slot], server[slot], left))  # type: ignore[arg-type]
                visited[0] = slot
                slot = nxt[slot]
        else:
            while len(changes) < limit:
                live = [i for i, slot in enumerate(cursors) if slot != NIL]
                if not live:
                    break
                which = min(live, key=lambda i: uid[cursors[i]])
                slot = cursors[which]
                left = expires[slot] - now
                if left > 0:
                    changes.append((uid[slot], keys[slot], server[slot], left))  # type: ignore[arg-type]
                visited[which] = slot
                cursors[which] = nxt[slot]
        self._remember(changes[-1][0] if changes else update_id, visited)
        return changes

    def _seek(self, which: int, ends: list[int], update_id: int) -> int:
        """The first slot of list ``ends`` whose update id is above ``update_id``, or NIL."""
        uid = self._uid
        hint = self._hints.get((which, update_id))
        if hint is not None and uid[hint[0]] == hint[1]:
            return self._upd_next[hint[0]]
        head, tail = ends
        if head == NIL or uid[tail] <= update_id:
            return NIL
        if uid[head] > update_id:
            return head
        if update_id - uid[head] < uid[tail] - update_id:
            slot = head
            while uid[slot] <= update_id:
                slot = self._upd_next[slot]
            return slot
        slot = tail
        while uid[self._upd_prev[slot]] > update_id:
            slot = self._upd_prev[slot]
        return slot

    def _remember(self, update_id: int, visited: list[int]) -> None:
        """Note where a walk stopped: the next call with ``update_id`` resumes after it.

        Valid while the slot keeps its update id: entries only ever join a list at its end with a
        new id, so nothing can appear between that slot and the one after it with an id at or
        below ``update_id``.
        """
        if len(self._hints) >= _HINTS:
            self._hints.clear()
        for which, slot in enumerate(visited):
            if slot != NIL:
                self._hints[which, update_id] = (slot, self._uid[slot])

    # -- slots and lists ----------------------------------------------------------------------

    def _check_server(self, server_id: int) -> None:
        if not 0 <= server_id <= MAX_SERVER_ID:
            raise ValueError(f"stick table {self.name}: server id {server_id} out of range")

    def _touch(self, slot: int, now: float) -> None:
        self._expires[slot] = now + self.expire
        if self._lru[1] != slot:
            _unlink(self._lru_prev, self._lru_next, self._lru, slot)
            _append(self._lru_prev, self._lru_next, self._lru, slot)

    def _log(self, slot: int, now: float, ends: list[int]) -> None:
        """Give ``slot`` the next update id and move it to the end of list ``ends``."""
        self._next_id += 1
        if self._uid[slot]:
            _unlink(self._upd_prev, self._upd_next, self._update_list(slot), slot)
        _append(self._upd_prev, self._upd_next, ends, slot)
        self._uid[slot] = self._next_id
        self._logged[slot] = now
        if ends is self._local:
            self._remote[slot] = 0
            self.update_id = self._next_id
            if self.on_local_change is not None:
                self.on_local_change(self._next_id, self._keys[slot], self._server[slot])  # type: ignore[arg-type]
        else:
            self._remote[slot] = 1

    def _update_list(self, slot: int) -> list[int]:
        return self._learned if self._remote[slot] else self._local

    def _insert(self, k: Key, server_id: int, expires: float) -> int:
        if len(self._slots) >= self.size:
            head = self._lru[0]
            if self._expires[head] <= self._clock():
                self.expired += 1
            else:
                self.evicted += 1
            self._drop(self._keys[head], head)
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self._keys[slot] = k
        self._server[slot] = server_id
        self._expires[slot] = expires
        self._slots[k] = slot
        _append(self._lru_prev, self._lru_next, self._lru, slot)
        return slot

    def _grow(self) -> None:
        """Add up to ``_GROW`` free slots (never beyond ``size``), the lowest to be used first."""
        start = len(self._keys)
        n = max(1, min(_GROW, self.size - start))
        self._keys.extend([None] * n)
        for numbers in (self._server, self._expires, self._logged, self._uid):
            numbers.frombytes(bytes(n * numbers.itemsize))  # zeros
        self._remote.extend(bytes(n))
        nil = array("i", [NIL]) * n
        for links in (self._lru_prev, self._lru_next, self._upd_prev, self._upd_next):
            links.extend(nil)
        self._free.extend(range(start + n - 1, start - 1, -1))

    def _drop(self, k: Key, slot: int) -> None:
        del self._slots[k]
        _unlink(self._lru_prev, self._lru_next, self._lru, slot)
        _unlink(self._upd_prev, self._upd_next, self._update_list(slot), slot)
        self._uid[slot] = 0
        self._keys[slot] = None
        self._free.append(slot)


def _same(key: Key) -> PublicKey:
    return key
