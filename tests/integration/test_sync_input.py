"""Bad input on the peers port of a real ``weir run``: closed with the right code, or skipped and
counted; the tables stay consistent and the proxy keeps serving.

The node is ``lb1``; its configured peer ``lb2`` is played by the test through a raw socket, with
messages built by the codec (the adversary speaks the protocol where it needs to get in).
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from ha.sync.codec import (
    DataType,
    Decoder,
    Encoder,
    ErrorMessage,
    ErrorType,
    Heartbeat,
    Hello,
    KeyType,
    ResyncRequest,
    TableDefinition,
    Update,
)
from tests.integration.test_sync import STICK, ask, peers_json, table
from tests.support.backend import BackendPool
from tests.support.farm import farm_config, wait_for
from tests.support.proxy import WeirProcess, free_port, get

pytestmark = pytest.mark.integration

OUR_TABLE = TableDefinition(7, "app", KeyType.STRING, 33, (DataType.SERVER_ID,), 1_800_000)


@pytest.fixture
def node(tmp_path, pool: BackendPool):
    """lb1 with its farm; lb2's address points at a port nobody listens on."""
    servers = [(name, pool.start(name).address) for name in ("web1", "web2")]
    bind = free_port()
    body = (
        farm_config(servers) + STICK + f'[ha.sync]\nlocal = "lb1"\nbind = "127.0.0.1:{bind}"\n'
        f'peers = [{{ name = "lb2", address = "127.0.0.1:{free_port()}" }}]\n'
    )
    proc = WeirProcess(tmp_path, body).start()
    proc.peer_port = bind
    yield proc
    proc.stop()


