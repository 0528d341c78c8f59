"""Micro-benchmark of the balancing algorithms' ``pick()`` (appliance/balance).

Informational, not a test: prints nanoseconds per pick for every algorithm
(and both hash types of the hashed ones) on farms of 2 and 20 idle servers,
the median of several timeit rounds, and a final summary line. There is no
HAProxy counterpart to run alongside: pick() is measured alone.

    .venv/bin/python -m bench.bench_balance [--rounds 5] [--number 20000]
"""

from __future__ import annotations

import argparse
import statistics
import timeit
from dataclasses import dataclass

from appliance.balance import make_balancer

CASES = [
    ("roundrobin", "", "map-based"),
    ("static-rr", "", "map-based"),
    ("leastconn", "", "map-based"),
    ("first", "", "map-based"),
    ("random", "", "map-based"),
    ("source", "", "map-based"),
    ("source", "", "consistent"),
    ("uri", "", "map-based"),
    ("uri", "", "consistent"),
    ("hdr", "X-User", "map-based"),
    ("hdr", "X-User", "consistent"),
    ("url_param", "id", "map-based"),
    ("url_param", "id", "consistent"),
]


@dataclass(slots=True, eq=False)
class Server:
    name: str
    weight: int = 1
    available: bool = True
    cur_conns: int = 0
    maxconn: int = 0

    @property
    def full(self) -> bool:
        return self.maxconn > 0 and self.cur_conns >= self.maxconn


@dataclass(slots=True)
class Request:
    client_ip: str = "198.18.0.17"
    path: bytes = b"/catalog/item/123?lang=en&id=4711&page=2"
    user: bytes = b"alice"

    def header(self, name: bytes) -> bytes | None:
        return self.user if name == b"x-user" else None


def ns_per_pick(algorithm: str, arg: str, hash_type: str, servers: int, args) -> float:
    farm = [Server(f"web{i}", weight=1 + i % 3, maxconn=1000) for i in range(servers)]
    pick = make_balancer(algorithm, farm, arg, hash_type).pick
    req = Request()
    rounds = timeit.repeat(lambda: pick(req), number=args.number, repeat=args.rounds)
    return statistics.median(rounds) / args.number * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--number", type=int, default=20_000, help="picks per round")
    args = parser.parse_args()
    print(f"{'algorithm':<26}{'2 servers':>12}{'20 servers':>12}   (ns/pick, median)")
    summary = []
    for algorithm, arg, hash_type in CASES:
        label = algorithm if not arg else f"{algorithm}:{arg}"
        if algorithm in ("source", "uri", "hdr", "url_param"):
            label += f" ({hash_type})"
        small = ns_per_pick(algorithm, arg, hash_type, 2, args)
        large = ns_per_pick(algorithm, arg, hash_type, 20, args)
        print(f"{label:<26}{small:>12.0f}{large:>12.0f}")
        short = label.split(" ")[0] + ("/consistent" if hash_type == "consistent" else "")
        summary.append(f"{short}={large:.0f}")
    print(f"balance pick ns, 20 servers (median of {args.rounds}): {' '.join(summary)}")


if __name__ == "__main__":
    main()
