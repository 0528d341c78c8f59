"""The peers protocol wire format (HAProxy: doc/peers.txt, doc/peers-v2.0.txt, src/peers.c).

Sans-io, in the style of h11: a ``Decoder`` is fed bytes and hands out decoded messages one at a
time; an ``Encoder`` turns messages into bytes. Neither touches a socket or a clock, and neither
decides anything about the session (who may connect, when to resync, what to acknowledge): that
is the session's job. Where the documents and the code disagree, the code is followed (the ack
is 0x84, not 133; timed updates are 0x85/0x86; integer keys are 4 fixed bytes).

The wire, in short:

- **Varint** (``encode_varint``): values below 240 take one byte; above, the first byte is
  ``value | 0xF0`` and carries 4 bits, then ``(value - 240) >> 4`` follows 7 bits a byte, each byte
  but the last having its top bit set (and the byte's full value, top bit included, counting in
  the sum: HAProxy subtracts 0x80 before shifting). A 64-bit value takes at most 10 bytes; a
  message length at most 5.
- **Handshake**: the connecting side sends ``HAProxyS 2.1\\n<remote peer>\\n<local peer> <pid>
  <relative pid>\\n``; the other answers one status line (``200\\n``, ``502\\n``, ...).
- **Messages**: a 2-byte header (class, type); a type of 128 or more is followed by the varint
  length of its payload and the payload. Control and error messages are header only.
- **Stick-table messages** (class 10) refer to a table by the id its sender gave it in a
  definition message. Updates apply to the table of the last definition (or switch); an
  incremental update omits its 32-bit id, which is then the previous id of that table plus one.
  Update payloads are laid out by the definition: id, expiry (timed updates), key, then one value
  per declared data type in data type order.

Decoding errors raise ``ProtocolError`` (``HandshakeError`` during the handshake) with the code to
answer with; nothing else escapes the decoder, whatever the bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from ipaddress import IPv4Address, IPv6Address
from itertools import islice
from typing import Literal

PROTOCOL_NAME = "HAProxyS"
VERSION = (2, 1)
DOWNGRADED_VERSION = (2, 0)  # no timed updates (0x85/0x86) towards such a peer
MAX_VARINT_BYTES = 10  # a 64-bit value
MAX_LENGTH_BYTES = 5  # a message length (HAProxy's PEER_MSG_ENC_LENGTH_MAXLEN)
MAX_MESSAGE_SIZE = 16384  # HAProxy refuses payloads above its buffer size, 16 kB by default
MAX_LINE = 512  # a handshake line, newline included
_U64 = 1 << 64
_U32 = 0xFFFFFFFF


class MessageClass(IntEnum):
    CONTROL = 0
    ERROR = 1
    STICK_TABLE = 10
    RESERVED = 255


class ControlType(IntEnum):
    RESYNC_REQUEST = 0
    RESYNC_FINISHED = 1
    RESYNC_PARTIAL = 2
    RESYNC_CONFIRM = 3
    HEARTBEAT = 4


class ErrorType(IntEnum):
    PROTOCOL = 0
    SIZE_LIMIT = 1


class StickTableType(IntEnum):
    UPDATE = 0x80
    INCREMENTAL_UPDATE = 0x81
    DEFINE = 0x82
    SWITCH = 0x83  # understood; HAProxy itself re-sends a definition instead
    ACK = 0x84
    TIMED_UPDATE = 0x85
    INCREMENTAL_TIMED_UPDATE = 0x86


class Status(IntEnum):
    """Handshake status codes (peers.c ``PEER_SESS_SC_*``)."""

    OK = 200
    TRY_AGAIN = 300
    PROTOCOL_ERROR = 501
    BAD_VERSION = 502
    NAME_MISMATCH = 503  # the hello's remote peer name is not ours
    UNKNOWN_PEER = 504  # the hello's local peer name is not a configured peer


class KeyType(IntEnum):
    """Key types on the wire (peers.c ``PEER_KT_*``), not HAProxy's internal sample types."""

    INTEGER = 2
    IPV4 = 4
    IPV6 = 5
    STRING = 6
    BINARY = 7


KEY_TYPES_BY_NAME = {
    "integer": KeyType.INTEGER,
    "ipv4": KeyType.IPV4,
    "ipv6": KeyType.IPV6,
    "string": KeyType.STRING,
}


class DataType(IntEnum):
    """Stick-table data types (HAProxy's ``STKTABLE_DT_*``): bit numbers of the definition."""

    SERVER_ID = 0
    GPT0 = 1
    GPC0 = 2
    GPC0_RATE = 3
    CONN_CNT = 4
    CONN_RATE = 5
    CONN_CUR = 6
    SESS_CNT = 7
    SESS_RATE = 8
    HTTP_REQ_CNT = 9
    HTTP_REQ_RATE = 10
    HTTP_ERR_CNT = 11
    HTTP_ERR_RATE = 12
    BYTES_IN_CNT = 13
    BYTES_IN_RATE = 14
    BYTES_OUT_CNT = 15
    BYTES_OUT_RATE = 16
    GPC1 = 17
    GPC1_RATE = 18
    SERVER_KEY = 19
    HTTP_FAIL_CNT = 20
    HTTP_FAIL_RATE = 21
    GPT = 22
    GPC = 23
    GPC_RATE = 24
    GLITCH_CNT = 25
    GLITCH_RATE = 26


