"""The configuration loader: every key of interfaces.md §2 is checked, and every
problem is reported at once as ``FILE:LINE: dotted.key: message``."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.config import ConfigError, Problem, check, load, load_text
from appliance.config.command import run_check
from appliance.config.locate import format_key, locate
from appliance.config.model import Address, Timeouts
from appliance.config.units import DURATION_UNITS, SIZE_UNITS, parse_duration, parse_size

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
[frontends.www]
bind = ["127.0.0.1:8080"]
default_backend = "app"

[backends.app]
[[backends.app.servers]]
name = "web1"
address = "127.0.0.1:9001"
"""


def text(source: str) -> str:
    return textwrap.dedent(source).lstrip("\n")


def errors(source: str) -> list[str]:
    """The problem lines ``load_text`` raises for ``source`` (dedented, line 1 first)."""
    with pytest.raises(ConfigError) as raised:
        load_text(text(source), "weir.toml")
    return [str(problem) for problem in raised.value.problems]


def checked(tmp_path: Path, source: str) -> list[Problem]:
    path = tmp_path / "weir.toml"
    path.write_text(text(source))
    return check(str(path))


# -- whole files -------------------------------------------------------------------------


def test_the_contract_example_loads_cleanly() -> None:
    path = str(ROOT / "tests/data/full.toml")
    assert check(path) == []
    config = load(path, for_run=True)
    assert config.path == path
    assert config.global_.max_header_bytes == 16384
    assert config.defaults.timeouts.tunnel == 3600.0
    assert config.frontends["www"].bind == (Address("127.0.0.1", 8080),)
    app = config.backends["app"]
    assert app.cookie is not None and app.cookie.name == "SERVERID"
    assert app.stick is not None and app.stick.expire == 1800.0
    assert app.check is not None and app.check.fastinter == 0.5
    assert app.servers[0].cookie == "web1"
    assert config.ha is not None and config.ha.vrrp is not None
    assert config.ha.vrrp.advert_interval == pytest.approx(0.1)
    assert config.ha.sync is not None
    assert config.ha.sync.peers[0].address == Address("198.18.0.12", 7777)


def test_the_documented_example_loads_cleanly() -> None:
    assert check(str(ROOT / "docs/examples/weir.toml")) == []


def test_an_empty_file_is_all_defaults() -> None:
    config = load_text("")
    assert config.frontends == {} and config.backends == {} and config.ha is None
    assert config.defaults.timeouts == Timeouts()


def test_a_file_with_only_vrrp_is_valid_but_cannot_run() -> None:
    source = '[ha.vrrp]\ninterface = "eth1"\nvips = ["198.18.0.100/24"]\n'
    assert load_text(source).ha.vrrp.vips == ("198.18.0.100/24",)  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as raised:
        load_text(source, "weir.toml", for_run=True)
    assert [str(p) for p in raised.value.problems] == [
        "weir.toml:0: frontends: at least one frontend is required to run the proxy"
    ]


