"""Typed configuration objects (docs/configuration.md, interfaces.md §2).

The loader (``appliance.config.load``) turns a TOML file into these frozen
objects after validating every key; nothing else in Weir reads TOML. Durations
are stored in seconds (float), sizes in bytes (int).
"""

from __future__ import annotations

from dataclasses import dataclass, field

BALANCE_ALGORITHMS = (
    "roundrobin",
    "static-rr",
    "leastconn",
    "first",
    "source",
    "uri",
    "hdr",
    "url_param",
    "random",
)
HASHED_ALGORITHMS = ("source", "uri", "hdr", "url_param")


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 5.0
    client: float = 30.0
    server: float = 30.0
    http_request: float = 10.0
    http_keep_alive: float = 5.0
    queue: float = 30.0
    check: float = 2.0
    tunnel: float = 3600.0


@dataclass(frozen=True, slots=True)
class GlobalConfig:
    maxconn: int = 20000
    log: str = "stdout"
    runtime_socket: str = "/run/weir/weir.sock"
    runtime_socket_mode: int = 0o600  # permission bits of the socket file
    runtime_socket_owner: str = ""  # user name or uid ("": the process's)
    runtime_socket_group: str = ""  # group name or gid ("": the process's)
    grace: float = 10.0
    max_header_bytes: int = 16384
    metrics_bind: Address | None = None  # the Prometheus listener (None: off)


@dataclass(frozen=True, slots=True)
class Defaults:
    retries: int = 3
    redispatch: bool = True
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class FrontendConfig:
    name: str
    bind: tuple[Address, ...]
    default_backend: str
    forwardfor: bool = False
    timeouts: Timeouts = field(default_factory=Timeouts)


@dataclass(frozen=True, slots=True)
class CookieConfig:
    name: str = "SERVERID"
    mode: str = "insert"  # insert | prefix | rewrite
    indirect: bool = True
    nocache: bool = True
    httponly: bool = True
    secure: bool = False
    domain: str = ""
    maxidle: float = 0.0
    maxlife: float = 0.0


@dataclass(frozen=True, slots=True)
class StickConfig:
    on: str = "src"  # "src" or "cookie:NAME"
    size: int = 1_000_000
    expire: float = 1800.0


@dataclass(frozen=True, slots=True)
class CheckConfig:
    type: str = "http"  # tcp | http
    method: str = "GET"
    path: str = "/health"
    host: str = ""
    expect_status: str = "200-399"
    expect_body: str = ""
    inter: float = 2.0
    fastinter: float = 0.5
    downinter: float = 5.0
    rise: int = 2
    fall: int = 3
    slowstart: float = 0.0
    observe: str = "none"  # none | layer4 | layer7: passive observation of live traffic
    error_limit: int = 10  # consecutive observed errors that take a server down


@dataclass(frozen=True, slots=True)
class ServerConfig:
    name: str
    address: Address
    id: int
    weight: int = 1
    maxconn: int = 0
    maxqueue: int = 0
    cookie: str = ""  # defaults to name (the loader fills it in)
    check: bool = True
    backup: bool = False
    redir: str = ""
    agent_port: int = 0


@dataclass(frozen=True, slots=True)
class BackendConfig:
    name: str
    balance: str = "roundrobin"  # one of BALANCE_ALGORITHMS
    balance_arg: str = ""  # header name for hdr:NAME, parameter for url_param:NAME
    hash_type: str = "map-based"  # or "consistent"
    http_reuse: str = "safe"  # safe | never | always
    retries: int = 3
    redispatch: bool = True
    allbackups: bool = False  # all usable backup servers take over, not only the first
    timeouts: Timeouts = field(default_factory=Timeouts)
    servers: tuple[ServerConfig, ...] = ()
    cookie: CookieConfig | None = None
    stick: StickConfig | None = None
    check: CheckConfig | None = None


@dataclass(frozen=True, slots=True)
class SyncPeer:
    name: str
    address: Address


@dataclass(frozen=True, slots=True)
class VrrpConfig:
    interface: str = "eth1"
    vrid: int = 51
    priority: int = 150
    advert_interval: float = 1.0
    version: int = 3
    preempt: bool = True
    preempt_delay: float = 0.0
    vips: tuple[str, ...] = ()
    unicast_peers: tuple[str, ...] = ()
    track_proxy: bool = True
    notify: str = ""  # script called on every transition (keepalived's notify); "": none
    state_file: str = ""  # JSON state for the console; "": /run/weir/vrrp-<vrid>.json
    hint_port: int = 0  # TCP port of the takeover hint between the daemons; 0: off
    name: str = ""  # instance name in logs, notify calls and the state file; "": VI_<vrid>
    # [[ha.vrrp.instances]]: the other virtual routers of this daemon, each complete (the
    # keys it does not set are inherited from [ha.vrrp]); their own ``instances`` are empty.
    instances: tuple[VrrpConfig, ...] = ()

    def all_instances(self) -> tuple[VrrpConfig, ...]:
        """Every virtual router the daemon runs: ``[ha.vrrp]`` first, then its instances."""
        return (self, *self.instances)

    def instance_name(self) -> str:
        return self.name or f"VI_{self.vrid}"

    def state_path(self) -> str:
        """The state file: ``state_file``, else /run/weir/vrrp-<vrid or name>.json."""
        return self.state_file or f"/run/weir/vrrp-{self.name or self.vrid}.json"


@dataclass(frozen=True, slots=True)
class SyncConfig:
    local: str
    bind: Address
    peers: tuple[SyncPeer, ...] = ()
    # Mutual TLS between peers: all three set, or none (plain TCP, as HAProxy's default).
    tls_cert: str = ""  # this node's certificate chain (PEM), shown to the peers
    tls_key: str = ""  # its private key (PEM)
    tls_ca: str = ""  # CA certificates (PEM) that a peer's certificate must be signed by

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert)


@dataclass(frozen=True, slots=True)
class HaConfig:
    vrrp: VrrpConfig | None = None
    sync: SyncConfig | None = None


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    global_: GlobalConfig = field(default_factory=GlobalConfig)
    defaults: Defaults = field(default_factory=Defaults)
    frontends: dict[str, FrontendConfig] = field(default_factory=dict)
    backends: dict[str, BackendConfig] = field(default_factory=dict)
    ha: HaConfig | None = None
