"""Balancing algorithms (appliance/balance): the article's "Load balancing algorithms".

Servers and requests are plain test doubles; a pick that "opens a
connection" is simulated by incrementing ``cur_conns``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.balance import make_balancer
from appliance.balance.chash import ConsistentHash
from appliance.balance.first import First
from appliance.balance.hashed import Header, Source, Uri, UrlParam
from appliance.balance.hashing import key_hash, uri_key, url_param_key
from appliance.balance.leastconn import LeastConn
from appliance.balance.map import MapHash, weighted_table
from appliance.balance.random import Random
from appliance.balance.roundrobin import RoundRobin
from appliance.balance.static_rr import StaticRoundRobin

pytestmark = pytest.mark.unit


@dataclass(eq=False)  # identity, like the proxy's live Server objects
class FakeServer:
    name: str
    weight: int = 1
    available: bool = True
    cur_conns: int = 0
    maxconn: int = 0

    @property
    def full(self) -> bool:
        return self.maxconn > 0 and self.cur_conns >= self.maxconn


@dataclass
class FakeRequest:
    client_ip: str = "198.18.0.1"
    path: bytes = b"/"
    headers: dict[bytes, bytes] = field(default_factory=dict)

    def header(self, name: bytes) -> bytes | None:
        return self.headers.get(name)


REQ = FakeRequest()

NON_HASHING = ["roundrobin", "static-rr", "leastconn", "first", "random"]
HASHED = [
    ("source", "", "map-based"),
    ("source", "", "consistent"),
    ("uri", "", "map-based"),
    ("uri", "", "consistent"),
    ("hdr", "X-User", "map-based"),
    ("hdr", "X-User", "consistent"),
    ("url_param", "id", "map-based"),
    ("url_param", "id", "consistent"),
]


def farm(*weights: int) -> list[FakeServer]:
    return [FakeServer(f"s{i}", w) for i, w in enumerate(weights)]


def balancer(
    algorithm: str, servers: list[FakeServer], arg: str = "", hash_type: str = "map-based"
):
    if algorithm == "random":
        return Random(servers, rng=random.Random(7))
    return make_balancer(algorithm, servers, arg, hash_type)


def picks(b, n: int, req: FakeRequest = REQ) -> list[str]:
    return [b.pick(req).name for _ in range(n)]


def keyed_request(i: int) -> FakeRequest:
    """A request carrying key number i for every hashed algorithm."""
    return FakeRequest(
        client_ip=f"198.18.{i // 256}.{i % 256}",
        path=b"/obj/%d?id=%d" % (i, i),
        headers={b"x-user": b"user%d" % i},
    )


# --- factory -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "arg", "cls"),
    [
        ("roundrobin", "", RoundRobin),
        ("static-rr", "", StaticRoundRobin),
        ("leastconn", "", LeastConn),
        ("first", "", First),
        ("random", "", Random),
        ("source", "", Source),
        ("uri", "", Uri),
        ("hdr", "Host", Header),
        ("url_param", "id", UrlParam),
    ],
)
def test_make_balancer_builds_each_algorithm(algorithm, arg, cls):
    assert isinstance(make_balancer(algorithm, farm(1, 1), arg), cls)


@pytest.mark.parametrize(
    ("algorithm", "arg", "hash_type", "message"),
    [
        ("weighted", "", "map-based", "unknown balance algorithm 'weighted'"),
        ("roundrobin", "x", "map-based", "balance roundrobin takes no argument"),
        ("hdr", "", "map-based", "balance hdr needs a header name"),
        ("url_param", "", "map-based", "balance url_param needs a parameter name"),
        ("source", "", "ring", "unknown hash_type 'ring'"),
    ],
)
def test_make_balancer_rejects_bad_configuration(algorithm, arg, hash_type, message):
    with pytest.raises(ValueError, match=message):
        make_balancer(algorithm, farm(1), arg, hash_type)


def test_hash_type_is_ignored_by_non_hashing_algorithms():
    assert isinstance(make_balancer("roundrobin", farm(1), hash_type="consistent"), RoundRobin)


# --- round robin ---------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["roundrobin", "static-rr"])
def test_round_robin_follows_weights_exactly(algorithm):
    counts = Counter(picks(balancer(algorithm, farm(5, 3, 2)), 10_000))
    assert counts == {"s0": 5000, "s1": 3000, "s2": 2000}


def test_smooth_round_robin_interleaves():
    # nginx's documented example: weights 5,1,1 give a a b a c a a.
    assert picks(RoundRobin(farm(5, 1, 1)), 7) == ["s0", "s0", "s1", "s0", "s2", "s0", "s0"]


def test_static_round_robin_interleaves():
    assert picks(StaticRoundRobin(farm(3, 1)), 8) == ["s0", "s0", "s1", "s0"] * 2


def test_weighted_table_divides_by_common_divisor():
    servers = farm(20, 10, 10)
    assert [s.name for s in weighted_table(servers)] == ["s0", "s1", "s2", "s0"]


@pytest.mark.parametrize("algorithm", ["roundrobin", "static-rr"])
def test_round_robin_weight_change_at_run_time(algorithm):
    servers = farm(1, 1)
    b = balancer(algorithm, servers)
    picks(b, 3)
    servers[0].weight = 3
    b.update()
    counts = Counter(picks(b, 4000))
    assert counts == {"s0": 3000, "s1": 1000}


def test_round_robin_update_without_change_keeps_the_sequence():
    # Updates come often (slow start ramps weights every second); they must
    # not restart the sequence, which would hand the heaviest server every pick.
    steady = RoundRobin(farm(3, 2, 1))
    updated = RoundRobin(farm(3, 2, 1))
    expected = picks(steady, 60)
    got = []
    for _ in range(60):
        got.append(updated.pick(REQ).name)
        updated.update()
    assert got == expected


def test_round_robin_server_leaving_and_returning_stays_fair():
    servers = farm(1, 1, 1)
    b = RoundRobin(servers)
    picks(b, 1)
    servers[1].available = False
    b.update()
    counts = Counter(picks(b, 100))
    assert set(counts) == {"s0", "s2"}
    assert all(49 <= c <= 51 for c in counts.values())
    servers[1].available = True
    b.update()
    counts = Counter(picks(b, 300))
    assert all(99 <= c <= 101 for c in counts.values())


# --- skipping: unavailable, zero weight, full; exclude ------------------------


@pytest.mark.parametrize("algorithm", NON_HASHING)
def test_unusable_servers_are_skipped(algorithm):
    servers = [
        FakeServer("down", available=False),
        FakeServer("zero", weight=0),
        FakeServer("full", cur_conns=5, maxconn=5),
        FakeServer("ok", maxconn=1000),
    ]
    b = balancer(algorithm, servers)
    assert set(picks(b, 50)) == {"ok"}
    servers[2].cur_conns = 0  # no longer full: read live, no update() needed
    assert "full" in picks(b, 50)


@pytest.mark.parametrize("algorithm", NON_HASHING)
def test_none_when_every_server_is_full_or_unavailable(algorithm):
    servers = [FakeServer("a", maxconn=1, cur_conns=1), FakeServer("b", available=False)]
    assert balancer(algorithm, servers).pick(REQ) is None
    assert balancer(algorithm, []).pick(REQ) is None


@pytest.mark.parametrize("algorithm", NON_HASHING)
def test_exclude_is_avoided_when_another_server_can_take_it(algorithm):
    servers = farm(1, 1)
    b = balancer(algorithm, servers)
    for _ in range(20):
        assert b.pick(REQ, exclude=servers[0]) is servers[1]


@pytest.mark.parametrize("algorithm", NON_HASHING)
def test_exclude_is_chosen_when_it_is_the_only_choice(algorithm):
    servers = [FakeServer("a"), FakeServer("b", maxconn=1, cur_conns=1)]
    b = balancer(algorithm, servers)
    assert b.pick(REQ, exclude=servers[0]) is servers[0]
    servers[0].maxconn, servers[0].cur_conns = 1, 1
    assert b.pick(REQ, exclude=servers[0]) is None


@pytest.mark.parametrize(("algorithm", "arg", "hash_type"), HASHED)
def test_hashed_returns_the_mapped_server_even_when_full(algorithm, arg, hash_type):
    servers = farm(1, 1, 1)
    b = make_balancer(algorithm, servers, arg, hash_type)
    req = keyed_request(42)
    mapped = b.pick(req)
    mapped.maxconn, mapped.cur_conns = 1, 1
    assert b.pick(req) is mapped


@pytest.mark.parametrize(("algorithm", "arg", "hash_type"), HASHED)
def test_hashed_exclude_moves_to_another_server(algorithm, arg, hash_type):
    servers = farm(1, 1, 1)
    b = make_balancer(algorithm, servers, arg, hash_type)
    for i in range(50):
        req = keyed_request(i)
        mapped = b.pick(req)
        other = b.pick(req, exclude=mapped)
        assert other is not mapped
        assert b.pick(req, exclude=mapped) is other  # deterministic too


@pytest.mark.parametrize(("algorithm", "arg", "hash_type"), HASHED)
def test_hashed_exclude_of_the_only_server_returns_it(algorithm, arg, hash_type):
    servers = [FakeServer("a"), FakeServer("b", available=False)]
    b = make_balancer(algorithm, servers, arg, hash_type)
    assert b.pick(keyed_request(1), exclude=servers[0]) is servers[0]


@pytest.mark.parametrize(("algorithm", "arg", "hash_type"), HASHED)
def test_hashed_never_maps_to_unavailable_or_zero_weight(algorithm, arg, hash_type):
    servers = [FakeServer("down", available=False), FakeServer("zero", weight=0), FakeServer("ok")]
    b = make_balancer(algorithm, servers, arg, hash_type)
    assert {b.pick(keyed_request(i)).name for i in range(200)} == {"ok"}
    servers[2].available = False
    b.update()
    assert b.pick(keyed_request(1)) is None


# --- least connections ------------------------------------------------------


def test_leastconn_prefers_the_least_loaded():
    servers = farm(1, 1, 1)
    servers[0].cur_conns, servers[1].cur_conns, servers[2].cur_conns = 5, 2, 7
    assert LeastConn(servers).pick(REQ) is servers[1]


def test_leastconn_respects_weights():
    a, b = FakeServer("a", weight=2, cur_conns=2), FakeServer("b", weight=1, cur_conns=1)
    # (2+1)/2 = 1.5 < (1+1)/1 = 2
    assert LeastConn([a, b]).pick(REQ) is a
    a.cur_conns = 4  # 2.5 > 2
    assert LeastConn([a, b]).pick(REQ) is b


def test_leastconn_shares_idle_servers_in_turn():
    assert picks(LeastConn(farm(1, 1, 1)), 6) == ["s0", "s1", "s2"] * 2


def test_leastconn_load_follows_weights():
    servers = farm(3, 1)
    b = LeastConn(servers)
    for _ in range(400):
        b.pick(REQ).cur_conns += 1
    assert abs(servers[0].cur_conns - 300) <= 1
    assert abs(servers[1].cur_conns - 100) <= 1


# --- first ---------------------------------------------------------------------


def test_first_fills_servers_in_order():
    servers = [FakeServer(n, maxconn=2) for n in ("a", "b", "c")]
    b = First(servers)
    order = []
    for _ in range(6):
        server = b.pick(REQ)
        server.cur_conns += 1
        order.append(server.name)
    assert order == ["a", "a", "b", "b", "c", "c"]
    assert b.pick(REQ) is None
    servers[0].cur_conns -= 1
    assert b.pick(REQ) is servers[0]


def test_first_without_maxconn_always_takes_the_first():
    servers = farm(1, 1)
    servers[0].cur_conns = 1000
    assert set(picks(First(servers), 20)) == {"s0"}


# --- random ----------------------------------------------------------------------


def test_random_follows_weights_on_an_idle_farm():
    # Idle servers tie, so the first draw decides and follows the weights.
    # 100,000 picks: the standard deviation of a share is at most 0.16%, so a
    # 1-point bound is 6 sigma (and the seeded generator makes it exact anyway).
    counts = Counter(picks(Random(farm(5, 3, 2), rng=random.Random(1)), 100_000))
    for name, share in (("s0", 0.5), ("s1", 0.3), ("s2", 0.2)):
        assert abs(counts[name] / 100_000 - share) < 0.01


def test_random_keeps_the_less_loaded_of_two():
    servers = farm(1, 1)
    servers[0].cur_conns = 10
    # Two servers: the draws are always distinct, so the idle one always wins.
    assert set(picks(Random(servers, rng=random.Random(3)), 100)) == {"s1"}


def test_random_compares_load_relative_to_weight():
    a, b = FakeServer("a", weight=4, cur_conns=6), FakeServer("b", weight=1, cur_conns=2)
    assert set(picks(Random([a, b], rng=random.Random(3)), 100)) == {"a"}  # 1.5 < 2


def test_random_spreads_a_growing_load_by_weight():
    servers = farm(3, 1)
    b = Random(servers, rng=random.Random(5))
    for _ in range(4000):
        b.pick(REQ).cur_conns += 1
    assert abs(servers[0].cur_conns / 4000 - 0.75) < 0.01


# --- key extraction ------------------------------------------------------------


def test_uri_key_ignores_the_query_string():
    assert uri_key(FakeRequest(path=b"/a/b?x=1&y=2")) == b"/a/b"
    assert uri_key(FakeRequest(path=b"/a/b")) == b"/a/b"
    b = Uri(farm(1, 1, 1, 1, 1))
    for i in range(50):
        path = b"/obj/%d" % i
        assert b.pick(FakeRequest(path=path + b"?v=1")) is b.pick(FakeRequest(path=path))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (b"/p?id=42", b"42"),
        (b"/p?a=1&id=42&b=2", b"42"),
        (b"/p?id=1&id=2", b"1"),  # first occurrence
        (b"/p?xid=1&id=2", b"2"),  # whole name only
        (b"/p?a=id=3", None),  # not a parameter name
        (b"/p?id=", None),  # empty value
        (b"/p?id&x=1", None),  # no value
        (b"/p?other=1", None),
        (b"/p?", None),
        (b"/p", None),
        (b"/id=5", None),  # no query string
    ],
)
def test_url_param_key(path, value):
    assert url_param_key(FakeRequest(path=path), b"id") == value


def test_header_name_is_case_insensitive():
    b = Header(farm(1, 1, 1), "X-User")
    req = FakeRequest(headers={b"x-user": b"alice"})
    assert {b.pick(req).name for _ in range(10)} == {b.pick(req).name}


@pytest.mark.parametrize(
    ("cls", "arg", "keyless"),
    [
        (Header, "X-User", FakeRequest()),
        (Header, "X-User", FakeRequest(headers={b"x-user": b""})),
        (UrlParam, "id", FakeRequest(path=b"/p?other=1")),
        (UrlParam, "id", FakeRequest(path=b"/p")),
    ],
)
@pytest.mark.parametrize("hash_type", ["map-based", "consistent"])
def test_no_key_falls_back_to_round_robin(cls, arg, keyless, hash_type):
    b = cls(farm(2, 1), arg, hash_type)
    assert picks(b, 6, keyless) == ["s0", "s1", "s0"] * 2


# --- the hash: stable across processes and nodes ------------------------------


def test_key_hash_known_values():
    # Computed once; a change here remaps every user of every cluster.
    assert key_hash(b"198.18.0.1") == 1404077201
    assert key_hash(b"/index.html") == 1996419731
    assert key_hash(b"alice") == 741610746
    assert key_hash(b"") == 0


KNOWN_MAP = {
    "198.18.0.1": "web2",
    "198.18.0.2": "web4",
    "198.18.0.3": "web2",
    "198.18.0.4": "web4",
    "198.18.0.5": "web3",
    "198.18.0.6": "web2",
}
KNOWN_RING = {
    "198.18.0.1": "web3",
    "198.18.0.2": "web3",
    "198.18.0.3": "web1",
    "198.18.0.4": "web2",
    "198.18.0.5": "web2",
    "198.18.0.6": "web2",
}


@pytest.mark.parametrize(
    ("hash_type", "known"), [("map-based", KNOWN_MAP), ("consistent", KNOWN_RING)]
)
def test_source_known_mappings(hash_type, known):
    b = Source([FakeServer(f"web{i}") for i in range(1, 5)], hash_type=hash_type)
    assert {ip: b.pick(FakeRequest(client_ip=ip)).name for ip in known} == known


def test_consistent_ring_ignores_server_order():
    names = [f"web{i}" for i in range(1, 5)]
    b = Source([FakeServer(n) for n in reversed(names)], hash_type="consistent")
    assert {ip: b.pick(FakeRequest(client_ip=ip)).name for ip in KNOWN_RING} == KNOWN_RING


MAPPING_SCRIPT = """
import json
from appliance.balance.hashed import Source
from tests.unit.test_balance import FakeRequest, FakeServer
out = {}
for hash_type in ("map-based", "consistent"):
    b = Source([FakeServer(f"web{i}") for i in range(1, 9)], hash_type=hash_type)
    out[hash_type] = [b.pick(FakeRequest(client_ip=f"198.18.1.{i}")).name for i in range(200)]
