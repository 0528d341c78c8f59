"""Keys and the key hash of the hashed algorithms (HAProxy's backend.c get_server_*h).

The article's hashing algorithms send the same key to the same server without
keeping any state: the client's address (``balance source``), the URI
(``balance uri``), a header (``balance hdr:NAME``) or a URL parameter
(``balance url_param:NAME``). This module extracts those keys from a
request and hashes them; ``map.py`` and ``chash.py`` turn a hash into a
server.

The hash must give the same value in every process on every node of a
cluster, so Python's ``hash()`` (salted per process) is out. ``key_hash`` is
CRC-32 (zlib, in C) followed by MurmurHash3's 32-bit finaliser, which spreads
CRC-32's linear structure over all bits so that ``hash % n`` and ring
positions are uniform even for keys that differ in one character.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from zlib import crc32

if TYPE_CHECKING:
    from appliance.balance import RequestInfo


def key_hash(key: bytes) -> int:
    """A stable, well-mixed 32-bit hash of ``key``."""
    h = crc32(key)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def source_key(req: RequestInfo) -> bytes:
    """``balance source``: the client's address."""
    return req.client_ip.encode("ascii")


def uri_key(req: RequestInfo) -> bytes:
    """``balance uri``: the request target left of the ``?``, as HAProxy does by default."""
    path = req.path
    end = path.find(b"?")
    return path if end < 0 else path[:end]


def header_key(req: RequestInfo, name: bytes) -> bytes | None:
    """``balance hdr:NAME``: the header's first value; None when absent or empty."""
    return req.header(name) or None


def url_param_key(req: RequestInfo, name: bytes) -> bytes | None:
    """``balance url_param:NAME``: the value of the first ``NAME=`` in the query string.

    None when the parameter is absent, has no ``=`` or an empty value (HAProxy
    then falls back to round robin). Names are matched case-sensitively and
    values are hashed as sent, without percent-decoding, as HAProxy does.
    """
    path = req.path
    position = path.find(b"?")
    if position < 0:
        return None
    prefix = name + b"="
    while True:
        position = path.find(prefix, position + 1)
        if position < 0:
            return None
        if path[position - 1] in b"?&":
            break
    start = position + len(prefix)
    end = path.find(b"&", start)
    return (path[start:] if end < 0 else path[start:end]) or None