def test_a_missing_file_is_a_problem_at_line_zero(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.toml")
    assert [str(p) for p in check(path)] == [
        f"{path}:0: file: cannot read the configuration: No such file or directory"
    ]
    with pytest.raises(ConfigError):
        load(path)


def test_a_toml_syntax_error_is_one_problem_at_its_line() -> None:
    assert errors("[global]\nmaxconn = 10\nlog = stdout\n") == [
        "weir.toml:3: toml: syntax error: Invalid value at column 7"
    ]


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    assert errors(
        """
        [global]
        maxconn = "many"

        [frontends.www]
        bind = ["127.0.0.1:8080"]
        default_backend = "app"
        forwardfor = "yes"

        [backends.app]
        balance = "roundrobin"

        [[backends.app.servers]]
        name = "web1"
        address = "127.0.0.1:9001"

        [[backends.app.servers]]
        name = "web2"
        address = "127.0.0.1:9002"
        weight = 1000
        """
    ) == [
        'weir.toml:2: global.maxconn: expected an integer, got string "many"',
        'weir.toml:7: frontends.www.forwardfor: expected true or false, got string "yes"',
        "weir.toml:19: backends.app.servers[1].weight: must be between 0 and 256; got 1000",
    ]


# -- unknown keys and types --------------------------------------------------------------


def test_an_unknown_key_suggests_the_closest_name() -> None:
    source = BASE.replace("default_backend", "defualt_backend")
    assert errors(source) == [
        "weir.toml:3: frontends.www.defualt_backend: unknown key; did you mean 'default_backend'?"
    ]


def test_an_unknown_section_suggests_the_closest_name() -> None:
    assert errors("[defualts]\nretries = 1\n") == [
        "weir.toml:1: defualts: unknown section; did you mean 'defaults'?"
    ]


def test_an_unknown_key_without_a_close_name_lists_the_valid_ones() -> None:
    assert errors("[defaults]\nzzz = 1\n") == [
        "weir.toml:2: defaults.zzz: unknown key (valid: retries, redispatch, timeouts)"
    ]


def test_unknown_keys_in_servers_and_inline_peers_point_at_their_line() -> None:
    source = BASE + 'wieght = 2\n\n[ha.sync]\nlocal = "lb1"\nbind = "0.0.0.0:7777"\n'
    source += 'peers = [\n  { name = "lb2", address = "10.0.0.2:7777" },\n  { nmae = "lb3" },\n]\n'
    assert errors(source) == [
        "weir.toml:9: backends.app.servers[0].wieght: unknown key; did you mean 'weight'?",
        "weir.toml:16: ha.sync.peers[1].nmae: unknown key; did you mean 'name'?",
        "weir.toml:16: ha.sync.peers[1].address: required key is missing",
    ]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("redispatch = 1", "expected true or false, got integer 1"),
        ("retries = true", "expected an integer, got boolean true"),
        ('retries = "3"', 'expected an integer, got string "3"'),
        ("retries = 2.5", "expected an integer, got float 2.5"),
        ("retries = -1", "must be at least 0; got -1"),
        ("timeouts = 5", "expected a table, got integer 5"),
    ],
)
def test_types_are_checked(line: str, message: str) -> None:
    key = line.split(" =")[0]
    assert errors(f"[defaults]\n{line}\n") == [f"weir.toml:2: defaults.{key}: {message}"]


def test_a_section_that_is_not_a_table_is_an_error() -> None:
    assert errors('frontends = "www"\n') == [
        'weir.toml:1: frontends: expected a table, got string "www"'
    ]


# -- durations and sizes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5", 'invalid duration "5": missing unit (us, ms, s, m, h, d), e.g. "5s"'),
        ("5sec", "invalid duration \"5sec\": unknown unit 'sec' (use us, ms, s, m, h, d)"),
        ("1.5s", 'invalid duration "1.5s": expected a whole number and a unit'),
        ("-1s", 'invalid duration "-1s": expected a whole number and a unit'),
    ],
)
def test_a_bad_duration_says_why(value: str, message: str) -> None:
    [problem] = errors(f'[defaults.timeouts]\nconnect = "{value}"\n')
    assert problem.startswith(f"weir.toml:2: defaults.timeouts.connect: {message}")


def test_a_duration_must_be_a_string() -> None:
    assert errors("[global]\ngrace = 10\n") == [
        'weir.toml:2: global.grace: a duration is a string with a unit, such as "5s"; got 10'
    ]


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("250ms", 0.25),
        ("5s", 5),
        ("30m", 1800),
        ("8h", 28800),
        ("1d", 86400),
        ("0s", 0),
        ("100us", 0.0001),
        (" 5s ", 5),
    ],
)
def test_parse_duration(written: str, seconds: float) -> None:
    assert parse_duration(written) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", [5, "5", "", "s", "5 s", "5S", "1.5s", True])
def test_parse_duration_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(sorted(DURATION_UNITS)))
def test_parse_duration_round_trip(number: int, unit: str) -> None:
    assert parse_duration(f"{number}{unit}") == number * DURATION_UNITS[unit]


@pytest.mark.parametrize(
    ("written", "size"),
    [
        (16384, 16384),
        ("16384", 16384),
        ("16k", 16384),
        ("16K", 16384),
        ("1m", 1 << 20),
        ("2g", 2 << 30),
        (0, 0),
    ],
)
def test_parse_size(written: int | str, size: int) -> None:
    assert parse_size(written) == size


@pytest.mark.parametrize("bad", [-1, "16kb", "1.5k", "k", "", True, 1.5])
def test_parse_size_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "k", "m", "g"]))
def test_parse_size_round_trip(number: int, unit: str) -> None:
    assert parse_size(f"{number}{unit}") == number * SIZE_UNITS[unit]


