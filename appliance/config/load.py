"""Loading and validating the configuration file (interfaces.md §2, docs/configuration.md).

``load``/``load_text`` turn TOML into the frozen objects of ``model.py`` or raise
``ConfigError`` carrying every problem found, each located as
``FILE:LINE: dotted.key: message``. ``check`` returns the same problems, warnings
included, without raising. Validation goes section by section with a table of
keys and value checks (``values.py``) per section, then checks what spans
sections: backend references, duplicate binds.

Frontends are optional here because ``weir ha`` reads only ``[ha.vrrp]``; pass
``for_run=True`` (as ``weir run`` does) to also require at least one frontend.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import values as v
from .locate import KeyPath, Lines, format_key
from .model import (
    HASHED_ALGORITHMS,
    Address,
    BackendConfig,
    CheckConfig,
    Config,
    CookieConfig,
    Defaults,
    FrontendConfig,
    GlobalConfig,
    HaConfig,
    ServerConfig,
    StickConfig,
    SyncConfig,
    SyncPeer,
    Timeouts,
    VrrpConfig,
)
from .units import parse_duration, parse_size

__all__ = [
    "ConfigError",
    "Problem",
    "check",
    "load",
    "load_text",
    "parse_duration",
    "parse_size",
]

_SECTIONS = ("global", "defaults", "frontends", "backends", "ha")
_GLOBAL: Mapping[str, v.Convert] = {
    "maxconn": v.integer(1),
    "log": v.log_target,
    "runtime_socket": v.string,
    "runtime_socket_mode": v.file_mode,
    "runtime_socket_owner": v.string,
    "runtime_socket_group": v.string,
    "grace": v.duration(),
    "max_header_bytes": v.size(1024, 1048576),
    "metrics_bind": v.optional_address,
}
_DEFAULTS: Mapping[str, v.Convert] = {"retries": v.integer(0), "redispatch": v.boolean}
_TIMEOUTS: Mapping[str, v.Convert] = {
    field.name: v.duration() for field in dataclasses.fields(Timeouts)
}
_FRONTEND: Mapping[str, v.Convert] = {
    "bind": v.binds,
    "default_backend": v.string,
    "forwardfor": v.boolean,
}
_BACKEND: Mapping[str, v.Convert] = {
    "balance": v.balance,
    "hash_type": v.choice("map-based", "consistent"),
    "http_reuse": v.choice("safe", "never", "always"),
    "allbackups": v.boolean,
    **_DEFAULTS,
}
_COOKIE: Mapping[str, v.Convert] = {
    "name": v.matching(v.TOKEN, "a cookie name is a token such as SERVERID"),
    "mode": v.choice("insert", "prefix", "rewrite"),
    "indirect": v.boolean,
    "nocache": v.boolean,
    "httponly": v.boolean,
    "secure": v.boolean,
    "domain": v.string,
    "maxidle": v.duration(),
    "maxlife": v.duration(),
}
_STICK: Mapping[str, v.Convert] = {
    "on": v.stick_on,
    "size": v.size(1),
    "expire": v.duration(positive=True),
}
_CHECK: Mapping[str, v.Convert] = {
    "type": v.choice("tcp", "http"),
    "method": v.matching(v.TOKEN, "an HTTP method such as GET or HEAD"),
    "path": v.http_path,
    "host": v.string,
    "expect_status": v.expect_status,
    "expect_body": v.string,
    "inter": v.duration(positive=True),
    "fastinter": v.duration(positive=True),
    "downinter": v.duration(positive=True),
    "rise": v.integer(1),
    "fall": v.integer(1),
    "slowstart": v.duration(),
    "observe": v.choice("none", "layer4", "layer7"),
    "error_limit": v.integer(1),
}
# Characters a server's cookie value may not hold in a given cookie mode (cookie.py).
_RESERVED_IN_COOKIE = {"insert": "|", "prefix": "~"}
_RESERVED_WHY = {
    "insert": "it separates the value from the maxidle/maxlife dates",
    "prefix": "it separates the server's value from the application's",
}
_NAME_RULE = "use letters, digits, '_', '.' and '-'"
_SERVER: Mapping[str, v.Convert] = {
    "name": v.matching(v.NAME, _NAME_RULE),
    "address": v.address,
    "id": v.integer(1),
    "weight": v.integer(0, 256),
    "maxconn": v.integer(0),
    "maxqueue": v.integer(0),
    "cookie": v.matching(v.TOKEN, "a cookie value is a token (no spaces, quotes or ';')"),
    "check": v.boolean,
    "backup": v.boolean,
    "redir": v.redirect,
    "agent_port": v.integer(0, 65535),
}
_VRRP: Mapping[str, v.Convert] = {
    "interface": v.matching(re.compile(r"[^\s/]{1,15}"), "a network interface name"),
    "vrid": v.integer(1, 255),
    "priority": v.integer(1, 255),
    "advert_interval": v.duration(positive=True),
    "version": v.integer(2, 3),
    "preempt": v.boolean,
    "preempt_delay": v.duration(),
    "vips": v.array(v.interface_address),
    "unicast_peers": v.array(v.ip),
    "track_proxy": v.boolean,
    "notify": v.string,
    "state_file": v.string,
    "hint_port": v.integer(0, 65535),
    "name": v.matching(v.NAME, _NAME_RULE),
}
# What an [[ha.vrrp.instances]] entry never inherits from [ha.vrrp]: what tells it apart.
_VRRP_OWN = ("vrid", "vips", "state_file", "name")
_SYNC: Mapping[str, v.Convert] = {
    "local": v.matching(v.NAME, _NAME_RULE),
    "bind": v.address,
    "tls_cert": v.string,
    "tls_key": v.string,
    "tls_ca": v.string,
}
_SYNC_TLS = ("tls_cert", "tls_key", "tls_ca")
_PEER: Mapping[str, v.Convert] = {"name": v.matching(v.NAME, _NAME_RULE), "address": v.address}
_TOML_POSITION = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


@dataclass(frozen=True)
class Problem:
    """One mistake in a configuration file, located at a line and a dotted key."""

    path: str
    line: int
    key: str
    message: str
    severity: str = "error"  # or "warning"

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.path}:{self.line}: {self.key}: {prefix}{self.message}"


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` lists all found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


def load(path: str, *, for_run: bool = False) -> Config:
    """Read and validate the file at ``path``; raise ConfigError listing every problem.

    Warnings alone do not raise. ``for_run`` also requires at least one frontend.
    """
    config, problems = _read(path, for_run)
    return _usable(config, problems)


def load_text(text: str, path: str = "<string>", *, for_run: bool = False) -> Config:
    """Validate TOML ``text`` as if read from ``path``; see ``load``."""
    config, problems = _validate(text, path, for_run)
    return _usable(config, problems)


def check(path: str, *, for_run: bool = False) -> list[Problem]:
    """Every problem in the file at ``path``, warnings included; never raises for them.

    A missing or unreadable file is reported as a problem at line 0.
    """
    return _read(path, for_run)[1]


def _usable(config: Config | None, problems: list[Problem]) -> Config:
    if config is None:
        raise ConfigError(problems)
    return config


def _read(path: str, for_run: bool) -> tuple[Config | None, list[Problem]]:
    try:
        with open(path, "rb") as file:
            text = file.read().decode("utf-8")
    except OSError as error:
        reason = error.strerror or str(error)
        return None, [Problem(path, 0, "file", f"cannot read the configuration: {reason}")]
    except UnicodeDecodeError as error:
        return None, [Problem(path, 0, "file", f"not UTF-8 text: {error.reason}")]
    return _validate(text, path, for_run)


def _validate(text: str, path: str, for_run: bool) -> tuple[Config | None, list[Problem]]:
    """The config (None if any error) and all problems sorted by line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return None, [_syntax_problem(error, text, path)]
    reader = _Reader(path, Lines(text))
    config = reader.config(data, for_run)
    problems = sorted(reader.problems, key=lambda problem: problem.line)
    if any(problem.severity == "error" for problem in problems):
        return None, problems
    return config, problems


