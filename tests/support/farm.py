"""Config text for a one-frontend, one-backend farm, and parsed access-log lines."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from tests.support.proxy import servers_toml


def farm_config(
    servers: list[tuple[str, str]],
    *,
    global_: str = "",
    defaults: str = "",
    timeouts: str = "",
    backend: str = "",
    server_extra: dict[str, dict[str, object]] | None = None,
) -> str:
    """A ``weir run`` config: frontend ``www`` on ``{port}`` to backend ``app``.

    ``global_``, ``defaults``, ``timeouts`` and ``backend`` are TOML lines added
    to ``[global]``, ``[defaults]``, ``[defaults.timeouts]`` and ``[backends.app]``;
    ``server_extra`` maps a server name to extra keys (``maxconn``, ``weight``...).
    """
    return (
        '[global]\nlog = "{tmp}/weir.log"\nruntime_socket = "{tmp}/weir.sock"\n'
        f"{global_}\n"
        f"[defaults]\n{defaults}\n"
        f"[defaults.timeouts]\n{timeouts}\n"
        '[frontends.www]\nbind = ["127.0.0.1:{port}"]\ndefault_backend = "app"\n'
        f"[backends.app]\n{backend}\n" + servers_toml("app", servers, **(server_extra or {}))
    )


_LINE = re.compile(
    r"\]: (?P<client>\S+) \[(?P<date>[^\]]+)\] (?P<frontend>\S+) "
    r"(?P<backend>[^/\s]+)/(?P<server>\S+) "
    r"(?P<tr>-?\d+)/(?P<tw>-?\d+)/(?P<tc>-?\d+)/(?P<tresp>-?\d+)/(?P<ta>\+?-?\d+) "
    r"(?P<status>-?\d+) (?P<bytes>\+?\d+) (?P<cookie_req>\S+) (?P<cookie_resp>\S+) "
    r"(?P<term>\S{4}) (?P<actconn>\d+)/(?P<feconn>\d+)/(?P<beconn>\d+)/(?P<srvconn>\d+)/"
    r"(?P<retries>\+?\d+) (?P<srv_queue>\d+)/(?P<be_queue>\d+) \"(?P<request>.*)\"$"
)


@dataclass
class LogLine:
    raw: str
    frontend: str
    backend: str
    server: str
    tr: int
    tw: int
    tc: int
    tresp: int
    ta: int
    status: int
    term: str
    retries: str
    request: str
    cookie_req: str = "-"
    cookie_resp: str = "-"


def parse(line: str) -> LogLine:
    m = _LINE.search(line)
    assert m, f"not an access-log line: {line!r}"
    g = m.groupdict()
    return LogLine(
        raw=line,
        frontend=g["frontend"],
        backend=g["backend"],
        server=g["server"],
        tr=int(g["tr"]),
        tw=int(g["tw"]),
        tc=int(g["tc"]),
        tresp=int(g["tresp"]),
        ta=int(g["ta"].lstrip("+")),
        status=int(g["status"]),
        term=g["term"],
        retries=g["retries"],
        cookie_req=g["cookie_req"],
        cookie_resp=g["cookie_resp"],
        request=g["request"],
    )


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return bool(value)
        time.sleep(interval)