def test_a_bad_size_is_reported() -> None:
    assert errors('[global]\nmax_header_bytes = "16kb"\n') == [
        'weir.toml:2: global.max_header_bytes: invalid size "16kb": '
        'expected a whole number with an optional k, m or g, e.g. "16k"'
    ]


def test_sizes_are_range_checked_after_parsing() -> None:
    assert load_text('[global]\nmax_header_bytes = "64k"\n').global_.max_header_bytes == 65536
    assert errors('[global]\nmax_header_bytes = "2m"\n') == [
        "weir.toml:2: global.max_header_bytes: must be between 1024 and 1048576; got 2097152"
    ]


# -- ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "line", "message"),
    [
        ("[global]", "maxconn = 0", "must be at least 1; got 0"),
        ("[defaults]", "retries = -2", "must be at least 0; got -2"),
        ("[backends.app.check]", "rise = 0", "must be at least 1; got 0"),
        ("[backends.app.check]", "fall = 0", "must be at least 1; got 0"),
        ("[ha.vrrp]", "vrid = 256", "must be between 1 and 255; got 256"),
        ("[ha.vrrp]", "priority = 0", "must be between 1 and 255; got 0"),
        ("[ha.vrrp]", "version = 4", "must be between 2 and 3; got 4"),
    ],
)
def test_ranges(section: str, line: str, message: str) -> None:
    source = f"{BASE}\n{section}\n{line}\n"
    key = f"{section.strip('[]')}.{line.split(' =')[0]}"
    number = source.count("\n")
    assert errors(source) == [f"weir.toml:{number}: {key}: {message}"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("weight = 257", "must be between 0 and 256; got 257"),
        ("weight = -1", "must be between 0 and 256; got -1"),
        ("maxconn = -1", "must be at least 0; got -1"),
        ("id = 0", "must be at least 1; got 0"),
        ("agent_port = 70000", "must be between 0 and 65535; got 70000"),
        ('redir = "web1.example.com"', 'must start with "http://" or "https://"'),
    ],
)
def test_server_ranges(line: str, message: str) -> None:
    [problem] = errors(BASE + line + "\n")
    assert problem.startswith(f"weir.toml:9: backends.app.servers[0].{line.split(' =')[0]}: ")
    assert message in problem


def test_weight_limits_are_accepted() -> None:
    for weight in (0, 256):
        config = load_text(BASE + f"weight = {weight}\n")
        assert config.backends["app"].servers[0].weight == weight


# -- addresses and binds -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("127.0.0.1", 'invalid address "127.0.0.1": expected "host:port"'),
        (":9001", 'invalid address ":9001": expected "host:port"'),
        ("127.0.0.1:0", "port must be between 1 and 65535; got 0"),
        ("127.0.0.1:65536", "port must be between 1 and 65535; got 65536"),
        ("127.0.0.1:http", 'invalid port "http" in "127.0.0.1:http"'),
        ("::1:9001", 'write IPv6 addresses in brackets, e.g. "[::1]:8080"'),
        ("[fe80::zz]:9001", 'invalid IPv6 address "fe80::zz"'),
        ("web 1:9001", 'invalid host "web 1" in "web 1:9001"'),
    ],
)
def test_a_bad_server_address_is_reported(address: str, message: str) -> None:
    [problem] = errors(BASE.replace("127.0.0.1:9001", address))
    assert problem.startswith("weir.toml:8: backends.app.servers[0].address: ")
    assert message in problem


def test_addresses_parse_hostnames_and_ipv6() -> None:
    source = BASE.replace('["127.0.0.1:8080"]', '"[::1]:8080"').replace(
        "127.0.0.1:9001", "web1.internal:80"
    )
    config = load_text(source)
    assert config.frontends["www"].bind == (Address("::1", 8080),)
    assert str(config.frontends["www"].bind[0]) == "[::1]:8080"
    assert config.backends["app"].servers[0].address == Address("web1.internal", 80)


def test_tls_bind_options_are_not_supported_yet() -> None:
    source = BASE.replace('["127.0.0.1:8080"]', '["127.0.0.1:80", "0.0.0.0:443 tls crt=/c/"]')
    assert errors(source) == [
        "weir.toml:2: frontends.www.bind[1]: TLS bind options are not supported yet"
    ]


