"""Stick tables (appliance/persist/table.py): learned persistence, expiry, LRU, update log.

Time is a fake clock that tests move by hand; times and durations are binary fractions so that
expiry comparisons are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.persist.table import Change, Entry, StickTable

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_table(
    key_type: str = "string", size: int = 100, expire: float = 10.0, **kwargs
) -> tuple[StickTable, FakeClock]:
    clock = FakeClock()
    return StickTable("app", key_type, size, expire, clock, **kwargs), clock


# -- entries and expiry ---------------------------------------------------------------------------


def test_lookup_returns_the_learned_server_and_none_for_unknown_keys():
    table, _ = make_table()
    table.learn("abc", 3)
    assert table.lookup("abc") == 3
    assert table.lookup("abd") is None
    assert len(table) == 1


def test_learn_changes_the_server_of_an_existing_entry():
    table, _ = make_table()
    table.learn("abc", 3)
    table.learn("abc", 4)
    assert table.lookup("abc") == 4
    assert len(table) == 1


def test_lookup_restarts_the_idle_time():
    table, clock = make_table(expire=10.0)
    table.learn("abc", 1)
    for _ in range(5):  # 40 s in all, never 10 s idle
        clock.advance(8.0)
        assert table.lookup("abc") == 1
    clock.advance(10.0)
    assert table.lookup("abc") is None


def test_lookup_without_touch_does_not_refresh():
    table, clock = make_table(expire=10.0)
    table.learn("abc", 1)
    clock.advance(8.0)
    assert table.lookup("abc", touch=False) == 1
    clock.advance(2.0)
    assert table.lookup("abc", touch=False) is None


def test_expired_entries_are_never_returned_nor_listed():
    table, clock = make_table(expire=10.0)
    table.learn("old", 1)
    clock.advance(6.0)
    table.learn("new", 2)
    clock.advance(4.0)  # "old" idle for exactly 10 s: expired
    assert [entry.key for entry in table] == [b"new"]
    assert len(table) == 2  # held until met or purged
    assert table.lookup("old") is None
    assert len(table) == 1
    assert table.expired == 1


def test_learning_an_expired_key_starts_a_new_entry():
    table, clock = make_table(expire=10.0)
    table.learn("abc", 1)
    clock.advance(10.0)
    table.learn("abc", 1)
    assert list(table) == [Entry(b"abc", 1, 10.0)]


def test_purge_is_bounded_and_stops_at_the_first_live_entry():
    table, clock = make_table(size=1000, expire=10.0)
    for i in range(100):
        table.learn(f"k{i}", 1)
    clock.advance(5.0)
    table.learn("live", 2)
    clock.advance(5.0)  # the 100 first ones expire, "live" does not
    assert table.purge(max_entries=30) == 30
    assert len(table) == 71
    assert table.purge(max_entries=1000) == 70
    assert table.purge() == 0
    assert list(table) == [Entry(b"live", 2, 5.0)]
    assert table.expired == 100


def test_purge_takes_the_time_it_is_given():
    table, clock = make_table(expire=10.0)
    table.learn("abc", 1)
    assert table.purge(now=clock.now + 9.5) == 0
    assert table.purge(now=clock.now + 10.0) == 1


def test_iteration_lists_live_entries_least_recently_used_first():
    table, clock = make_table(expire=10.0)
    table.learn("a", 1)
    clock.advance(1.0)
    table.learn("b", 2)
    clock.advance(1.0)
    table.lookup("a")
    assert list(table) == [Entry(b"b", 2, 9.0), Entry(b"a", 1, 10.0)]


# -- size limit -----------------------------------------------------------------------------------


def test_a_full_table_evicts_the_least_recently_used_entry():
    table, clock = make_table(size=3)
    for key in "abc":
        table.learn(key, 1)
        clock.advance(1.0)
    table.lookup("a")  # now b is the least recently used
    table.learn("d", 2)
    assert [entry.key for entry in table] == [b"c", b"a", b"d"]
    table.learn("c", 3)  # a store is a use too
    table.learn("e", 2)
    assert [entry.key for entry in table] == [b"d", b"c", b"e"]
    assert table.evicted == 2
    assert len(table) == 3


def test_eviction_of_an_expired_entry_counts_as_expiry():
    table, clock = make_table(size=1, expire=10.0)
    table.learn("a", 1)
    clock.advance(20.0)
    table.learn("b", 1)
    assert (table.evicted, table.expired) == (0, 1)


def test_peer_updates_obey_the_size_limit():
    table, _ = make_table(size=2)
    table.learn("a", 1)
    table.apply_remote("b", 2)
    table.apply_remote("c", 3)
    assert [entry.key for entry in table] == [b"b", b"c"]


# -- the update log -------------------------------------------------------------------------------


def test_update_ids_increase_strictly():
    table, _ = make_table()
    seen = []
    for i in range(20):
        table.learn(f"k{i % 7}", i)  # every store changes the server: always logged
        seen.append(table.update_id)
    assert seen == sorted(set(seen))
    assert seen[0] > 0


def test_changes_since_lists_changes_in_order_each_entry_once_at_its_latest_id():
    table, _ = make_table()
    table.learn("a", 1)
    table.learn("b", 2)
    table.learn("c", 3)
    table.learn("a", 4)  # moves to the end of the log
    changes = table.changes_since(0)
    assert [(c.key, c.server_id) for c in changes] == [(b"b", 2), (b"c", 3), (b"a", 4)]
    assert [c.update_id for c in changes] == [2, 3, 4]
    assert changes[-1].update_id == table.update_id
    assert changes[0] == Change(2, b"b", 2, 10.0)


def test_log_since_is_changes_since_with_keys_as_stored():
    table, clock = make_table("ipv4")
    table.learn("198.18.0.1", 1)
    clock.advance(2)
    table.learn("198.18.0.2", 2)
    table.apply_remote("198.18.0.3", 1)
    assert table.log_since(0) == [(1, 0xC6120001, 1, 8.0), (2, 0xC6120002, 2, 10.0)]
    assert table.log_since(0, include_remote=True)[-1] == (3, 0xC6120003, 1, 10.0)
    assert [Change(u, IPv4Address(k), s, left) for u, k, s, left in table.log_since(0)] == (
        table.changes_since(0)
    )


def test_changes_since_starts_after_the_id_given_and_stops_at_the_limit():
    table, _ = make_table()
    for i in range(10):
        table.learn(f"k{i}", i)
    assert [c.update_id for c in table.changes_since(4, limit=3)] == [5, 6, 7]
    assert [c.update_id for c in table.changes_since(8)] == [9, 10]
    assert table.changes_since(10) == []
    assert table.changes_since(99) == []


def test_streaming_the_log_in_batches_sees_every_entry_once():
    table, _ = make_table(size=1000)
    for i in range(250):
        table.learn(f"k{i}", 1)
    cursor, seen = 0, []
    while batch := table.changes_since(cursor, limit=40):
        seen += [c.key for c in batch]
        cursor = batch[-1].update_id
    assert seen == [f"k{i}".encode() for i in range(250)]


def test_an_entry_changed_while_streaming_is_seen_again_at_the_end():
    table, _ = make_table()
    for key in "abcde":
        table.learn(key, 1)
    first = table.changes_since(0, limit=2)  # a, b
    table.learn("a", 2)  # behind the cursor: comes again
    table.learn("d", 2)  # ahead of the cursor: seen once, in its new place
    rest = table.changes_since(first[-1].update_id)
    assert [(c.key, c.server_id) for c in rest] == [(b"c", 1), (b"e", 1), (b"a", 2), (b"d", 2)]


def test_streaming_resumes_right_when_the_last_entry_returned_changed_or_went():
    table, _ = make_table()
    for key in "abcde":
        table.learn(key, 1)
    first = table.changes_since(0, limit=2)  # a, b: the stream resumes after b's place
    table.learn("b", 2)  # b moves to the end of the log
    assert [c.key for c in table.changes_since(first[-1].update_id)] == [b"c", b"d", b"e", b"b"]

    second = table.changes_since(0, limit=3)  # a, c, d
    table.remove("d")
    table.learn("f", 1)  # takes d's slot
    rest = table.changes_since(second[-1].update_id)
    assert [c.key for c in rest] == [b"e", b"b", b"f"]

    third = table.changes_since(0, limit=2)  # a, c
    table.remove("c")  # its slot stays free
    table.learn("e", 2)  # moves from right after c's place to the end
    assert [c.key for c in table.changes_since(third[-1].update_id)] == [b"b", b"f", b"e"]


def test_changes_since_skips_expired_entries():
    table, clock = make_table(expire=10.0)
    table.learn("a", 1)
    clock.advance(5.0)
    table.learn("b", 1)
    clock.advance(5.0)
    assert [c.key for c in table.changes_since(0)] == [b"b"]


def test_a_pure_refresh_is_logged_only_after_the_refresh_interval():
    table, clock = make_table(expire=80.0)  # refresh_interval defaults to expire / 8
    assert table.refresh_interval == 10.0
    table.learn("a", 1)
    table.learn("b", 1)
    clock.advance(5.0)
    table.lookup("a")
    table.learn("b", 1)
    assert table.update_id == 2  # both refreshes too soon: not logged
    clock.advance(5.0)
    table.lookup("a")
    assert table.update_id == 3
    assert [c.key for c in table.changes_since(2)] == [b"a"]
    table.lookup("a", touch=False)
    clock.advance(10.0)
    table.lookup("a", touch=False)
    assert table.update_id == 3  # not a use, never logged


def test_refresh_interval_zero_logs_every_refresh():
    table, _ = make_table(refresh_interval=0)
    table.learn("a", 1)
    table.lookup("a")
    table.learn("a", 1)
    assert table.update_id == 3


def test_remove_clear_expiry_and_eviction_leave_the_log_alone():
    table, clock = make_table(size=2, expire=10.0)
    table.learn("a", 1)
    table.learn("b", 1)
    table.learn("c", 1)  # evicts a
    assert table.remove("b")
    clock.advance(10.0)
    table.purge()
    assert table.update_id == 3
    table.clear()
    assert len(table) == 0 and table.changes_since(0) == []
    table.learn("d", 1)
    assert table.update_id == 4  # ids never restart


def test_remote_updates_are_not_logged_for_pushing():
    table, clock = make_table(expire=10.0)
    table.learn("local", 1)
    table.apply_remote("peer", 2)
    assert table.lookup("peer") == 2
    assert table.update_id == 1
    assert [c.key for c in table.changes_since(0)] == [b"local"]


def test_a_remote_update_of_a_local_entry_takes_it_out_of_the_log():
    table, _ = make_table()
    table.learn("a", 1)
    table.learn("b", 1)
    table.apply_remote("a", 2)
    assert [c.key for c in table.changes_since(0)] == [b"b"]
    assert table.lookup("a", touch=False) == 2


def test_a_local_change_of_a_remote_entry_is_logged():
    table, _ = make_table()
    table.apply_remote("a", 2)
    table.learn("a", 3)
    assert [(c.key, c.server_id) for c in table.changes_since(0)] == [(b"a", 3)]


def test_a_remote_entry_in_use_here_is_pushed_after_the_refresh_interval():
    table, clock = make_table(expire=80.0)
    table.apply_remote("a", 2)
    clock.advance(9.0)
    table.lookup("a")
    assert table.changes_since(0) == []
    clock.advance(1.0)
    table.lookup("a")
    assert [c.key for c in table.changes_since(0)] == [b"a"]


def test_full_resync_lists_local_and_remote_entries_in_id_order():
    table, _ = make_table()
    table.learn("a", 1)
    table.apply_remote("b", 2)
    table.learn("c", 3)
    table.apply_remote("d", 4)
    table.learn("b", 5)  # a remote entry changed here: now local
    everything = table.changes_since(0, include_remote=True)
    assert [c.key for c in everything] == [b"a", b"c", b"d", b"b"]
    assert [c.update_id for c in everything] == [1, 3, 4, 5]
    cursor, seen = 0, []
    while batch := table.changes_since(cursor, limit=1, include_remote=True):
        seen += batch
        cursor = batch[-1].update_id
    assert seen == everything


def test_remote_expiry_is_the_peers_capped_at_the_tables():
    table, clock = make_table(expire=10.0)
    table.apply_remote("short", 1, expire_ms=2500)
    table.apply_remote("long", 1, expire_ms=60_000)
    table.apply_remote("default", 1)
    table.apply_remote("dead", 1, expire_ms=0)
    assert {e.key: e.expires_in for e in table} == {b"short": 2.5, b"long": 10.0, b"default": 10.0}
    clock.advance(2.5)
    assert table.lookup("short") is None


def test_a_cursor_taken_elsewhere_in_the_log_is_found_from_either_end():
    table, _ = make_table(size=1000)
    for i in range(100):
        table.learn(f"k{i}", 1)
    for i in range(0, 100, 2):  # ids 101..150, the odd keys keep 2, 4, ..., 100
        table.learn(f"k{i}", 2)
    for cursor in (0, 1, 2, 3, 50, 51, 99, 100, 101, 120, 149, 150):
        expected = sorted(c.update_id for c in table.changes_since(0) if c.update_id > cursor)
        assert [c.update_id for c in table.changes_since(cursor, limit=500)] == expected


# -- keys -----------------------------------------------------------------------------------------


def test_string_keys_are_bytes_and_str_is_utf8():
    table, _ = make_table()
    table.learn("café", 1)
    assert table.lookup("café".encode()) == 1
    assert table.lookup(bytearray("café".encode())) == 1
    assert next(iter(table)).key == "café".encode()


def test_long_string_keys_are_truncated_like_haproxy():
    table, _ = make_table(key_len=8)
    table.learn("0123456789", 1)
    assert table.lookup("01234567") == 1
    assert table.lookup("01234567-anything") == 1
    assert [e.key for e in table] == [b"01234567"]
    table32, _ = make_table()
    table32.learn("x" * 40, 2)
    assert [e.key for e in table32] == [b"x" * 32]


def test_ipv4_keys_accept_text_objects_and_mapped_ipv6():
    table, _ = make_table("ipv4")
    table.learn("198.18.0.1", 1)
    assert table.lookup(IPv4Address("198.18.0.1")) == 1
    assert table.lookup("::ffff:198.18.0.1") == 1
    assert table.lookup(IPv6Address("::ffff:198.18.0.1")) == 1
    assert table.lookup("198.18.0.2") is None
    assert next(iter(table)).key == IPv4Address("198.18.0.1")
    for bad in ("2001:db8::1", "not-an-address", "198.18.0.256"):
        with pytest.raises(ValueError, match="stick table app"):
            table.learn(bad, 1)


def test_ipv6_keys_store_ipv4_as_mapped_addresses():
    table, _ = make_table("ipv6")
    table.learn("2001:db8::1", 1)
    table.learn("198.18.0.1", 2)
    assert table.lookup(IPv6Address("2001:db8::1")) == 1
    assert table.lookup("2001:db8:0:0::1") == 1
    assert table.lookup("::ffff:198.18.0.1") == 2
    assert table.lookup(IPv4Address("198.18.0.1")) == 2
    assert [e.key for e in table] == [IPv6Address("2001:db8::1"), IPv6Address("::ffff:198.18.0.1")]
    with pytest.raises(ValueError, match="stick table app"):
        table.lookup("::zz")


def test_integer_keys_are_32_bit_unsigned_like_haproxy():
    table, _ = make_table("integer")
    table.learn(7, 1)
    table.learn(-1, 2)
    assert table.lookup(7 + 2**32) == 1
    assert table.lookup(2**32 - 1) == 2
    assert sorted(e.key for e in table) == [7, 2**32 - 1]
    with pytest.raises(TypeError, match="stick table app"):
        table.learn("7", 1)


def test_string_tables_refuse_other_key_types():
    table, _ = make_table()
    with pytest.raises(TypeError, match="stick table app"):
        table.learn(5, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cookie", 10, 1.0), "unknown key type"),
        (("string", 0, 1.0), "size"),
        (("string", 10, 0), "expire"),
    ],
)
def test_bad_table_definitions_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        StickTable("app", *args)


def test_server_ids_must_fit_haproxys_32_bits():
    table, _ = make_table()
    for bad in (-1, 2**31):
        with pytest.raises(ValueError, match=f"server id {bad}"):
            table.learn("a", bad)
        with pytest.raises(ValueError, match=f"server id {bad}"):
            table.apply_remote("a", bad)
    assert len(table) == 0


# -- remove and clear -----------------------------------------------------------------------------


def test_remove_drops_one_entry_and_says_whether_it_was_there():
    table, _ = make_table()
    table.learn("a", 1)
    table.learn("b", 2)
    assert table.remove("a") is True
    assert table.remove("a") is False
    assert table.lookup("a") is None
    assert [e.key for e in table] == [b"b"]
    assert [c.key for c in table.changes_since(0)] == [b"b"]


def test_clear_empties_the_table_and_slots_are_reused():
    table, _ = make_table(size=3)
    for key in "abc":
        table.learn(key, 1)
    table.clear()
    assert len(table) == 0 and list(table) == []
    for key in "defg":
        table.learn(key, 2)
    assert [e.key for e in table] == [b"e", b"f", b"g"]
    table.remove("f")
    table.learn("h", 3)
    assert [(e.key, e.server_id) for e in table] == [(b"e", 2), (b"g", 2), (b"h", 3)]


# -- against a reference model --------------------------------------------------------------------


@dataclass
class ModelEntry:
    server_id: int
    expires: float
    logged: float = 0.0
    update_id: int = 0
    remote: bool = False


class Model:
    """The rules, written the obvious way: a dict, an LRU list, timestamps."""

    def __init__(self, size: int, expire: float, refresh: float) -> None:
        self.size, self.expire, self.refresh = size, expire, refresh
        self.entries: dict[bytes, ModelEntry] = {}
        self.lru: list[bytes] = []  # least recently used first
        self.next_id = 0
        self.update_id = 0

    def _drop(self, key: bytes) -> None:
        del self.entries[key]
        self.lru.remove(key)

    def _use(self, key: bytes) -> None:
        self.lru.remove(key)
        self.lru.append(key)

    def _log(self, key: bytes, now: float, remote: bool) -> None:
        self.next_id += 1
        entry = self.entries[key]
        entry.update_id, entry.logged, entry.remote = self.next_id, now, remote
        if not remote:
            self.update_id = self.next_id

    def _insert(self, key: bytes, server_id: int, expires: float) -> None:
        if len(self.entries) >= self.size:
            self._drop(self.lru[0])
        self.entries[key] = ModelEntry(server_id, expires)
        self.lru.append(key)

    def lookup(self, key: bytes, touch: bool, now: float) -> int | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            self._drop(key)
            return None
        if touch:
            entry.expires = now + self.expire
            self._use(key)
            if now - entry.logged >= self.refresh:
                self._log(key, now, remote=False)
        return entry.server_id

    def learn(self, key: bytes, server_id: int, now: float) -> None:
        entry = self.entries.get(key)
        if entry is not None and entry.expires <= now:
            self._drop(key)
            entry = None
        if entry is None:
            self._insert(key, server_id, now + self.expire)
        else:
            changed = entry.server_id != server_id
            entry.server_id, entry.expires = server_id, now + self.expire
            self._use(key)
            if not changed and now - entry.logged < self.refresh:
                return
        self._log(key, now, remote=False)

    def apply_remote(self, key: bytes, server_id: int, expire_ms: int | None, now: float) -> None:
        life = self.expire if expire_ms is None else min(expire_ms / 1000, self.expire)
        if life <= 0:
            return
        if key in self.entries:
            self.entries[key].server_id, self.entries[key].expires = server_id, now + life
            self._use(key)
        else:
            self._insert(key, server_id, now + life)
        self._log(key, now, remote=True)

    def remove(self, key: bytes) -> bool:
        if key not in self.entries:
            return False
        self._drop(key)
        return True

    def purge(self, now: float, max_entries: int) -> int:
        dropped = 0
        while dropped < max_entries and self.lru and self.entries[self.lru[0]].expires <= now:
            self._drop(self.lru[0])
            dropped += 1
        return dropped

    def live(self, now: float) -> list[Entry]:
        return [
            Entry(k, self.entries[k].server_id, self.entries[k].expires - now)
            for k in self.lru
            if self.entries[k].expires > now
        ]

    def changes_since(
        self, update_id: int, limit: int, include_remote: bool, now: float
    ) -> list[Change]:
        found = sorted(
            (e.update_id, k, e.server_id, e.expires - now)
            for k, e in self.entries.items()
            if e.update_id > update_id and e.expires > now and (include_remote or not e.remote)
        )
        return [Change(*row) for row in found[:limit]]


KEYS = st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f"])
SERVERS = st.integers(min_value=1, max_value=3)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("learn"), KEYS, SERVERS),
        st.tuples(st.just("lookup"), KEYS, st.booleans()),
        st.tuples(st.just("remote"), KEYS, SERVERS, st.sampled_from([None, 0, 1500, 4000, 20_000])),
        st.tuples(st.just("remove"), KEYS),
        st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 2.0, 4.0, 9.0])),
        st.tuples(st.just("purge"), st.integers(min_value=0, max_value=3)),
        st.tuples(
            st.just("changes"),
            st.sampled_from(["last", "last", "zero", "other"]),
            st.integers(min_value=0, max_value=40),
            st.integers(min_value=1, max_value=4),
            st.booleans(),
        ),
        st.tuples(st.just("clear")),
    ),
    max_size=60,
)


@settings(max_examples=500, deadline=None)
@given(OPERATIONS)
def test_random_operations_match_the_reference_model(operations):
    clock = FakeClock()
    table = StickTable("app", "string", 4, 8.0, clock, refresh_interval=2.0)
    model = Model(4, 8.0, 2.0)
    cursors = {False: 0, True: 0}  # the last id each kind of stream returned
    for op, *args in operations:
        now = clock.now
        if op == "learn":
            table.learn(*args)
            model.learn(*args, now)
        elif op == "lookup":
            assert table.lookup(*args) == model.lookup(*args, now)
        elif op == "remote":
            table.apply_remote(*args)
            model.apply_remote(*args, now)
        elif op == "remove":
            assert table.remove(*args) == model.remove(*args)
        elif op == "advance":
            clock.advance(*args)
        elif op == "purge":
            assert table.purge(max_entries=args[0]) == model.purge(now, args[0])
        elif op == "changes":
            which, other, limit, remote = args
            cursor = {"last": cursors[remote], "zero": 0, "other": other}[which]
            got = table.changes_since(cursor, limit, include_remote=remote)
            assert got == model.changes_since(cursor, limit, remote, now)
            if got:
                cursors[remote] = got[-1].update_id
        elif op == "clear":
            table.clear()
            model.entries.clear()
            model.lru.clear()
        assert len(table) == len(model.entries)
        assert list(table) == model.live(clock.now)
        assert table.update_id == model.update_id
