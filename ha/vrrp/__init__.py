"""VRRP for the failover pair: the article's "second load balancer acting as a backup".

Two Weir nodes share virtual IPs (VIPs); VRRP elects which one holds them. Weir speaks
VRRPv3 for IPv4 (RFC 9568, which obsoletes RFC 5798) and VRRPv2 (RFC 3768), and must
interoperate on the wire with keepalived. Modules without I/O (sans-io, as h11/h2):

- ``packet``: the advertisement's wire format, its checksum dialects, and the IP-layer
  checks of the receive path (protocol 112, TTL 255).
- ``receive``: the receive path of one interface: which virtual router a packet is for,
  or why it is dropped.
- ``machine``: the election state machine (Initialize/Backup/Master, plus FAULT), fed with
  events by the daemon, answering with the actions to carry out.
- ``track``: keepalived's fall/rise rule and the fault sources of a virtual router (and
  the two probes of the local proxy).

The daemon around them (``weir ha``): ``daemon`` wires them up, ``interface`` owns the raw
sockets of one interface, ``instance`` carries out one virtual router's actions (timers,
VIPs, gratuitous ARPs, notify hooks, the state file), ``netlink`` talks to the kernel
through pyroute2, ``hint`` holds the takeover-hint connections, ``counters`` logs drops at
a limited rate. See docs/failover.md.
"""
