"""``weir check``: does each configured peer define our replicated tables the way we do?

Tables are matched by name, and a peer syncs a table only when its key type and key length
equal ours (HAProxy ignores a definition that differs, so does Weir): a backend renamed on one
node, a ``len`` that differs or a ``stick on`` that changed silently stops the sync of that
table. An expiry that differs is synced, but entries live longer on one node than on the other.
``weir check`` reports each as a warning (the file itself is valid):

    weir.toml:40: ha.sync.peers[0]: warning: peer lb2 defines table 'app' with key length 65,
    ours has 33: the table is not synced

Where the peer's definitions come from, so that checking never disturbs a running pair:

1. the running ``weir run`` of this node (its runtime socket, ``show peers json``), which keeps
   what each peer announced: a Weir peer announces all its tables when a session starts, a
   HAProxy peer when it teaches us the table (the resync every node asks for at start);
2. only when no Weir runs here (so that no session of ours is replaced by the check's), a short
   session of our own: hello as this node, a resync request, and the definitions the peer sends
   before its lesson, for at most ``TIMEOUT`` seconds per peer. A peer that cannot be reached is
   not reported (the check is about the file; the log of ``weir run`` says when a peer is down).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
import time
from dataclasses import dataclass

from appliance.config.load import ConfigError, Problem, load
from appliance.config.locate import Lines
from appliance.config.model import Config, SyncConfig
from appliance.runtime.client import CtlError, ask
from ha.sync.codec import (
    KEY_TYPES_BY_NAME,
    Decoder,
    Encoder,
    Hello,
    KeyType,
    ProtocolError,
    ResyncFinished,
    ResyncPartial,
    ResyncRequest,
    StatusLine,
    TableDefinition,
    wire_key_length,
)
from ha.sync.service import SyncStartError, tls_contexts

TIMEOUT = 1.0  # seconds per peer, for the connection and the definitions


@dataclass(frozen=True)
class Announced:
    """What matters of a table definition: key type (wire number), key length, expiry."""

    key_type: int | str
    key_length: int
    expire_ms: int | None


def our_tables(config: Config) -> dict[str, Announced]:
    """The tables ``config`` replicates, as we announce them."""
    tables = {}
    for name, backend in config.backends.items():
        if backend.stick is None:
            continue
        key_type = "ipv6" if backend.stick.on == "src" else "string"
        tables[name] = Announced(
            KEY_TYPES_BY_NAME[key_type],
            wire_key_length(key_type),
            int(backend.stick.expire * 1000),
        )
    return tables


def peer_warnings(config: Config, text: str) -> list[Problem]:
    """One warning per disagreement between ``config``'s tables and its peers' definitions."""
    sync = config.ha.sync if config.ha is not None else None
    ours = our_tables(config)
    if sync is None or not sync.peers or not ours:
        return []
    known = _from_running(config.global_.runtime_socket, sync)
    lines = Lines(text)
    problems = []
    for index, peer in enumerate(sync.peers):
        if known is not None:
            theirs, complete = known.get(peer.name, {}), False
        else:
            probed = _probe(sync, peer.name, peer.address.host, peer.address.port, set(ours))
            if probed is None:
                continue
            theirs, complete = probed
        at = ("ha", "sync", "peers", index)
        for message in compare(peer.name, ours, theirs, complete):
            problems.append(
                Problem(config.path, lines.of(at), f"ha.sync.peers[{index}]", message, "warning")
            )
    return problems


def compare(
    peer: str, ours: dict[str, Announced], theirs: dict[str, Announced], complete: bool
) -> list[str]:
    messages = []
    for name, mine in ours.items():
        other = theirs.get(name)
        if other is None:
            if complete:
                messages.append(f"peer {peer} does not define table {name!r}: it is not synced")
            continue
        if other.key_type != mine.key_type:
            messages.append(
                f"peer {peer} defines table {name!r} with key type {_kind(other.key_type)}, "
                f"ours has {_kind(mine.key_type)}: the table is not synced"
            )
        elif other.key_length != mine.key_length:
            messages.append(
                f"peer {peer} defines table {name!r} with key length {other.key_length}, "
                f"ours has {mine.key_length}: the table is not synced"
            )
        if other.expire_ms is not None and other.expire_ms != mine.expire_ms:
            messages.append(
                f"peer {peer} expires table {name!r} after {other.expire_ms}ms, "
                f"ours after {mine.expire_ms}ms: entries live longer on one node"
            )
    return messages


def _kind(key_type: int | str) -> str:
    if key_type in KeyType._value2member_map_:
        return KeyType(key_type).name.lower()
    return str(key_type)


def run_peer_check(path: str) -> None:
    """``weir check``'s last step: print the peers' disagreements as warnings on stderr."""
    try:
        config = load(path)
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (ConfigError, OSError, UnicodeDecodeError):
        return  # the file's own problems were reported already
    for problem in peer_warnings(config, text):
        print(problem, file=sys.stderr)


def _from_running(socket_path: str, sync: SyncConfig) -> dict[str, dict[str, Announced]] | None:
    """What the running Weir of this node knows of its peers' tables, or None if none runs."""
    try:
        answer = json.loads(ask(socket_path, "show peers json", timeout=TIMEOUT))
    except (CtlError, OSError, ValueError):
        return None
    if not isinstance(answer, dict) or answer.get("local") != sync.local:
        return None
    known = {}
    for peer in answer.get("peers", []):
        known[peer["name"]] = {
            name: Announced(
                KEY_TYPES_BY_NAME.get(d["key_type"], d["key_type"]), d["key_length"], d["expire_ms"]
            )
            for name, d in peer.get("remote_tables", {}).items()
        }
    return known


def _probe(
    sync: SyncConfig, peer: str, host: str, port: int, wanted: set[str]
) -> tuple[dict[str, Announced], bool] | None:
    """The definitions ``peer`` sends when asked for a resync, and whether that was all of them
    (its lesson ended); None when it cannot be asked."""
    deadline = time.monotonic() + TIMEOUT
    try:
        _, client = tls_contexts(sync)
    except SyncStartError:
        return None
    try:
        raw = socket.create_connection((host, port), timeout=TIMEOUT)
    except OSError:
        return None
    found: dict[str, Announced] = {}
    encoder, decoder = Encoder(), Decoder("status")
    try:
        conn: socket.socket | ssl.SSLSocket = client.wrap_socket(raw) if client is not None else raw
        conn.sendall(encoder.encode(Hello(peer, sync.local, os.getpid())))
        while time.monotonic() < deadline and not wanted <= set(found):
            conn.settimeout(max(0.01, deadline - time.monotonic()))
            data = conn.recv(65536)
            if not data:
                break
            decoder.feed(data)
            while (message := decoder.next_message()) is not None:
                if isinstance(message, StatusLine):
                    if message.code != 200:
                        return None
                    conn.sendall(encoder.encode(ResyncRequest()))
                elif isinstance(message, TableDefinition):
                    found[message.name] = Announced(
                        message.key_type, message.key_length, message.expire_ms
                    )
                elif isinstance(message, ResyncFinished | ResyncPartial):
                    return found, True
    except (OSError, ssl.SSLError, ProtocolError):
        return (found, False) if found else None
    finally:
        raw.close()
    return found, False