# How each data type's value is written in an update (stick_table.c's ``stktable_data_types``):
# "int" one varint, "freq" a frequency counter (3 varints), "dict" a varint length and that many
# bytes. Arrays repeat their element as many times as the definition says.
_INT, _FREQ, _DICT = "int", "freq", "dict"
_VALUE_KIND = {t: _INT for t in DataType} | {
    t: _FREQ
    for t in (
        DataType.GPC0_RATE,
        DataType.CONN_RATE,
        DataType.SESS_RATE,
        DataType.HTTP_REQ_RATE,
        DataType.HTTP_ERR_RATE,
        DataType.BYTES_IN_RATE,
        DataType.BYTES_OUT_RATE,
        DataType.GPC1_RATE,
        DataType.HTTP_FAIL_RATE,
        DataType.GPC_RATE,
        DataType.GLITCH_RATE,
    )
}
_VALUE_KIND[DataType.SERVER_KEY] = _DICT
_ARRAYS = frozenset((DataType.GPT, DataType.GPC, DataType.GPC_RATE))


class ProtocolError(Exception):
    """Bytes that break the protocol; ``error`` is the error message to send before closing."""

    def __init__(self, message: str, error: ErrorType = ErrorType.PROTOCOL) -> None:
        super().__init__(message)
        self.error = error


