"""Statistics counters of frontends, backends and servers (HAProxy's ``show stat``).

Each frontend, backend and server carries one slotted ``Counters`` object.
The proxy updates them in one place per request (``Proxy.log_request``, which
already has the status, bytes, server, retries and redispatch at hand) and per
client connection (``Frontend.connection_opened``): a few attribute
increments, no allocation. Current values that the proxy keeps anyway
(``cur_conns``, queue lengths, weights, states) are read from the live objects
when ``show stat`` asks, not copied here.

Rates ("over the last elapsed second", for sparklines) are taken by
``tick``, which the proxy's one-second timer calls: it turns the running
totals into per-second deltas off the hot path.
"""

from __future__ import annotations


class Counters:
    """Running totals and maxima of one frontend, backend or server."""

    __slots__ = (
        "_conn_tot_seen",
        "_req_tot_seen",
        "_stot_seen",
        "bin",
        "bout",
        "chkdown",
        "chkfail",
        "cli_abrt",
        "conn_rate",
        "conn_rate_max",
        "downtime",
        "econ",
        "ereq",
        "eresp",
        "hrsp",
        "last_change",
        "last_check",
        "last_down",
        "last_sess",
        "qmax",
        "rate",
        "rate_max",
        "req_rate",
        "req_rate_max",
        "req_tot",
        "smax",
        "srv_abrt",
        "stot",
        "wredis",
        "wretr",
    )

    def __init__(self, now: float = 0.0) -> None:
        self.stot = 0  # sessions (a frontend: client connections; else: requests sent)
        self.smax = 0  # most concurrent sessions seen
        self.bin = 0  # request head bytes received from clients
        self.bout = 0  # response bytes sent to clients
        self.req_tot = 0  # HTTP requests
        # Responses by status class: hrsp[1] .. hrsp[5]; hrsp[0] is "other" (none or invalid).
        self.hrsp = [0, 0, 0, 0, 0, 0]
        self.ereq = 0  # requests the proxy rejected as invalid or that timed out
        self.econ = 0  # failed connections to a server
        self.eresp = 0  # invalid or aborted responses
        self.cli_abrt = 0  # exchanges the client cut
        self.srv_abrt = 0  # exchanges the server cut
        self.wretr = 0  # connection retries
        self.wredis = 0  # redispatches to another server
        self.qmax = 0  # longest queue seen
        self.last_sess = -1.0  # loop time of the last session (-1: never)
        # Checks and state changes (servers; a backend's when it loses/regains all servers).
        self.chkfail = 0  # failed checks
        self.chkdown = 0  # transitions from operational to not
        self.last_change = now  # loop time of the last operational-state change
        self.last_down = -1.0  # loop time it went down, while it is down (-1: it is up)
        self.downtime = 0.0  # seconds spent down, not counting the current stretch
        self.last_check = None  # the last CheckResult, for check_status/code/duration
        # Per-second rates (``tick``).
        self.rate = self.rate_max = 0
        self.req_rate = self.req_rate_max = 0
        self.conn_rate = self.conn_rate_max = 0
        self._stot_seen = self._req_tot_seen = self._conn_tot_seen = 0

    def tick(self, conn_tot: int = 0) -> None:
        """One second passed: compute the rates over it (``conn_tot``: a frontend's accepts)."""
        rate = self.stot - self._stot_seen
        self._stot_seen = self.stot
        self.rate = rate
        if rate > self.rate_max:
            self.rate_max = rate
        rate = self.req_tot - self._req_tot_seen
        self._req_tot_seen = self.req_tot
        self.req_rate = rate
        if rate > self.req_rate_max:
            self.req_rate_max = rate
        rate = conn_tot - self._conn_tot_seen
        self._conn_tot_seen = conn_tot
        self.conn_rate = rate
        if rate > self.conn_rate_max:
            self.conn_rate_max = rate

    def state_changed(self, operational: bool, now: float) -> None:
        """The operational state flipped at loop time ``now``: account downtime."""
        self.last_change = now
        if operational:
            if self.last_down >= 0:
                self.downtime += now - self.last_down
            self.last_down = -1.0
        else:
            self.chkdown += 1
            self.last_down = now

    def total_downtime(self, now: float) -> float:
        return self.downtime + (now - self.last_down if self.last_down >= 0 else 0.0)