class RawPeer:
    """A socket that says it is lb2."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.encoder = Encoder()

    def hello(self) -> None:
        self.sock.sendall(self.encoder.encode(Hello("lb1", "lb2", 4242)))
        assert self.sock.recv(4) == b"200\n"

    def send(self, *messages: object) -> None:
        self.sock.sendall(b"".join(self.encoder.encode(m) for m in messages))

    def read_until_closed(self) -> bytes:
        data = b""
        try:
            while chunk := self.sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
        return data

    def close(self) -> None:
        self.sock.close()


def errors(node: WeirProcess) -> dict[str, int]:
    return peers_json(node)["peers"][0]["errors"]


@pytest.mark.parametrize(
    ("garbage", "error", "kind"),
    [
        (b"\x0a\x80\xff\xff\xff\xff\xff\xff", ErrorType.PROTOCOL, "protocol"),  # length varint
        (b"\x0a\x80\xfa\xff\x9f\x01", ErrorType.SIZE_LIMIT, "size_limit"),  # 20000-byte message
        (b"\xff\x00", ErrorType.PROTOCOL, "protocol"),  # the reserved class
        (b"\x0a\x82\x03\x01\x00\x00", ErrorType.PROTOCOL, "protocol"),  # definition cut short
    ],
    ids=["oversized-varint", "oversized-message", "reserved-class", "truncated"],
)
def test_garbage_after_the_handshake_is_answered_with_an_error_and_closed(
    node, garbage, error, kind
):
    peer = RawPeer(node.peer_port)
    peer.hello()
    peer.sock.sendall(garbage)
    received = peer.read_until_closed()
    assert received.endswith(Encoder().encode(ErrorMessage(error))), received[-20:]
    peer.close()
    assert wait_for(lambda: errors(node).get(kind) == 1), errors(node)
    assert get(node.port, "/").status == 200


def test_garbage_instead_of_a_hello(node):
    for garbage, status in ((b"\x00" * 600, b"501\n"), (b"HAProxyS x.y\n", b"502\n")):
        peer = RawPeer(node.peer_port)
        peer.sock.sendall(garbage)
        assert peer.read_until_closed() == status
        peer.close()
    assert peers_json(node)["unidentified_errors"] == {"handshake": 2}
    assert get(node.port, "/").status == 200


def test_unknown_table_ids_and_servers_are_skipped_and_counted(node):
    peer = RawPeer(node.peer_port)
    peer.hello()
    peer.send(
        OUR_TABLE,
        Update(7, 1, b"known-server", 1, 60_000),
        Update(7, 2, b"unknown-server", 7, 60_000),
    )
    # A switch to a table id never defined, and an update after it (id 3, key "lost", server 1).
    payload = (3).to_bytes(4, "big") + b"\x04lost\x01"
    peer.sock.sendall(b"\x0a\x83\x01\x09" + b"\x0a\x80" + bytes((len(payload),)) + payload)
    assert wait_for(lambda: "known-server" in table(node)), table(node)
    assert wait_for(lambda: errors(node).get("unknown_table_id", 0) >= 1), errors(node)
    assert errors(node).get("unknown_server") == 1, errors(node)
    assert set(table(node)) == {"known-server"}
    assert table(node)["known-server"][0] == 1
    assert 50_000 < table(node)["known-server"][1] <= 60_000  # the timed update's expiry
    assert peers_json(node)["peers"][0]["state"] == "established"
    peer.close()
    assert get(node.port, "/").status == 200


def test_a_definition_that_disagrees_is_not_synced_and_reported(node):
    peer = RawPeer(node.peer_port)
    peer.hello()
    peer.send(
        TableDefinition(3, "app", KeyType.STRING, 65, (DataType.SERVER_ID,), 1_800_000),
        Update(3, 1, b"wrong-length", 1, 60_000),
    )
    assert wait_for(lambda: errors(node).get("unshared_table") == 1), errors(node)
    assert errors(node)["table_mismatch"] == 1
    assert "wrong-length" not in table(node)
    text = ask(node, "show peers")
    assert "  mismatch app: has key type 6 length 65 there, key type 6 length 33 here" in text
    peer.close()


def test_a_peer_that_never_reads_is_cut_and_the_proxy_keeps_serving(node):
    """It sends 100,000 entries, asks for them back and reads nothing (while sending heartbeats):
    the lesson (4 MB) overflows the kernel's buffers (about 3 MB on loopback), our writes pause,
    nothing queues beyond the high-water mark, and after 5 s the session is cut."""
    peer = RawPeer(node.peer_port, rcvbuf=4096)
    peer.hello()
    updates = [Update(7, i, f"{i:032d}".encode(), 1 + i % 2, 600_000) for i in range(1, 100_001)]
    peer.send(OUR_TABLE, *updates)
    assert wait_for(lambda: len(table(node)) == 100_000, 30), len(table(node))
    peer.send(ResyncRequest())
    started = time.monotonic()
    while "stalled" not in errors(node) and time.monotonic() - started < 15:
        peer.send(Heartbeat())  # alive, but not reading
        assert get(node.port, "/").status == 200  # served all along
        time.sleep(0.5)
    assert errors(node).get("stalled") == 1, errors(node)
    assert time.monotonic() - started >= 4.5
    peer.close()
    assert len(table(node)) == 100_000
    assert get(node.port, "/").status == 200


def test_its_own_updates_are_acknowledged(node):
    peer = RawPeer(node.peer_port)
    peer.hello()
    peer.send(OUR_TABLE, *(Update(7, i, f"k{i}".encode(), 2, 60_000) for i in (300, 301, 302)))
    decoder = Decoder()
    deadline = time.monotonic() + 5
    acks = []
    while time.monotonic() < deadline and not acks:
        decoder.feed(peer.sock.recv(65536))
        while (message := decoder.next_message()) is not None:
            if type(message).__name__ == "Ack":
                acks.append(message)
    assert acks and acks[-1].table_id == 7 and acks[-1].update_id == 302, acks
    peer.close()
    assert json.loads(ask(node, "show peers json"))["peers"][0]["updates_applied"] == 3