class HandshakeError(ProtocolError):
    """A bad hello or status line; ``status`` is the status line to answer with."""

    def __init__(self, message: str, status: Status = Status.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.status = status


# -- varints ----------------------------------------------------------------------------------


def encode_varint(value: int) -> bytes:
    """HAProxy's encoding of an unsigned 64-bit integer (``intencode``)."""
    if not 0 <= value < _U64:
        raise ValueError(f"varint out of range: {value}")
    if value < 0xF0:
        return bytes((value,))
    out = bytearray(((value | 0xF0) & 0xFF,))
    value = (value - 0xF0) >> 4
    while value >= 0x80:
        out.append((value | 0x80) & 0xFF)
        value = (value - 0x80) >> 7
    out.append(value)
    return bytes(out)


def decode_varint(
    data: bytes | bytearray | memoryview,
    pos: int = 0,
    end: int | None = None,
    max_bytes: int = MAX_VARINT_BYTES,
) -> tuple[int, int]:
    """Decode the varint at ``data[pos:end]``: (value, position after it).

    Raises ``ProtocolError`` if it is cut short by ``end``, longer than ``max_bytes`` or above
    64 bits.
    """
    if end is None:
        end = len(data)
    if pos >= end:
        raise ProtocolError("varint expected, end of data found")
    value = data[pos]
    pos += 1
    if value < 0xF0:
        return value, pos
    shift, length = 4, 1
    while True:
        if pos >= end:
            raise ProtocolError("varint cut short")
        if length >= max_bytes:
            raise ProtocolError(f"varint longer than {max_bytes} bytes")
        byte = data[pos]
        pos += 1
        length += 1
        value += byte << shift
        shift += 7
        if byte < 0x80:
            break
    if value >= _U64:
        raise ProtocolError("varint above 64 bits")
    return value, pos


# -- messages ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """The connecting side's three lines. ``remote_peer`` is the name of the peer it is sent to,
    ``local_peer`` the sender's own name."""

    remote_peer: str
    local_peer: str
    pid: int
    relative_pid: int = 1  # what HAProxy sends
    version: tuple[int, int] = VERSION


@dataclass(frozen=True)
class StatusLine:
    """The accepting side's answer to a hello: a ``Status`` code (or another number)."""

    code: int


@dataclass(frozen=True)
class ResyncRequest:
    """Teach me the whole table."""


@dataclass(frozen=True)
class ResyncFinished:
    """All known updates sent, and the sender considers itself up to date."""


@dataclass(frozen=True)
class ResyncPartial:
    """All known updates sent, but the sender is not up to date itself."""


@dataclass(frozen=True)
class ResyncConfirm:
    """Acknowledges a resync finished or partial message."""


@dataclass(frozen=True)
class Heartbeat:
    """Sent after 3 s without other traffic; 5 s of silence means the peer is dead."""


@dataclass(frozen=True)
class ErrorMessage:
    """The peer reports an error (protocol or size limit) and closes."""

    error: ErrorType


@dataclass(frozen=True)
class DataParams:
    """The parameters a definition carries for a frequency counter or an array data type."""

    data_type: int
    array_size: int | None = None  # arrays only
    period: int | None = None  # frequency counters only, in ms


@dataclass(frozen=True)
class TableDefinition:
    """A stick-table definition (0x82): what the following updates are about.

    ``table_id`` is the sender's id for the table (used by its updates, switches and the acks it
    receives). ``key_length`` is HAProxy's key size: for a string table ``len N`` it is N + 1 (see
    ``wire_key_length``). ``data_types`` lists the declared data type ids in increasing order.
    ``expire_ms`` is None in a 2.0-style definition, which then carries no ``params`` either.
    """

    table_id: int
    name: str
    key_type: int
    key_length: int
    data_types: tuple[int, ...] = (DataType.SERVER_ID,)
    expire_ms: int | None = None
    params: tuple[DataParams, ...] = ()

    def layout_problem(self) -> str | None:
        """Why updates of this table cannot be decoded, or None if they can."""
        if self.key_type not in KeyType._value2member_map_:
            return f"unknown key type {self.key_type}"
        fixed = {KeyType.IPV4: 4, KeyType.IPV6: 16}.get(KeyType(self.key_type))
        if fixed is not None and self.key_length != fixed:
            return f"key length {self.key_length} for key type {KeyType(self.key_type).name}"
        sizes = {p.data_type: p.array_size for p in self.params}
        for data_type in self.data_types:
            if data_type not in _VALUE_KIND:
                return f"unknown data type {data_type}"
            if data_type in _ARRAYS and sizes.get(data_type) is None:
                return f"no array size for data type {DataType(data_type).name}"
        return None


@dataclass(frozen=True)
class TableSwitch:
    """Following updates are about the table the sender defined with ``table_id`` (0x83)."""

    table_id: int


@dataclass(frozen=True)
class Update:
    """One entry (0x80/0x81, timed 0x85/0x86), for the current table of the stream.

    ``update_id`` is the sender's 32-bit id, also when the wire omitted it (incremental update).
    ``expire_ms`` is the entry's remaining life as the sender sent it: timed updates only.
    ``server_id`` is None when the definition does not declare it. Other declared data types
    are skipped on decoding.
    """

    table_id: int
    update_id: int
    key: bytes | int | IPv4Address | IPv6Address
    server_id: int | None = None
    expire_ms: int | None = None


@dataclass(frozen=True)
class SkippedUpdate:
    """An update not decoded: no table defined yet, or the session asked to skip the table."""

    table_id: int | None
    update_id: int | None


@dataclass(frozen=True)
class Ack:
    """The receiver has committed updates up to ``update_id`` of the table the acknowledged side
    defined with ``table_id`` (0x84)."""

    table_id: int
    update_id: int


@dataclass(frozen=True)
class UnknownMessage:
    """A message of a class or type this codec does not know; HAProxy ignores those too."""

    msg_class: int
    msg_type: int
    payload: bytes = b""


Message = (
    ResyncRequest
    | ResyncFinished
    | ResyncPartial
    | ResyncConfirm
    | Heartbeat
    | ErrorMessage
    | TableDefinition
    | TableSwitch
    | Update
    | SkippedUpdate
    | Ack
    | UnknownMessage
)
Event = Hello | StatusLine | Message

_CONTROL = {
    ControlType.RESYNC_REQUEST: ResyncRequest,
    ControlType.RESYNC_FINISHED: ResyncFinished,
    ControlType.RESYNC_PARTIAL: ResyncPartial,
    ControlType.RESYNC_CONFIRM: ResyncConfirm,
    ControlType.HEARTBEAT: Heartbeat,
}
_CONTROL_TYPE = {cls: t for t, cls in _CONTROL.items()}


def wire_key_length(key_type: str, key_len: int = 32) -> int:
    """The key length a HAProxy table declares for a Weir table (``stick-table type ... len``).

    HAProxy keeps strings NUL-terminated: ``type string len 32`` has a key size of 33, and
    definitions must match exactly. Fixed-size keys: 4 (integer, ipv4) and 16 (ipv6).
    """
    if key_type == "string":
        return key_len + 1
    return {"integer": 4, "ipv4": 4, "ipv6": 16}[key_type]


# -- handshake lines --------------------------------------------------------------------------


def _check_name(name: str) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")
    if not raw or any(c in raw for c in b" \r\n\0") or len(raw) > MAX_LINE - 32:
        raise ValueError(f"invalid peer name {name!r}")
    return raw


def encode_hello(hello: Hello) -> bytes:
    major, minor = hello.version
    return b"%s %d.%d\n%s\n%s %d %d\n" % (
        PROTOCOL_NAME.encode(),
        major,
        minor,
        _check_name(hello.remote_peer),
        _check_name(hello.local_peer),
        hello.pid,
        hello.relative_pid,
    )


def encode_status(code: int) -> bytes:
    if not 100 <= code <= 999:
        raise ValueError(f"status code must have three digits, not {code}")
    return b"%d\n" % code


def _parse_version(line: bytes) -> tuple[int, int]:
    prefix = PROTOCOL_NAME.encode() + b" "
    if not line.startswith(prefix):
        raise HandshakeError(f"not a peers protocol hello: {line[:40]!r}")
    major, dot, minor = line[len(prefix) :].partition(b".")
    if not (dot and major.isdigit() and minor.isdigit() and len(major) + len(minor) < 10):
        raise HandshakeError(f"bad protocol version {line[len(prefix) :]!r}", Status.BAD_VERSION)
    version = (int(major), int(minor))
    if version[0] != VERSION[0] or version[1] > VERSION[1]:
        raise HandshakeError(
            f"unsupported protocol version {version[0]}.{version[1]}", Status.BAD_VERSION
        )
    return version


def _parse_peer_line(line: bytes) -> tuple[str, int, int]:
    name, _, rest = line.partition(b" ")
    pid, _, relative = rest.partition(b" ")
    if not name or not pid.isdigit() or not relative.isdigit() or len(rest) > 40:
        raise HandshakeError(f"bad peer line {line[:80]!r}")
    return name.decode("utf-8", "surrogateescape"), int(pid), int(relative)


def _parse_status(line: bytes) -> StatusLine:
    if len(line) != 3 or not line.isdigit():
        raise HandshakeError(f"bad status line {line[:40]!r}")
    return StatusLine(int(line))


# -- decoding ---------------------------------------------------------------------------------


class _Reader:
    """Reads the fields of one message payload; running short is a protocol error."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def varint(self) -> int:
        try:
            value, self.pos = decode_varint(self.data, self.pos)
        except ProtocolError as e:
            raise ProtocolError(f"{self.what}: {e}") from None
        return value

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise ProtocolError(f"{self.what}: {n} bytes expected, {self.left} left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


class Decoder:
    """Incremental decoder for one connection: ``feed`` bytes, then call ``next_message`` until
    it returns None.

    ``expect`` is what the stream starts with: ``"hello"`` on the accepting side, ``"status"`` on
    the connecting side (the peer may send messages right after its status line), ``"messages"``
    for a stream past its handshake. A payload above ``max_message_size`` raises
    ``ProtocolError`` with ``ErrorType.SIZE_LIMIT`` as soon as its length is read. After an
    error the decoder stays failed.

    The decoder keeps what the stream's framing needs: the definitions received (by table id),
    the current table, and the last update id of each table (for incremental updates).
    """

    def __init__(
        self,
        expect: Literal["hello", "status", "messages"] = "messages",
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        self.max_message_size = max_message_size
        self._phase = expect
        self._lines: list[bytes] = []
        self._buffer = bytearray()
        self._pos = 0
        self._failed: ProtocolError | None = None
        self.definitions: dict[int, TableDefinition] = {}
        self.current_table: int | None = None
        self._last_ids: dict[int, int] = {}
        self._skipped: set[int] = set()
        self._layouts: dict[int, _Layout] = {}  # table id -> how its updates are laid out

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self._pos and self._pos >= len(self._buffer) // 2:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def skip_table(self, table_id: int) -> None:
        """Hand out later updates of this table as ``SkippedUpdate`` (a table the session does not
        share, or whose layout it cannot use) instead of decoding them.

        Lasts until a different definition arrives for the same id (a peer re-sends the same
        definition each time it switches back to a table).
        """
        self._skipped.add(table_id)

    def next_message(self) -> Event | None:
        """The next complete message, or None until more bytes are fed."""
        if self._failed is not None:
            raise self._failed
        try:
            if self._phase == "messages":
                return self._message()
            return self._handshake()
        except ProtocolError as e:
            self._failed = e
            raise

    def plain_updates(self) -> tuple[int, list[tuple[int, bytes, int, int | None]]] | None:
        """The run of complete updates at the head of the stream, when the current table has the
        usual layout (a string key, then a one-byte server id: cookie tables, HAProxy's and ours):
        (table id, [(update id, key, server id, expiry in ms or None), ...]), as ``next_message``
        would hand them out one ``Update`` at a time, without an object per update. None when the
        next message is anything else (or a message of that table laid out otherwise, or not
        complete yet): ``next_message`` then takes it, and raises what it must."""
        table_id = self.current_table
        if table_id is None or self._phase != "messages" or self._failed is not None:
            return None
        layout = self._layouts[table_id]
        if not layout.string_and_server_id or table_id in self._skipped:
            return None
        buf, pos, end = self._buffer, self._pos, len(self._buffer)
        limit = min(self.max_message_size, 0xEF)
        last = self._last_ids.get(table_id, 0)
        updates: list[tuple[int, bytes, int, int | None]] = []
        while pos + 3 <= end and buf[pos] == MessageClass.STICK_TABLE:
            msg_type, length = buf[pos + 1], buf[pos + 2]
            flags = _PLAIN_UPDATE.get(msg_type)
            stop = pos + 3 + length
            if flags is None or length > limit or stop > end:
                break
            full, timed = flags
            at = pos + 3 + 4 * (full + timed)  # the key's length
            if at >= stop - 1 or buf[at] != stop - at - 2 or buf[stop - 1] >= 0xF0:
                break  # cut short, or another layout: the general path says what is wrong
            update_id = int.from_bytes(buf[pos + 3 : pos + 7], "big") if full else (last + 1) & _U32
            expire_ms = int.from_bytes(buf[at - 4 : at], "big") if timed else None
            updates.append((update_id, bytes(buf[at + 1 : stop - 1]), buf[stop - 1], expire_ms))
            last = update_id
            pos = stop
        if not updates:
            return None
        self._pos = pos
        self._last_ids[table_id] = last
        return table_id, updates

    @property
    def buffered(self) -> int:
        """Bytes received and not yet decoded."""
        return len(self._buffer) - self._pos

    # -- handshake

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\n", self._pos, self._pos + MAX_LINE)
        if end < 0:
            if len(self._buffer) - self._pos >= MAX_LINE:
                raise HandshakeError(f"handshake line longer than {MAX_LINE} bytes")
            return None
        line = bytes(self._buffer[self._pos : end])
        self._pos = end + 1
        return line[:-1] if line.endswith(b"\r") else line

    def _handshake(self) -> Event | None:
        while (line := self._line()) is not None:
            if self._phase == "status":
                self._phase = "messages"
                return _parse_status(line)
            if not self._lines:
                _parse_version(line)  # refuse a bad version before reading further
            self._lines.append(line)
            if len(self._lines) == 3:
                self._phase = "messages"
                version_line, remote, peer_line = self._lines
                local, pid, relative = _parse_peer_line(peer_line)
                if not remote:
                    raise HandshakeError("empty remote peer name")
                return Hello(
                    remote.decode("utf-8", "surrogateescape"),
                    local,
                    pid,
                    relative,
                    _parse_version(version_line),
                )
        return None

    # -- messages

    def _message(self) -> Message | None:
        buf, pos = self._buffer, self._pos
        available = len(buf) - pos
        if available < 2:
            return None
        msg_class, msg_type = buf[pos], buf[pos + 1]
        if msg_class == MessageClass.RESERVED:
            raise ProtocolError("message of the reserved class 255")
        if msg_type < 0x80:
            self._pos = pos + 2
            return self._short_message(msg_class, msg_type)
        if available >= 3 and buf[pos + 2] < 0xF0:  # a one-byte length: most messages
            length, start = buf[pos + 2], pos + 3
        else:
            end = min(len(buf), pos + 2 + MAX_LENGTH_BYTES)
            if not _varint_complete(buf, pos + 2, end):
                if end - (pos + 2) >= MAX_LENGTH_BYTES:
                    raise ProtocolError(f"message length longer than {MAX_LENGTH_BYTES} bytes")
                return None
            length, start = decode_varint(buf, pos + 2, end, MAX_LENGTH_BYTES)
        if length > self.max_message_size:
            raise ProtocolError(
                f"message of {length} bytes, above the limit of {self.max_message_size}",
                ErrorType.SIZE_LIMIT,
            )
        if len(buf) - start < length:
            return None
        payload = bytes(buf[start : start + length])
        self._pos = start + length
        return self._long_message(msg_class, msg_type, payload)

    def _short_message(self, msg_class: int, msg_type: int) -> Message:
        if msg_class == MessageClass.CONTROL and msg_type in _CONTROL:
            return _CONTROL[ControlType(msg_type)]()
        if msg_class == MessageClass.ERROR and msg_type in ErrorType._value2member_map_:
            return ErrorMessage(ErrorType(msg_type))
        return UnknownMessage(msg_class, msg_type)

    def _long_message(self, msg_class: int, msg_type: int, payload: bytes) -> Message:
        if msg_class != MessageClass.STICK_TABLE:
            return UnknownMessage(msg_class, msg_type, payload)
        if msg_type == StickTableType.DEFINE:
            definition = _decode_definition(payload)
            if self.definitions.get(definition.table_id) != definition:
                self._skipped.discard(definition.table_id)
            self.definitions[definition.table_id] = definition
            self._layouts[definition.table_id] = _Layout(definition)
            self.current_table = definition.table_id
            return definition
        if msg_type == StickTableType.SWITCH:
            table_id = _Reader(payload, "table switch").varint()
            self.current_table = table_id if table_id in self.definitions else None
            return TableSwitch(table_id)
        if msg_type == StickTableType.ACK:
            reader = _Reader(payload, "ack")
            return Ack(reader.varint(), reader.u32())
        if StickTableType.UPDATE <= msg_type <= StickTableType.INCREMENTAL_TIMED_UPDATE:
            return self._update(msg_type, payload)
        return UnknownMessage(msg_class, msg_type, payload)

    def _update(self, msg_type: int, payload: bytes) -> Update | SkippedUpdate:
        full = msg_type in _FULL_UPDATES
        table_id = self.current_table
        if table_id is None:
            return SkippedUpdate(None, _Reader(payload, "update").u32() if full else None)
        if full:
            if len(payload) < 4:
                _Reader(payload, "update").u32()  # raises, saying what was missing
            update_id = int.from_bytes(payload[:4], "big")
            pos = 4
        else:
            update_id = (self._last_ids.get(table_id, 0) + 1) & _U32
            pos = 0
        self._last_ids[table_id] = update_id
        if table_id in self._skipped:
            return SkippedUpdate(table_id, update_id)
        layout = self._layouts[table_id]
        if layout.problem is not None:
            raise ProtocolError(f"update for table {layout.definition.name!r}: {layout.problem}")
        timed = msg_type in _TIMED_UPDATES
        reader = _Reader(payload, "update")
        reader.pos = pos
        expire_ms = reader.u32() if timed else None
        key = _decode_key(reader, layout.definition)
        server_id = None
        for data_type, count, kind in layout.values:
            if data_type == DataType.SERVER_ID:
                server_id = reader.varint()
            else:
                for _ in range(count):
                    _skip_value(reader, kind)
        return Update(table_id, update_id, key, server_id, expire_ms)


class _Layout:
    """How the updates of one defined table are read, worked out once per definition rather
    than for every update (a full resync is 100,000 of them)."""

    __slots__ = ("definition", "problem", "string_and_server_id", "values")

    def __init__(self, definition: TableDefinition) -> None:
        self.definition = definition
        self.problem = definition.layout_problem()
        sizes = {p.data_type: p.array_size for p in definition.params}
        self.values: tuple[tuple[int, int, str], ...] = ()
        if self.problem is None:
            self.values = tuple(
                (t, sizes.get(t) or 1, _VALUE_KIND[t]) for t in definition.data_types
            )
        self.string_and_server_id = self.problem is None and (
            definition.key_type == KeyType.STRING and definition.data_types == (DataType.SERVER_ID,)
        )


_FULL_UPDATES = frozenset((StickTableType.UPDATE, StickTableType.TIMED_UPDATE))
# update type -> (carries its id, carries an expiry)
_PLAIN_UPDATE = {
    StickTableType.UPDATE: (True, False),
    StickTableType.INCREMENTAL_UPDATE: (False, False),
    StickTableType.TIMED_UPDATE: (True, True),
    StickTableType.INCREMENTAL_TIMED_UPDATE: (False, True),
}
_TIMED_UPDATES = frozenset((StickTableType.TIMED_UPDATE, StickTableType.INCREMENTAL_TIMED_UPDATE))


def _varint_complete(buf: bytearray, start: int, end: int) -> bool:
    """Whether a whole varint starts at ``start`` before ``end``."""
    if start >= end:
        return False
    if buf[start] < 0xF0:
        return True
    return any(buf[i] < 0x80 for i in range(start + 1, end))


def _decode_definition(payload: bytes) -> TableDefinition:
    reader = _Reader(payload, "table definition")
    table_id = reader.varint()
    name_length = reader.varint()
    if not name_length:
        raise ProtocolError("table definition: empty table name")
    name = reader.take(name_length).decode("utf-8", "surrogateescape")
    key_type = reader.varint()
    key_length = reader.varint()
    bitfield = reader.varint()
    data_types = tuple(t for t in range(64) if bitfield >> t & 1)
    if not reader.left:
        return TableDefinition(table_id, name, key_type, key_length, data_types)
    expire_ms = reader.varint()
    params = []
    for data_type in data_types:
        if data_type not in _VALUE_KIND:
            break  # its parameters, if any, cannot be told apart from the next type's
        array = data_type in _ARRAYS
        freq = _VALUE_KIND[data_type] == _FREQ
        if not (array or freq):
            continue
        declared = reader.varint()
        if declared != data_type:
            raise ProtocolError(
                f"table definition {name!r}: parameters of data type {declared} "
                f"where those of {data_type} were expected"
            )
        array_size = reader.varint() if array else None
        if array_size is not None and array_size > MAX_MESSAGE_SIZE:
            raise ProtocolError(f"table definition {name!r}: array of {array_size} elements")
        period = reader.varint() if freq else None
        params.append(DataParams(data_type, array_size, period))
    return TableDefinition(
        table_id, name, key_type, key_length, data_types, expire_ms, tuple(params)
    )


def _decode_key(
    reader: _Reader, definition: TableDefinition
) -> bytes | int | IPv4Address | IPv6Address:
    key_type = definition.key_type
    if key_type == KeyType.STRING:
        return reader.take(reader.varint())
    if key_type == KeyType.INTEGER:
        return reader.u32()
    if key_type == KeyType.IPV4:
        return IPv4Address(reader.take(4))
    if key_type == KeyType.IPV6:
        return IPv6Address(reader.take(16))
    return reader.take(definition.key_length)


def _skip_value(reader: _Reader, kind: str) -> None:
    if kind == _INT:
        reader.varint()
    elif kind == _FREQ:
        for _ in range(3):  # age of the current period, current count, previous count
            reader.varint()
    else:
        reader.take(reader.varint())


# -- encoding ---------------------------------------------------------------------------------


def _frame(msg_type: int, payload: bytes) -> bytes:
    return bytes((MessageClass.STICK_TABLE, msg_type)) + encode_varint(len(payload)) + payload


def _encode_definition(d: TableDefinition) -> bytes:
    name = d.name.encode("utf-8", "surrogateescape")
    if not name:
        raise ValueError("table definition without a name")
    bitfield = 0
    for data_type in d.data_types:
        bitfield |= 1 << data_type
    parts = [
        encode_varint(d.table_id),
        encode_varint(len(name)),
        name,
        encode_varint(d.key_type),
        encode_varint(d.key_length),
        encode_varint(bitfield),
    ]
    if d.expire_ms is not None:
        parts.append(encode_varint(d.expire_ms))
        for p in d.params:
            parts.append(encode_varint(p.data_type))
            if p.array_size is not None:
                parts.append(encode_varint(p.array_size))
            if p.period is not None:
                parts.append(encode_varint(p.period))
    elif d.params:
        raise ValueError(f"table {d.name!r}: parameters need an expiry (2.1 definition)")
    return _frame(StickTableType.DEFINE, b"".join(parts))


def _encode_key(definition: TableDefinition, key: object) -> bytes:
    key_type = definition.key_type
    if key_type == KeyType.STRING and isinstance(key, bytes):
        return encode_varint(len(key)) + key
    if key_type == KeyType.INTEGER and isinstance(key, int) and 0 <= key <= _U32:
        return key.to_bytes(4, "big")
    if key_type == KeyType.IPV4 and isinstance(key, IPv4Address):
        return key.packed
    if key_type == KeyType.IPV6 and isinstance(key, IPv6Address):
        return key.packed
    if key_type == KeyType.BINARY and isinstance(key, bytes) and len(key) == definition.key_length:
        return key
    raise ValueError(f"table {definition.name!r}: key {key!r} does not fit key type {key_type}")


class Encoder:
    """Turns messages into bytes for one connection.

    Stick-table messages need the stream's context, which the encoder keeps: an ``Update`` is
    written against the ``TableDefinition`` last encoded for its table id; if another table is
    current, the definition is sent again first (HAProxy does the same, rather than 0x83). An
    update whose id is the previous id of its table plus one goes out as an incremental update
    when ``incremental`` is true. An update with ``expire_ms`` goes out timed (2.1); the session
    leaves it None towards a 2.0 peer. Only ``server_id`` is written as data: a definition
    declaring other data types cannot be used for updates.
    """

    def __init__(self, incremental: bool = True) -> None:
        self.incremental = incremental
        self._definitions: dict[int, TableDefinition] = {}
        self._current: int | None = None
        self._last_ids: dict[int, int] = {}

    def encode(self, message: Event) -> bytes:
        if isinstance(message, Update):
            return self._update(message)
        if isinstance(message, TableDefinition):
            data = _encode_definition(message)
            self._definitions[message.table_id] = message
            self._current = message.table_id
            return data
        if isinstance(message, TableSwitch):
            if message.table_id not in self._definitions:
                raise ValueError(f"table switch to undefined table id {message.table_id}")
            self._current = message.table_id
            return _frame(StickTableType.SWITCH, encode_varint(message.table_id))
        if isinstance(message, Ack):
            return _frame(
                StickTableType.ACK,
                encode_varint(message.table_id) + (message.update_id & _U32).to_bytes(4, "big"),
            )
        if isinstance(message, Hello):
            return encode_hello(message)
        if isinstance(message, StatusLine):
            return encode_status(message.code)
        if isinstance(message, ErrorMessage):
            return bytes((MessageClass.ERROR, message.error))
        if isinstance(message, UnknownMessage):
            head = bytes((message.msg_class, message.msg_type))
            if message.msg_type < 0x80:
                return head
            return head + encode_varint(len(message.payload)) + message.payload
        control = _CONTROL_TYPE.get(type(message))
        if control is not None:
            return bytes((MessageClass.CONTROL, control))
        raise TypeError(f"cannot encode {message!r}")

    def _update(self, update: Update) -> bytes:
        expire_ms = update.expire_ms
        if expire_ms is not None and not 0 <= expire_ms <= _U32:
            raise ValueError(f"expiry out of range: {expire_ms}")
        change = (update.update_id, update.key, update.server_id, expire_ms or 0)
        return self.updates(update.table_id, (change,), timed=expire_ms is not None, ms_per_unit=1)

    def run(self, table_id: int, run: UpdateRun) -> bytes:
        """A run's updates, for the table ``table_id`` (defined again first if another table is
        current); later updates continue after its last id."""
        self._last_ids[table_id] = run.last_id & _U32
        if self._current == table_id:  # the usual case: no definition first
            return b"".join(run._parts)
        return self._table(table_id)[1] + run.take()

    def _table(self, table_id: int) -> tuple[TableDefinition, bytes]:
        """The definition updates of ``table_id`` are written against, and what must precede
        them: the definition again when another table is current (nothing otherwise)."""
        definition = self._definitions.get(table_id)
        if definition is None:
            raise ValueError(f"update for undefined table id {table_id}")
        if definition.data_types not in ((), _SERVER_ID_ONLY):
            raise ValueError(f"table {definition.name!r}: only server_id can be encoded")
        if self._current == table_id:
            return definition, b""
        self._current = table_id
        return definition, _encode_definition(definition)

    def updates(
        self,
        table_id: int,
        changes: Sequence[tuple[int, object, int | None, float]],
        *,
        timed: bool,
        ms_per_unit: float = 1000.0,
    ) -> bytes:
        """Update messages for the table ``table_id``, in order, as ``encode(Update(...))`` of each
        would write them, without an object per update (the push of every learned entry, and a
        full resync, go through here).

        Each change is (update id, key, server id, life left): the key as an ``Update`` carries it
        or as a stick table stores it (an int for ipv4 and ipv6 keys); the life left in units of
        ``ms_per_unit`` milliseconds (seconds by default), written when ``timed``, clamped to
        the wire's 32-bit range.
        """
        definition, head = self._table(table_id)
        with_server = definition.data_types == _SERVER_ID_ONLY
        key_type = definition.key_type
        fixed = _FIXED_KEYS.get(key_type)
        string = key_type == KeyType.STRING
        types = _UPDATE_TYPES[timed]
        heads = _HEADS[timed]
        out = [head]
        last = self._last_ids.get(table_id)
        incremental = self.incremental
        plain = string and with_server and timed and incremental
        done, count = 0, len(changes)
        while done < count:
            if plain and last is not None:
                taken, last = _plain_run(changes, done, last, ms_per_unit, out)
                done += taken
                rest = changes[done : done + 1]  # one the run could not take, if any
            else:
                rest = changes[done:]
            done += len(rest)
            for update_id, key, server_id, left in rest:
                if string:
                    if type(key) is not bytes:
                        raise ValueError(f"table {definition.name!r}: key {key!r} is not bytes")
                    size = len(key)
                    payload = (_BYTES[size] if size < 0xF0 else encode_varint(size)) + key
                elif fixed is not None:
                    payload = _fixed_key(definition, key, fixed)
                else:
                    payload = _encode_key(definition, key)
                if (server_id is not None) is not with_server:
                    raise ValueError(
                        f"table {definition.name!r}: server_id must match the definition"
                    )
                if server_id is not None:
                    payload += (
                        _BYTES[server_id] if 0 <= server_id < 0xF0 else encode_varint(server_id)
                    )
                if timed:
                    ms = int(left * ms_per_unit)
                    if not 0 <= ms <= _U32:
                        ms = 0 if ms < 0 else _U32
                    payload = ms.to_bytes(4, "big") + payload
                update_id &= _U32
                if incremental and last is not None and update_id == (last + 1) & _U32:
                    msg_type, head = types[1], heads[1]
                else:
                    msg_type, head = types[0], heads[0]
                    payload = update_id.to_bytes(4, "big") + payload
                last = update_id
                size = len(payload)
                out.append(head[size] + payload if size < 0xF0 else _frame(msg_type, payload))
        self._last_ids[table_id] = last  # type: ignore[assignment]
        return b"".join(out)


class UpdateRun:
    """Timed updates of one table encoded as its entries change, for the sessions that are up to
    date to send as they are (``Encoder.run``).

    The sync service adds each local change of the table to its run when the table logs it, while
    the key is at hand, and empties the run once the loop iteration's pushes are done: the push of
    a learned entry then costs a few appends, and one join per iteration, where walking the update
    log and encoding each entry for each session cost several times more (the proxy's own work
    between two pushes leaves every cache cold).

    The first update of a run carries its id; the next ones are incremental while the ids follow
    each other. Each entry goes out with the table's full ``expire_ms``: a local change has just
    refreshed its entry. ``base`` is the table's last local update id before the run started: a
    session that has pushed exactly that far can send the run. At most ``limit`` updates; past
    that the run stops growing and the sessions take the rest from the update log.
    ``on_start``, when set, is called as a run starts: the sync service enrolls its push there.
    """

    __slots__ = (
        *("_definition", "_encoder", "_expire_ms", "_fixed", "_full_heads", "_ms", "_parts"),
        *("_prefixes", "_string", "base", "count", "first_id", "last_id", "limit", "on_start"),
    )

    def __init__(self, definition: TableDefinition, base: int, limit: int) -> None:
        if definition.expire_ms is None or definition.data_types != _SERVER_ID_ONLY:
            raise ValueError(f"table {definition.name!r}: runs need an expiry and only server_id")
        self._definition = definition
        key_type = definition.key_type
        self._string = key_type == KeyType.STRING
        self._fixed = _FIXED_KEYS.get(key_type)
        self._expire_ms = min(definition.expire_ms, _U32)
        self._encoder = Encoder(incremental=False)  # for updates that carry their id
        self._encoder.encode(definition)
        ms = self._expire_ms.to_bytes(4, "big")
        self._ms = ms
        self._full_heads = _HEADS[True][0]  # by payload length
        heads = _HEADS[True][1]
        if self._string:  # by key length: the message head, the expiry and the key's length
            self._prefixes = [heads[n + 6] + ms + _BYTES[n] for n in range(0xEA)]
        elif self._fixed is not None:
            self._prefixes = [heads[self._fixed[0] + 5] + ms]
        else:
            raise ValueError(
                f"table {definition.name!r}: no runs for key type {definition.key_type}"
            )
        self.limit = limit
        self.on_start: Callable[[], None] | None = None
        self._parts: list[bytes] = []
        self.base = base
        self.count = self.first_id = self.last_id = 0

    def add(self, update_id: int, key: bytes | int, server_id: int) -> None:
        """Append the update of a local change (the key as the stick table stores it)."""
        count = self.count
        if count >= self.limit:
            return
        self.count = count + 1
        if count and update_id == self.last_id + 1 and server_id < 0xF0:
            self.last_id = update_id
            if not self._string:
                body = int(key).to_bytes(self._fixed[0], "big")  # type: ignore[index]
                self._parts += (self._prefixes[0], body, _BYTES[server_id])
                return
            if len(key) < 0xEA:  # type: ignore[arg-type]
                self._parts += (self._prefixes[len(key)], key, _BYTES[server_id])  # type: ignore
                return
        elif not count:
            self.first_id = update_id
            if self.on_start is not None:
                self.on_start()
            if server_id < 0xF0 and (not self._string or len(key) < 0xE6):  # type: ignore[arg-type]
                # A full update: the head, its id, then what an incremental one holds.
                self.last_id = update_id
                uid = (update_id & _U32).to_bytes(4, "big")
                if self._string:
                    n = len(key)  # type: ignore[arg-type]
                    head = self._full_heads[n + 10] + uid + self._ms + _BYTES[n]
                    self._parts += (head, key, _BYTES[server_id])  # type: ignore[arg-type]
                else:
                    size = self._fixed[0]  # type: ignore[index]
                    head = self._full_heads[size + 9] + uid + self._ms
                    self._parts += (head, int(key).to_bytes(size, "big"), _BYTES[server_id])
                return
        # The first of the run, after a gap, or an unusual size: through the general encoder.
        self.last_id = update_id
        change = (update_id, key, server_id, self._expire_ms)
        self._parts.append(
            self._encoder.updates(self._definition.table_id, (change,), **_FULL_TIMED)
        )

    def take(self) -> bytes:
        """The run's bytes."""
        return b"".join(self._parts)

    def clear(self, base: int) -> None:
        self._parts = []
        self.base = base
        self.count = self.first_id = self.last_id = 0


def _plain_run(
    changes: Sequence[tuple[int, object, int | None, float]],
    start: int,
    last: int,
    ms_per_unit: float,
    out: list[bytes],
) -> tuple[int, int]:
    """The usual updates of a string table, as ``Encoder.updates`` writes them, in a loop of
    their own: from ``changes[start]`` on, as long as each is incremental after ``last``, its
    key bytes short enough for a one-byte length, its server id one byte and its expiry in
    range. Appends them to ``out``; returns how many it took and the last id."""
    heads, one_byte = _HEADS[True][1], _BYTES
    append = out.append
    taken = 0
    for update_id, key, server_id, left in islice(changes, start, None):
        ms = int(left * ms_per_unit)
        if (
            type(key) is not bytes
            or (size := len(key)) > 0xE9  # the payload, size + 6 bytes, in a one-byte length
            or server_id not in _ONE_BYTE
            or not 0 <= ms <= _U32
            or update_id & _U32 != last + 1
        ):
            break
        last += 1
        taken += 1
        append(heads[size + 6])
        append(ms.to_bytes(4, "big"))
        append(one_byte[size])
        append(key)
        append(one_byte[server_id])  # type: ignore[index]
    return taken, last


def _fixed_key(definition: TableDefinition, key: object, shape: tuple[int, tuple]) -> bytes:
    """An integer, ipv4 or ipv6 key (an int, or an address object) in its fixed width."""
    width, kinds = shape
    if isinstance(key, kinds) and not isinstance(key, bool):
        try:
            return int(key).to_bytes(width, "big")  # type: ignore[call-overload]
        except OverflowError:  # negative, or too large
            pass
    raise ValueError(
        f"table {definition.name!r}: key {key!r} does not fit key type {definition.key_type}"
    )


_SERVER_ID_ONLY = (DataType.SERVER_ID,)
# key type -> (width, what may carry the key): keys written in a fixed number of bytes
_FIXED_KEYS: dict[int, tuple[int, tuple]] = {
    KeyType.INTEGER: (4, (int,)),
    KeyType.IPV4: (4, (int, IPv4Address)),
    KeyType.IPV6: (16, (int, IPv6Address)),
}
_BYTES = [bytes((n,)) for n in range(256)]
_ONE_BYTE = frozenset(range(0xF0))  # server ids written in one byte
_FULL_TIMED = {"timed": True, "ms_per_unit": 1}
# timed -> (type of a full update, type of an incremental one)
_UPDATE_TYPES = {
    False: (StickTableType.UPDATE, StickTableType.INCREMENTAL_UPDATE),
    True: (StickTableType.TIMED_UPDATE, StickTableType.INCREMENTAL_TIMED_UPDATE),
}
# timed -> the same two, as the three bytes that start such a message with each one-byte length
_HEADS = {
    timed: tuple([bytes((MessageClass.STICK_TABLE, t, n)) for n in range(0xF0)] for t in types)
    for timed, types in _UPDATE_TYPES.items()
}
