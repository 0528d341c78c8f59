"""Real-time stick-table sync between the two nodes (issue 6), in HAProxy's peers protocol.

The article's answer to "the backup does not know any association" after a takeover: every
learned association is pushed to the peer as it happens. Weir speaks HAProxy's peers protocol
v2.1 (with 2.0 fallback, see ``doc/peers.txt`` and ``src/peers.c`` in HAProxy) so that a Weir
pair can also sync with a real HAProxy.

- ``codec``: the wire format, sans-io: varints, handshake lines, messages;
- ``session``: one session's state machine (handshake, definitions, updates, acks, resync,
  heartbeats), sans-io and table driven;
- ``service``: the asyncio service in ``weir run``: listen, connect, reconnect, TLS, push as the
  tables change, ``show peers``;
- ``probe``: ``weir check``'s warning when a peer defines a table differently.

docs/sync.md describes the behaviour and the interop findings with HAProxy 2.6.
"""