def test_every_bad_bind_entry_is_reported_on_its_own_line() -> None:
    source = BASE.replace('["127.0.0.1:8080"]', '[\n  "127.0.0.1",\n  "127.0.0.1:80",\n  "x:0",\n]')
    assert errors(source) == [
        'weir.toml:3: frontends.www.bind[0]: invalid address "127.0.0.1": expected "host:port"',
        "weir.toml:5: frontends.www.bind[2]: port must be between 1 and 65535; got 0",
    ]


def test_an_empty_bind_is_an_error() -> None:
    [problem] = errors(BASE.replace('["127.0.0.1:8080"]', "[]"))
    assert problem.startswith("weir.toml:2: frontends.www.bind: at least one address is required")


def test_two_frontends_on_one_address_is_an_error() -> None:
    source = BASE + '\n[frontends.api]\nbind = ["127.0.0.1:9000", "127.0.0.1:8080"]\n'
    source += 'default_backend = "app"\n'
    assert errors(source) == [
        "weir.toml:11: frontends.api.bind[1]: 127.0.0.1:8080 conflicts with "
        "127.0.0.1:8080 bound by frontend 'www'"
    ]


def test_a_wildcard_bind_overlaps_a_specific_address_of_its_family_only() -> None:
    wildcard = BASE + '\n[frontends.api]\nbind = "0.0.0.0:8080"\ndefault_backend = "app"\n'
    assert errors(wildcard) == [
        "weir.toml:11: frontends.api.bind: 0.0.0.0:8080 conflicts with "
        "127.0.0.1:8080 bound by frontend 'www'"
    ]
    ipv6 = BASE + '\n[frontends.api]\nbind = "[::]:8080"\ndefault_backend = "app"\n'
    assert set(load_text(ipv6).frontends) == {"www", "api"}


def test_a_frontend_needs_bind_and_default_backend() -> None:
    assert errors("[frontends.www]\nforwardfor = true\n") == [
        "weir.toml:1: frontends.www.bind: required key is missing",
        "weir.toml:1: frontends.www.default_backend: required key is missing",
    ]


# -- references and names ----------------------------------------------------------------


def test_a_missing_backend_is_reported_with_a_suggestion() -> None:
    assert errors(BASE.replace('default_backend = "app"', 'default_backend = "ap"')) == [
        "weir.toml:3: frontends.www.default_backend: no backend named 'ap'; did you mean 'app'?"
    ]


def test_a_missing_backend_without_a_close_name_lists_the_backends() -> None:
    assert errors(BASE.replace('default_backend = "app"', 'default_backend = "zzz"')) == [
        "weir.toml:3: frontends.www.default_backend: no backend named 'zzz' (defined: app)"
    ]


def test_section_names_are_restricted() -> None:
    source = BASE.replace("[frontends.www]", '[frontends."w w"]')
    assert errors(source) == [
        "weir.toml:1: frontends.\"w w\": invalid name 'w w': use letters, digits, '_', '.' and '-'"
    ]


# -- servers -----------------------------------------------------------------------------


def test_server_ids_default_to_position_and_cookies_to_names() -> None:
    source = BASE + '\n[[backends.app.servers]]\nname = "web2"\naddress = "127.0.0.1:9002"\n'
    source += 'cookie = "w2"\n'
    servers = load_text(source).backends["app"].servers
    assert [(s.id, s.cookie) for s in servers] == [(1, "web1"), (2, "w2")]


def test_duplicate_server_names_are_errors() -> None:
    source = BASE + '\n[[backends.app.servers]]\nname = "web1"\naddress = "127.0.0.1:9002"\n'
    assert errors(source) == [
        "weir.toml:11: backends.app.servers[1].name: duplicate name 'web1': "
        "server 'web1' (line 6) has it too"
    ]


def test_duplicate_server_ids_are_errors_even_when_defaulted() -> None:
    source = BASE + "id = 2\n"
    source += '\n[[backends.app.servers]]\nname = "web2"\naddress = "127.0.0.1:9002"\n'
    assert errors(source) == [
        "weir.toml:11: backends.app.servers[1].id: duplicate id 2: server 'web1' (line 6) "
        "has it too; id defaults to the server's position, set it explicitly"
    ]


def test_cookie_values_must_be_unique_when_a_cookie_section_exists() -> None:
    second = '\n[[backends.app.servers]]\nname = "web2"\naddress = "127.0.0.1:9002"\n'
    second += 'cookie = "web1"\n'
    assert load_text(BASE + second).backends["app"].cookie is None
    assert errors(BASE + second + "\n[backends.app.cookie]\n") == [
        "weir.toml:13: backends.app.servers[1].cookie: duplicate cookie 'web1': "
        "server 'web1' (line 6) has it too"
    ]


