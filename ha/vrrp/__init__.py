"""VRRP for the failover pair: the article's "second load balancer acting as a backup".

Two Weir nodes share virtual IPs (VIPs); VRRP elects which one holds them. Weir speaks
VRRPv3 for IPv4 (RFC 9568, which obsoletes RFC 5798) and VRRPv2 (RFC 3768), and must
interoperate on the wire with keepalived. Modules, all without I/O (sans-io, as h11/h2):

- ``packet``: the advertisement's wire format, its checksum dialects, and the IP-layer
  checks of the receive path (protocol 112, TTL 255).
- ``machine``: the election state machine (Initialize/Backup/Master, plus FAULT), fed with
  events by the daemon, answering with the actions to carry out.

The daemon around them is ``daemon`` (``weir ha``: the raw socket, timers, VIPs, gratuitous
ARPs, notify hooks and the state file); see docs/failover.md.
"""