print(json.dumps(out))
"""


def test_mappings_are_the_same_in_every_process():
    results = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", MAPPING_SCRIPT],
            env=env,
            capture_output=True,
            check=True,
            timeout=60,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        )
        results.append(json.loads(done.stdout))
    assert results[0] == results[1]


# --- map-based and consistent hashing -----------------------------------------


KEYS = [key_hash(b"key-%d" % i) for i in range(20_000)]


def mapping(mapper, keys=KEYS) -> list[str]:
    return [mapper.lookup(k).name for k in keys]


@pytest.mark.parametrize(("mapper", "tolerance"), [(MapHash, 0.015), (ConsistentHash, 0.06)])
def test_hash_spreads_keys_by_weight(mapper, tolerance):
    # Map-based is exact up to sampling noise (0.3% here); a ring of 40 points
    # per unit of weight leaves shares a few points from the weights.
    counts = Counter(mapping(mapper(farm(3, 1, 2, 2))))
    for name, share in (("s0", 3 / 8), ("s1", 1 / 8), ("s2", 2 / 8), ("s3", 2 / 8)):
        assert abs(counts[name] / len(KEYS) - share) < tolerance


def test_map_based_sequential_sources_spread_evenly():
    b = Source(farm(1, 1, 1, 1))
    counts = Counter(b.pick(keyed_request(i)).name for i in range(8000))
    assert all(abs(c - 2000) < 150 for c in counts.values())


N = 10


def test_consistent_removing_one_server_moves_only_its_keys():
    servers = farm(*[1] * N)
    ring = ConsistentHash(servers)
    before = mapping(ring)
    servers[3].available = False
    ring.update()
    after = mapping(ring)
    moved = [i for i in range(len(KEYS)) if before[i] != after[i]]
    assert all(before[i] == "s3" for i in moved)
    assert len(moved) == before.count("s3")
    assert len(moved) / len(KEYS) <= 1 / N + 0.05


def test_consistent_adding_a_server_moves_keys_only_to_it():
    servers = farm(*[1] * N)
    ring = ConsistentHash(servers)
    before = mapping(ring)
    servers.append(FakeServer("new"))
    ring = ConsistentHash(servers)
    after = mapping(ring)
    moved = [i for i in range(len(KEYS)) if before[i] != after[i]]
    assert all(after[i] == "new" for i in moved)
    assert 1 / (N + 1) - 0.05 <= len(moved) / len(KEYS) <= 1 / (N + 1) + 0.05


def test_consistent_weight_change_moves_keys_only_to_that_server():
    servers = farm(*[1] * N)
    ring = ConsistentHash(servers)
    before = mapping(ring)
    servers[0].weight = 2
    ring.update()
    after = mapping(ring)
    moved = [i for i in range(len(KEYS)) if before[i] != after[i]]
    assert moved
    assert all(after[i] == "s0" for i in moved)


def test_map_based_removal_moves_most_keys():
    # Why "consistent" exists: the map remaps far more than 1/N.
    servers = farm(*[1] * N)
    table = MapHash(servers)
    before = mapping(table)
    servers[3].available = False
    table.update()
    moved = sum(b != a for b, a in zip(before, mapping(table), strict=True))
    assert moved / len(KEYS) > 0.5


def test_consistent_ring_is_rebuilt_only_on_change():
    servers = farm(1, 2)
    ring = ConsistentHash(servers)
    entries = ring._ring
    ring.update()
    assert ring._ring is entries
    servers[1].weight = 3
    ring.update()
    assert ring._ring is not entries


# --- properties ------------------------------------------------------------------

server_states = st.lists(
    st.tuples(
        st.integers(0, 5),  # weight
        st.booleans(),  # available
        st.integers(0, 4),  # cur_conns
        st.integers(0, 3),  # maxconn
    ),
    min_size=0,
    max_size=8,
)


def build(states) -> list[FakeServer]:
    return [FakeServer(f"s{i}", w, a, c, m) for i, (w, a, c, m) in enumerate(states)]


@settings(max_examples=200, deadline=None)
@given(
    states=server_states,
    algorithm=st.sampled_from(NON_HASHING),
    exclude_index=st.integers(-1, 7),
    rounds=st.integers(1, 5),
)
def test_pick_returns_a_usable_server_whenever_one_exists(states, algorithm, exclude_index, rounds):
    servers = build(states)
    exclude = servers[exclude_index] if 0 <= exclude_index < len(servers) else None
    b = balancer(algorithm, servers)

    def usable(s):
        return s.available and s.weight > 0 and not s.full

    others = [s for s in servers if usable(s) and s is not exclude]
    for _ in range(rounds):
        got = b.pick(REQ, exclude=exclude)
        if others:
            assert got in others
        elif exclude is not None and usable(exclude):
            assert got is exclude
        else:
            assert got is None


@settings(max_examples=200, deadline=None)
@given(
    states=server_states,
    hashed=st.sampled_from(HASHED),
    exclude_index=st.integers(-1, 7),
    key=st.integers(0, 10_000),
)
def test_hashed_pick_returns_an_eligible_server(states, hashed, exclude_index, key):
    algorithm, arg, hash_type = hashed
    servers = build(states)
    exclude = servers[exclude_index] if 0 <= exclude_index < len(servers) else None
    got = make_balancer(algorithm, servers, arg, hash_type).pick(keyed_request(key), exclude)
    eligible = [s for s in servers if s.available and s.weight > 0]
    others = [s for s in eligible if s is not exclude]
    if others:
        assert got in others
    else:
        assert got is (exclude if exclude in eligible else None)


@settings(max_examples=100, deadline=None)
@given(
    flips=st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=20),
    keys=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
)
def test_consistent_never_maps_to_an_unavailable_server(flips, keys):
    servers = farm(1, 2, 1, 3, 1, 1)
    ring = ConsistentHash(servers)
    for index, available in flips:
        servers[index].available = available
        ring.update()
        for k in keys:
            got = ring.lookup(k)
            assert got is None if not any(s.available for s in servers) else got.available


@settings(max_examples=200, deadline=None)
@given(
    weights=st.lists(st.integers(1, 10), min_size=1, max_size=8),
    algorithm=st.sampled_from(["roundrobin", "static-rr"]),
)
def test_one_cycle_gives_each_server_exactly_its_weight(weights, algorithm):
    servers = farm(*weights)
    counts = Counter(picks(balancer(algorithm, servers), sum(weights)))
    assert counts == {s.name: s.weight for s in servers}


@settings(max_examples=300, deadline=None)
@given(
    changes=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 6), st.booleans(), st.integers(0, 7)),
        max_size=12,
    )
)
def test_round_robin_stays_fair_after_run_time_changes(changes):
    # Current values survive update(), clamped and re-centred: whatever came
    # before, the following cycles give each server its weight, give or take
    # two picks (the debt or credit of one cycle, at most).
    servers = farm(3, 2, 1, 1)
    b = RoundRobin(servers)
    for index, weight, available, some_picks in changes:
        servers[index].weight, servers[index].available = weight, available
        b.update()
        for _ in range(some_picks):
            b.pick(REQ)
    usable = [s for s in servers if s.available and s.weight > 0]
    cycles = 10 * sum(s.weight for s in usable)
    counts = Counter(picks(b, cycles)) if usable else Counter()
    for s in usable:
        assert abs(counts[s.name] - 10 * s.weight) <= 2


@settings(max_examples=300, deadline=None)
@given(
    weights=st.lists(st.integers(1, 5), min_size=2, max_size=6),
    steps=st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.integers(-1, 5)), max_size=40),
)
def test_round_robin_recovers_from_full_and_excluded_servers(weights, steps):
    # However servers filled up and were excluded, once all have room again
    # the spread follows the weights, give or take one pick.
    servers = [FakeServer(f"s{i}", w, maxconn=1) for i, w in enumerate(weights)]
    b = RoundRobin(servers)
    for index, full, exclude_index in steps:
        servers[index % len(servers)].cur_conns = int(full)
        exclude = servers[exclude_index] if 0 <= exclude_index < len(servers) else None
        b.pick(REQ, exclude)
    for s in servers:
        s.cur_conns = 0
    counts = Counter(picks(b, 10 * sum(weights)))
    for s in servers:
        assert abs(counts[s.name] - 10 * s.weight) <= 1