@pytest.mark.parametrize(
    ("mode", "value", "message"),
    [
        (
            "insert",
            "web|1",
            "'|' is reserved in insert mode cookies (it separates the value from the "
            "maxidle/maxlife dates); the server's cookie value 'web|1' must not contain it",
        ),
        (
            "prefix",
            "web~1",
            "'~' is reserved in prefix mode cookies (it separates the server's value from "
            "the application's); the server's cookie value 'web~1' must not contain it",
        ),
    ],
)
def test_cookie_values_may_not_hold_the_modes_delimiter(
    mode: str, value: str, message: str
) -> None:
    source = BASE + f'cookie = "{value}"\n\n[backends.app.cookie]\nmode = "{mode}"\n'
    assert errors(source) == [f"weir.toml:9: backends.app.servers[0].cookie: {message}"]


@pytest.mark.parametrize(
    ("mode", "value"),
    [("insert", "web~1"), ("prefix", "web|1"), ("rewrite", "web|1"), ("rewrite", "web~1")],
)
def test_the_other_delimiter_is_a_valid_cookie_value(mode: str, value: str) -> None:
    source = BASE + f'cookie = "{value}"\n\n[backends.app.cookie]\nmode = "{mode}"\n'
    assert load_text(source).backends["app"].servers[0].cookie == value
    assert load_text(BASE + f'cookie = "{value}"\n').backends["app"].cookie is None


def test_a_backend_without_servers_is_only_a_warning(tmp_path: Path) -> None:
    source = BASE + "\n[backends.spare]\n"
    assert set(load_text(source).backends) == {"app", "spare"}
    assert [str(p) for p in checked(tmp_path, source)] == [
        f"{tmp_path / 'weir.toml'}:10: backends.spare.servers: "
        "warning: backend has no servers; requests sent to it will get 503"
    ]


# -- backend options ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "balance", "argument"),
    [
        ("roundrobin", "roundrobin", ""),
        ("static-rr", "static-rr", ""),
        ("leastconn", "leastconn", ""),
        ("first", "first", ""),
        ("source", "source", ""),
        ("uri", "uri", ""),
        ("random", "random", ""),
        ("hdr:Host", "hdr", "Host"),
        ("url_param:userid", "url_param", "userid"),
    ],
)
def test_balance_algorithms(written: str, balance: str, argument: str) -> None:
    source = BASE.replace("[backends.app]\n", f'[backends.app]\nbalance = "{written}"\n')
    backend = load_text(source).backends["app"]
    assert (backend.balance, backend.balance_arg) == (balance, argument)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("roundrobn", "did you mean 'roundrobin'?"),
        ("hdr", 'hdr needs a header name: "hdr:NAME"'),
        ("url_param:", 'url_param needs a parameter name: "url_param:NAME"'),
        ("leastconn:x", 'leastconn takes no argument; got "leastconn:x"'),
    ],
)
def test_a_bad_balance_is_reported(written: str, message: str) -> None:
    source = BASE.replace("[backends.app]\n", f'[backends.app]\nbalance = "{written}"\n')
    [problem] = errors(source)
    assert problem.startswith("weir.toml:6: backends.app.balance: ")
    assert problem.endswith(message)


def test_choices_suggest_the_closest_spelling() -> None:
    source = BASE.replace("[backends.app]\n", '[backends.app]\nhttp_reuse = "savf"\n')
    assert errors(source) == [
        'weir.toml:6: backends.app.http_reuse: must be one of safe, never, always; got "savf"; '
        "did you mean 'safe'?"
    ]


def test_consistent_hashing_without_a_hashed_algorithm_warns(tmp_path: Path) -> None:
    source = BASE.replace("[backends.app]\n", '[backends.app]\nhash_type = "consistent"\n')
    [problem] = checked(tmp_path, source)
    assert (problem.line, problem.key, problem.severity) == (6, "backends.app.hash_type", "warning")


@pytest.mark.parametrize("status", ["200", "200,301", "200-399", "200, 204-206,301"])
def test_expect_status_accepts_codes_lists_and_ranges(status: str) -> None:
    config = load_text(BASE + f'\n[backends.app.check]\nexpect_status = "{status}"\n')
    assert config.backends["app"].check.expect_status == status  # type: ignore[union-attr]