def _syntax_problem(error: tomllib.TOMLDecodeError, text: str, path: str) -> Problem:
    message = str(error)
    position = _TOML_POSITION.search(message)
    if position is None:
        return Problem(path, 0, "toml", f"syntax error: {message}")
    line = int(position[1]) if position[1] else text.count("\n") + 1
    where = f" at column {position[2]}" if position[2] else " at the end of the file"
    return Problem(path, line, "toml", f"syntax error: {message[: position.start()]}{where}")


class _Reader:
    """Walks the parsed TOML, collecting problems and building the model."""

    def __init__(self, path: str, lines: Lines) -> None:
        self.path = path
        self.lines = lines
        self.problems: list[Problem] = []

    def report(self, at: KeyPath, message: str, *, warning: bool = False) -> None:
        severity = "warning" if warning else "error"
        problem = Problem(self.path, self.lines.of(at), format_key(at), message, severity)
        self.problems.append(problem)

    def fields(
        self,
        table: dict[str, Any],
        at: KeyPath,
        spec: Mapping[str, v.Convert],
        tables: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Check the keys of ``table`` against ``spec``; ``tables`` are read by the caller."""
        result = {}
        for key, value in table.items():
            if key in tables:
                continue
            convert = spec.get(key)
            if convert is None:
                self.unknown(at, key, [*spec, *tables])
                continue
            try:
                result[key] = convert(value)
            except v.InvalidItems as error:
                for item, message in error.problems:
                    self.report((*at, key, *item), message)
            except ValueError as error:
                self.report((*at, key), str(error))
        return result

    def unknown(self, at: KeyPath, key: str, valid: list[str]) -> None:
        what = "unknown section" if not at else "unknown key"
        hint = v.did_you_mean(key, valid) or f" (valid: {', '.join(valid)})"
        self.report((*at, key), what + hint)

    def table(self, parent: dict[str, Any], key: str, at: KeyPath) -> dict[str, Any] | None:
        """``parent[key]`` if it is a table; None (reported) if it is something else."""
        value = parent.get(key)
        if value is None or isinstance(value, dict):
            return value
        self.report((*at, key), f"expected a table, got {v.describe(value)}")
        return None

    def require(self, found: dict[str, Any], raw: dict[str, Any], at: KeyPath, *keys: str) -> bool:
        """True if every key in ``keys`` was given and valid; reports the missing ones.

        A missing key is not reported again when a misspelling of it was (as unknown).
        """
        for key in keys:
            if key not in raw and not difflib.get_close_matches(key, list(raw), n=1):
                self.report((*at, key), "required key is missing")
        return all(key in found for key in keys)

    def config(self, data: dict[str, Any], for_run: bool) -> Config:
        self.fields(data, (), {}, tables=_SECTIONS)
        global_ = GlobalConfig(
            **self.fields(self.table(data, "global", ()) or {}, ("global",), _GLOBAL)
        )
        defaults = self.defaults(self.table(data, "defaults", ()) or {})
        backends = self.named_sections(
            data, "backends", lambda n, s, at: self.backend(n, s, at, defaults)
        )
        frontends = self.named_sections(
            data, "frontends", lambda n, s, at: self.frontend(n, s, at, defaults, backends)
        )
        self.check_binds(data, frontends)
        self.check_metrics_bind(global_, frontends)
        if for_run and not frontends:
            self.report(("frontends",), "at least one frontend is required to run the proxy")
        ha = self.ha(self.table(data, "ha", ()))
        return Config(self.path, global_, defaults, frontends, backends, ha)

    def defaults(self, section: dict[str, Any]) -> Defaults:
        found = self.fields(section, ("defaults",), _DEFAULTS, tables=("timeouts",))
        timeouts = self.timeouts(section, ("defaults",), Timeouts())
        return Defaults(timeouts=timeouts, **found)

    def timeouts(self, section: dict[str, Any], at: KeyPath, inherited: Timeouts) -> Timeouts:
        """``inherited`` with the keys of ``section``'s ``timeouts`` table replaced."""
        table = self.table(section, "timeouts", at)
        if table is None:
            return inherited
        return dataclasses.replace(inherited, **self.fields(table, (*at, "timeouts"), _TIMEOUTS))

    def named_sections(
        self, data: dict[str, Any], kind: str, build: Callable[[str, dict[str, Any], KeyPath], Any]
    ) -> dict[str, Any]:
        """``[frontends.NAME]`` / ``[backends.NAME]``: check names, build each valid one."""
        built = {}
        for name, section in (self.table(data, kind, ()) or {}).items():
            at = (kind, name)
            if not v.NAME.fullmatch(name):
                self.report(at, f"invalid name {name!r}: {_NAME_RULE}")
            if not isinstance(section, dict):
                self.report(at, f"expected a table [{format_key(at)}], got {v.describe(section)}")
                continue
            item = build(name, section, at)
            if item is not None:
                built[name] = item
        return built

    def frontend(
        self,
        name: str,
        section: dict[str, Any],
        at: KeyPath,
        defaults: Defaults,
        backends: dict[str, BackendConfig],
    ) -> FrontendConfig | None:
        found = self.fields(section, at, _FRONTEND, tables=("timeouts",))
        timeouts = self.timeouts(section, at, defaults.timeouts)
        target = found.get("default_backend")
        if target is not None and target not in backends:
            known = list(backends)
            hint = v.did_you_mean(target, known) or (
                f" (defined: {', '.join(known)})" if known else " (no backends are defined)"
            )
            self.report((*at, "default_backend"), f"no backend named {target!r}{hint}")
        if not self.require(found, section, at, "bind", "default_backend"):
            return None
        return FrontendConfig(name=name, timeouts=timeouts, **found)

    def backend(
        self, name: str, section: dict[str, Any], at: KeyPath, defaults: Defaults
    ) -> BackendConfig:
        subsections = ("timeouts", "cookie", "stick", "check", "servers")
        found = self.fields(section, at, _BACKEND, tables=subsections)
        if "balance" in found:
            found["balance"], found["balance_arg"] = found["balance"]
        if found.get("hash_type") == "consistent" and found.get("balance") not in HASHED_ALGORITHMS:
            self.report(
                (*at, "hash_type"),
                f"hash_type only applies to {', '.join(HASHED_ALGORITHMS)}; it has no effect here",
                warning=True,
            )
        found.setdefault("retries", defaults.retries)
        found.setdefault("redispatch", defaults.redispatch)
        cookie = self.optional(section, at, "cookie", _COOKIE, CookieConfig)
        servers = self.servers(section, at, cookie_mode=cookie.mode if cookie else None)
        if not section.get("servers"):
            self.report(
                (*at, "servers"),
                "backend has no servers; requests sent to it will get 503",
                warning=True,
            )
        return BackendConfig(
            name=name,
            timeouts=self.timeouts(section, at, defaults.timeouts),
            servers=servers,
            cookie=cookie,
            stick=self.optional(section, at, "stick", _STICK, StickConfig),
            check=self.optional(section, at, "check", _CHECK, CheckConfig),
            **found,
        )

    def optional(
        self,
        section: dict[str, Any],
        at: KeyPath,
        key: str,
        spec: Mapping[str, v.Convert],
        build: type[CookieConfig] | type[StickConfig] | type[CheckConfig],
    ) -> Any:
        """An optional sub-table whose keys all have defaults; None when absent."""
        table = self.table(section, key, at)
        if table is None:
            return None
        return build(**self.fields(table, (*at, key), spec))

    def servers(
        self, section: dict[str, Any], at: KeyPath, *, cookie_mode: str | None
    ) -> tuple[ServerConfig, ...]:
        raw = section.get("servers", [])
        if not isinstance(raw, list):
            self.report((*at, "servers"), f"expected [[{format_key((*at, 'servers'))}]] tables")
            return ()
        servers = []
        first: dict[tuple[str, object], int] = {}  # (key, value) -> index of the first server
        unique = ("name", "id", "cookie") if cookie_mode else ("name", "id")
        reserved = _RESERVED_IN_COOKIE.get(cookie_mode or "", "")
        for index, server in enumerate(raw):
            server_at = (*at, "servers", index)
            if not isinstance(server, dict):
                self.report(server_at, f"expected a table, got {v.describe(server)}")
                continue
            found = self.fields(server, server_at, _SERVER)
            complete = self.require(found, server, server_at, "name", "address")
            if "name" not in found:
                continue
            found.setdefault("id", index + 1)
            found.setdefault("cookie", found["name"])
            if reserved and reserved in found["cookie"]:
                self.report(
                    (*server_at, "cookie"),  # a name cannot hold either character
                    f"{reserved!r} is reserved in {cookie_mode} mode cookies "
                    f"({_RESERVED_WHY[cookie_mode]}); the server's cookie value "
                    f"{found['cookie']!r} must not contain it",
                )
            for key in unique:
                owner = first.setdefault((key, found[key]), index)
                if owner == index:
                    continue
                # A cookie that defaults to a duplicate name is the same mistake, reported once.
                if (
                    key == "cookie"
                    and "cookie" not in server
                    and owner == first["name", found["name"]]
                ):
                    continue
                self.report(
                    (*server_at, key), self.duplicate(key, found[key], raw, at, owner, server)
                )
            if complete:
                servers.append(ServerConfig(**found))
        return tuple(servers)

    def duplicate(
        self,
        key: str,
        value: object,
        raw: list[dict[str, Any]],
        at: KeyPath,
        owner: int,
        server: dict[str, Any],
    ) -> str:
        """Message for a server ``key`` whose ``value`` server number ``owner`` already has."""
        line = self.lines.of((*at, "servers", owner))
        message = (
            f"duplicate {key} {value!r}: server {raw[owner]['name']!r} (line {line}) has it too"
        )
        if key not in server:
            message += f"; {key} defaults to the server's {_DEFAULT_OF[key]}, set it explicitly"
        return message

    def check_binds(self, data: dict[str, Any], frontends: dict[str, FrontendConfig]) -> None:
        """Two listeners on one address:port, or a wildcard and a specific address, collide."""
        seen: list[tuple[Address, str]] = []
        for name, frontend in frontends.items():
            raw = data["frontends"][name]["bind"]
            for index, address in enumerate(frontend.bind):
                at = ("frontends", name, "bind", *((index,) if isinstance(raw, list) else ()))
                for other, owner in seen:
                    if _collide(address, other):
                        self.report(
                            at, f"{address} conflicts with {other} bound by frontend {owner!r}"
                        )
                        break
                seen.append((address, name))

    def check_metrics_bind(
        self, global_: GlobalConfig, frontends: dict[str, FrontendConfig]
    ) -> None:
        """The metrics listener may not take a frontend's address."""
        metrics = global_.metrics_bind
        if metrics is None:
            return
        for name, frontend in frontends.items():
            for address in frontend.bind:
                if _collide(metrics, address):
                    self.report(
                        ("global", "metrics_bind"),
                        f"{metrics} conflicts with {address} bound by frontend {name!r}",
                    )
                    return

    def ha(self, section: dict[str, Any] | None) -> HaConfig | None:
        if section is None:
            return None
        self.fields(section, ("ha",), {}, tables=("vrrp", "sync"))
        vrrp = self.vrrp(self.table(section, "vrrp", ("ha",)))
        return HaConfig(vrrp=vrrp, sync=self.sync(self.table(section, "sync", ("ha",))))

    def vrrp(self, table: dict[str, Any] | None) -> VrrpConfig | None:
        """``[ha.vrrp]``, the first virtual router, with its ``[[ha.vrrp.instances]]``."""
        if table is None:
            return None
        at: KeyPath = ("ha", "vrrp")
        found = self.fields(table, at, _VRRP, tables=("instances",))
        self.check_advert_interval(found, table, at)
        inherited = {key: value for key, value in found.items() if key not in _VRRP_OWN}
        raw = table.get("instances", [])
        if not isinstance(raw, list):
            self.report((*at, "instances"), "expected [[ha.vrrp.instances]] tables")
            raw = []
        instances: list[tuple[VrrpConfig, KeyPath]] = []
        for index, item in enumerate(raw):
            item_at = (*at, "instances", index)
            if not isinstance(item, dict):
                self.report(item_at, f"expected a table, got {v.describe(item)}")
                continue
            own = self.fields(item, item_at, _VRRP)
            if not self.require(own, item, item_at, "vrid", "vips"):
                continue
            merged = {**inherited, **own}
            self.check_advert_interval(merged, item, item_at)
            instances.append((VrrpConfig(**merged), item_at))
        first = VrrpConfig(instances=tuple(config for config, _ in instances), **found)
        self.check_instances_apart([(first, at), *instances])
        return first

    def check_advert_interval(
        self, found: dict[str, Any], raw: dict[str, Any], at: KeyPath
    ) -> None:
        """RFC 3768 (v2) counts whole seconds in a byte; RFC 5798 (v3) centiseconds in 12 bits."""
        defaults = VrrpConfig()
        version = found.get("version", defaults.version)
        interval = found.get("advert_interval", defaults.advert_interval)
        problem = ""
        if version == 2 and not (interval.is_integer() and 1 <= interval <= 255):
            problem = "VRRP version 2 needs whole seconds between 1s and 255s"
        centiseconds = interval * 100
        if version == 3 and not (
            abs(centiseconds - round(centiseconds)) < 1e-6 and 1 <= round(centiseconds) <= 4095
        ):
            problem = "VRRP version 3 needs a multiple of 10ms between 10ms and 40950ms"
        if problem and "advert_interval" not in raw and len(at) > 2:
            problem += f" (it inherits {interval:g}s from [ha.vrrp]; set it here)"
        if problem:
            self.report((*at, "advert_interval"), problem)

    def check_instances_apart(self, instances: list[tuple[VrrpConfig, KeyPath]]) -> None:
        """Two virtual routers may share neither VRID (per interface and version), VIP,
        name nor state file: the wire, the addresses and the console would mix them up."""
        seen: dict[object, KeyPath] = {}

        def claim(key: object, at: KeyPath, field: str, what: str, hint: str = "") -> bool:
            owner = seen.setdefault(key, at)
            if owner == at:
                return True
            where = "[ha.vrrp]" if len(owner) == 2 else format_key(owner)
            line = self.lines.of(owner)
            self.report((*at, field), f"{what} is already used by {where} (line {line}){hint}")
            return False

        for config, at in instances:
            for vip in config.vips:
                address = vip.split("/")[0]
                claim(("vip", address), at, "vips", f"VIP {address}")
            vrid = f"VRID {config.vrid} (VRRPv{config.version} on {config.interface})"
            if not claim(("vrid", config.interface, config.version, config.vrid), at, "vrid", vrid):
                continue  # its default name and state file clash too: one mistake, one line
            name, path = config.instance_name(), config.state_path()
            hint = "; set name to tell them apart"
            if claim(("name", name), at, "name", f"name {name}", hint):
                claim(("state", path), at, "state_file", f"state file {path}")

    def sync(self, section: dict[str, Any] | None) -> SyncConfig | None:
        if section is None:
            return None
        at = ("ha", "sync")
        found = self.fields(section, at, _SYNC, tables=("peers",))
        raw_peers = section.get("peers", [])
        if not isinstance(raw_peers, list):
            self.report((*at, "peers"), f"expected an array of tables, got {v.describe(raw_peers)}")
            raw_peers = []
        peers = []
        names = {found.get("local")}
        for index, peer in enumerate(raw_peers):
            peer_at = (*at, "peers", index)
            if not isinstance(peer, dict):
                self.report(
                    peer_at, f'expected {{ name = "...", address = "..." }}, got {v.describe(peer)}'
                )
                continue
            peer_found = self.fields(peer, peer_at, _PEER)
            if not self.require(peer_found, peer, peer_at, "name", "address"):
                continue
            if peer_found["name"] in names:
                self.report(
                    (*peer_at, "name"),
                    f"name {peer_found['name']!r} is already taken by local or another peer",
                )
            names.add(peer_found["name"])
            peers.append(SyncPeer(**peer_found))
        self.check_sync_tls(found, at)
        if not self.require(found, section, at, "local", "bind"):
            return None
        return SyncConfig(peers=tuple(peers), **found)

    def check_sync_tls(self, found: dict[str, Any], at: KeyPath) -> None:
        """TLS between peers needs all of certificate, key and CA, each a readable file."""
        given = [key for key in _SYNC_TLS if found.get(key)]
        if given and len(given) < len(_SYNC_TLS):
            for key in _SYNC_TLS:
                if key not in given:
                    self.report(
                        (*at, key), f"required with {', '.join(given)} (mutual TLS needs all three)"
                    )
        for key in given:
            try:
                with open(found[key], "rb"):
                    pass
            except OSError as error:
                self.report((*at, key), f"cannot read {found[key]}: {error.strerror or error}")


_DEFAULT_OF = {"id": "position", "cookie": "name"}
_WILDCARDS = ("0.0.0.0", "::")


def _collide(a: Address, b: Address) -> bool:
    if a.port != b.port:
        return False
    if a.host == b.host:
        return True
    same_family = (":" in a.host) == (":" in b.host)
    return same_family and (a.host in _WILDCARDS or b.host in _WILDCARDS)