@pytest.mark.parametrize("status", ["2xx", "399-200", "99", "600", "200,", 200])
def test_expect_status_refuses(status: object) -> None:
    value = f'"{status}"' if isinstance(status, str) else status
    [problem] = errors(BASE + f"\n[backends.app.check]\nexpect_status = {value}\n")
    assert problem.startswith("weir.toml:11: backends.app.check.expect_status: ")


@pytest.mark.parametrize(
    ("on", "valid"),
    [("src", True), ("cookie:JSESSIONID", True), ("cookie:", False), ("dst", False)],
)
def test_stick_on(on: str, valid: bool) -> None:
    source = BASE + f'\n[backends.app.stick]\non = "{on}"\nsize = "1m"\n'
    if valid:
        stick = load_text(source).backends["app"].stick
        assert stick is not None and (stick.on, stick.size) == (on, 1 << 20)
    else:
        assert errors(source) == [
            f'weir.toml:11: backends.app.stick.on: must be "src" or "cookie:NAME"; got "{on}"'
        ]


# -- inheritance -------------------------------------------------------------------------


def test_defaults_are_inherited_and_overridden_key_by_key() -> None:
    source = """
        [defaults]
        retries = 5
        redispatch = false
        [defaults.timeouts]
        connect = "1s"
        client = "1m"

        [frontends.www]
        bind = "127.0.0.1:8080"
        default_backend = "app"
        [frontends.www.timeouts]
        client = "2m"

        [backends.app]
        retries = 1
        [backends.app.timeouts]
        server = "90s"
        [[backends.app.servers]]
        name = "web1"
        address = "127.0.0.1:9001"

        [backends.other]
        [[backends.other.servers]]
        name = "web1"
        address = "127.0.0.1:9001"
        """
    config = load_text(text(source))
    assert config.defaults.timeouts == Timeouts(connect=1.0, client=60.0)
    assert config.frontends["www"].timeouts == Timeouts(connect=1.0, client=120.0)
    app, other = config.backends["app"], config.backends["other"]
    assert app.timeouts == Timeouts(connect=1.0, client=60.0, server=90.0)
    assert (app.retries, app.redispatch) == (1, False)
    assert other.timeouts == config.defaults.timeouts
    assert (other.retries, other.redispatch) == (5, False)


def test_frontends_cannot_set_backend_options() -> None:
    source = BASE.replace('default_backend = "app"', 'default_backend = "app"\nretries = 2')
    assert errors(source) == [
        "weir.toml:4: frontends.www.retries: unknown key (valid: bind, default_backend, "
        "forwardfor, timeouts)"
    ]


# -- high availability -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "interval", "valid"),
    [
        (3, "100ms", True),
        (3, "40950ms", True),
        (3, "5ms", False),
        (3, "41s", False),
        (2, "1s", True),
        (2, "100ms", False),
        (2, "256s", False),
    ],
)
def test_vrrp_advert_interval_fits_the_version(version: int, interval: str, valid: bool) -> None:
    source = f'[ha.vrrp]\nversion = {version}\nadvert_interval = "{interval}"\n'
    if valid:
        assert load_text(source).ha.vrrp.version == version  # type: ignore[union-attr]
    else:
        [problem] = errors(source)
        assert problem.startswith(f"weir.toml:3: ha.vrrp.advert_interval: VRRP version {version}")


def test_vrrp_addresses_are_checked_item_by_item() -> None:
    source = '[ha.vrrp]\nvips = ["198.18.0.100/24", "198.18.0.300/24"]\n'
    source += 'unicast_peers = ["10.0.0.2", "lb2"]\n'
    assert errors(source) == [
        'weir.toml:2: ha.vrrp.vips[1]: invalid address "198.18.0.300/24": '
        'expected "ADDRESS/PREFIX", e.g. "198.18.0.100/24"',
        'weir.toml:3: ha.vrrp.unicast_peers[1]: invalid IP address "lb2"',
    ]


def test_vrrp_instances_inherit_from_ha_vrrp_except_what_tells_them_apart() -> None:
    source = """
        [ha.vrrp]
        interface = "eth0"
        vrid = 51
        priority = 150
        advert_interval = "100ms"
        vips = ["198.18.0.100/24"]
        notify = "/etc/weir/notify.sh"
        name = "front"
        hint_port = 7999

        [[ha.vrrp.instances]]
        vrid = 52
        version = 2
        advert_interval = "1s"
        vips = ["198.18.0.101/24"]
    """
    vrrp = load_text(text(source)).ha.vrrp  # type: ignore[union-attr]
    assert vrrp is not None
    first, second = vrrp.all_instances()
    assert first is vrrp and len(vrrp.instances) == 1
    assert (second.interface, second.priority, second.notify, second.hint_port) == (
        "eth0",
        150,
        "/etc/weir/notify.sh",
        7999,
    )
    assert (second.vrid, second.version, second.advert_interval) == (52, 2, 1.0)
    assert (first.instance_name(), first.state_path()) == ("front", "/run/weir/vrrp-front.json")
    assert (second.instance_name(), second.state_path()) == ("VI_52", "/run/weir/vrrp-52.json")


def test_vrrp_instances_may_share_nothing_that_tells_them_apart() -> None:
    source = """
        [ha.vrrp]
        vrid = 51
        advert_interval = "100ms"
        vips = ["198.18.0.100/24"]
        [[ha.vrrp.instances]]
        vrid = 51
        vips = ["198.18.0.100/24"]
        [[ha.vrrp.instances]]
        vrid = 51
        version = 2
        vips = ["198.18.0.102/24"]
        [[ha.vrrp.instances]]
        vrid = 53
        vips = ["198.18.0.103/24"]
        state_file = "/run/weir/vrrp-51.json"
        [[ha.vrrp.instances]]
        priority = 3
        hint_port = 70000
    """
    assert errors(source) == [
        "weir.toml:6: ha.vrrp.instances[0].vrid: VRID 51 (VRRPv3 on eth1) is already used "
        "by [ha.vrrp] (line 1)",
        "weir.toml:7: ha.vrrp.instances[0].vips: VIP 198.18.0.100 is already used "
        "by [ha.vrrp] (line 1)",
        "weir.toml:8: ha.vrrp.instances[1].advert_interval: VRRP version 2 needs whole "
        "seconds between 1s and 255s (it inherits 0.1s from [ha.vrrp]; set it here)",
        "weir.toml:8: ha.vrrp.instances[1].name: name VI_51 is already used by [ha.vrrp] "
        "(line 1); set name to tell them apart",
        "weir.toml:15: ha.vrrp.instances[2].state_file: state file /run/weir/vrrp-51.json "
        "is already used by [ha.vrrp] (line 1)",
        "weir.toml:16: ha.vrrp.instances[3].vrid: required key is missing",
        "weir.toml:16: ha.vrrp.instances[3].vips: required key is missing",
        "weir.toml:18: ha.vrrp.instances[3].hint_port: must be between 0 and 65535; got 70000",
    ]


def test_vrrp_instances_must_be_tables() -> None:
    assert errors("[ha.vrrp]\ninstances = [1]\n") == [
        "weir.toml:2: ha.vrrp.instances[0]: expected a table, got integer 1"
    ]


def test_sync_peers_need_unique_names() -> None:
    source = '[ha.sync]\nlocal = "lb1"\nbind = "0.0.0.0:7777"\n'
    source += 'peers = [{ name = "lb1", address = "10.0.0.1:7777" }]\n'
    assert errors(source) == [
        "weir.toml:4: ha.sync.peers[0].name: name 'lb1' is already taken by local or another peer"
    ]


# -- weir check --------------------------------------------------------------------------


def test_run_check_on_a_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "weir.toml"
    path.write_text(BASE + "\n[backends.spare]\n")
    assert run_check(str(path)) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: configuration is valid\n"
    assert (
        err == f"{path}:10: backends.spare.servers: warning: backend has no servers; "
        "requests sent to it will get 503\n"
    )


def test_run_check_on_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "weir.toml"
    path.write_text(BASE.replace("[backends.app]", "[backends.app]\nbalance = 1"))
    assert run_check(str(path)) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"{path}:6: backends.app.balance: expected a string, got integer 1\n"


def test_config_error_message_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as raised:
        load_text("[global]\nmaxconn = 0\nlog = 5\n", "f.toml")
    assert str(raised.value) == (
        "f.toml:2: global.maxconn: must be at least 1; got 0\n"
        "f.toml:3: global.log: expected a string, got integer 5"
    )


# -- the line locator --------------------------------------------------------------------


def test_locate_finds_tables_arrays_inline_tables_and_dotted_keys() -> None:
    lines = locate(
        text(
            """
            # [not.a.table] in a comment
            title = "a # not a comment [x]"
            [a]
            b.c = 1
            "d.e" = 'x'
            [[a.list]]
            v = [1, [2, 3],
                 { w = 4 }]
            [[a.list]]
            s = \"\"\"
            [fake]
            \"\"\"
            t = 1
            [a.list.sub]
            u = { x = 1, y = { z = 2 } }
            """
        )
    )
    assert lines[("title",)] == 2
    assert lines[("a",)] == 3
    assert lines[("a", "b")] == lines[("a", "b", "c")] == 4
    assert lines[("a", "d.e")] == 5
    assert lines[("a", "list", 0)] == 6
    assert lines[("a", "list", 0, "v", 1, 0)] == 7
    assert lines[("a", "list", 0, "v", 2, "w")] == 8
    assert lines[("a", "list", 1)] == 9
    assert lines[("a", "list", 1, "t")] == 13
    assert lines[("a", "list", 1, "sub")] == 14
    assert lines[("a", "list", 1, "sub", "u", "y", "z")] == 15
    assert ("fake",) not in lines and ("not",) not in lines


def test_format_key_quotes_keys_that_are_not_bare() -> None:
    assert format_key(("backends", "app", "servers", 1, "weight")) == (
        "backends.app.servers[1].weight"
    )
    assert format_key(("frontends", "a.b", "bind", 0)) == 'frontends."a.b".bind[0]'


def _key_paths(value: object, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    paths = [path] if path else []
    if isinstance(value, dict):
        for key, item in value.items():
            paths += _key_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += _key_paths(item, (*path, index))
    return paths


def test_locate_finds_every_key_of_the_contract_example() -> None:
    source = (ROOT / "tests/data/full.toml").read_text()
    lines = locate(source)
    for path in _key_paths(tomllib.loads(source)):
        assert lines[path] >= 1, format_key(path)


def test_locate_counts_crlf_line_ends() -> None:
    lines = locate('[a]\r\nx = "y"  # note\r\n\r\n[[b]]\r\nz = [\r\n  1,\r\n  2,\r\n]\r\n')
    assert (lines[("a", "x")], lines[("b", 0)], lines[("b", 0, "z", 1)]) == (2, 4, 7)


@pytest.mark.parametrize(
    ("log", "valid"),
    [
        ("stdout", True),
        ("/var/log/weir.log", True),
        ("syslog://127.0.0.1:514", True),
        ("syslog://[::1]", True),
        ("syslog://logs.internal", True),
        ("syslog://a:99999", False),
        ("weir.log", False),
        ("stderr", False),
    ],
)
def test_log_targets(log: str, valid: bool) -> None:
    source = f'[global]\nlog = "{log}"\n'
    if valid:
        assert load_text(source).global_.log == log
    else:
        [problem] = errors(source)
        assert problem.startswith("weir.toml:2: global.log: ")


def test_unknown_bind_options_are_errors() -> None:
    source = BASE.replace('["127.0.0.1:8080"]', '"127.0.0.1:8080 v4v6"')
    assert errors(source) == ['weir.toml:2: frontends.www.bind: unknown bind option "v4v6"']


def test_metrics_bind_is_off_by_default_and_an_address_when_set() -> None:
    assert load_text(BASE).global_.metrics_bind is None
    assert load_text('[global]\nmetrics_bind = ""\n').global_.metrics_bind is None
    on = load_text('[global]\nmetrics_bind = "127.0.0.1:9101"\n').global_.metrics_bind
    assert on == Address("127.0.0.1", 9101)
    assert errors('[global]\nmetrics_bind = "9101"\n') == [
        'weir.toml:2: global.metrics_bind: invalid address "9101": expected "host:port"'
    ]
    assert errors("[global]\nmetrics_bind = 9101\n")[0].startswith(
        "weir.toml:2: global.metrics_bind: "
    )


def test_metrics_bind_may_not_take_a_frontend_address() -> None:
    source = '[global]\nmetrics_bind = "0.0.0.0:8080"\n' + BASE
    assert errors(source) == [
        "weir.toml:2: global.metrics_bind: 0.0.0.0:8080 conflicts with "
        "127.0.0.1:8080 bound by frontend 'www'"
    ]
