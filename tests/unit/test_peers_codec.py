"""The peers protocol codec (ha/sync/codec.py): varints, handshake, messages, framing.

Expected bytes are written out by hand from HAProxy's doc/peers.txt and src/peers.c, so that a
mistake shared by the encoder and the decoder cannot pass unnoticed.
"""

from __future__ import annotations

import contextlib
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ha.sync.codec import (
    MAX_MESSAGE_SIZE,
    Ack,
    DataParams,
    DataType,
    Decoder,
    Encoder,
    ErrorMessage,
    ErrorType,
    HandshakeError,
    Heartbeat,
    Hello,
    KeyType,
    ProtocolError,
    ResyncConfirm,
    ResyncFinished,
    ResyncPartial,
    ResyncRequest,
    SkippedUpdate,
    Status,
    StatusLine,
    TableDefinition,
    TableSwitch,
    UnknownMessage,
    Update,
    UpdateRun,
    decode_varint,
    encode_status,
    encode_varint,
    wire_key_length,
)

pytestmark = pytest.mark.unit


def decode_all(data: bytes, expect: str = "messages", **kwargs) -> list:
    decoder = Decoder(expect, **kwargs)
    decoder.feed(data)
    return drain(decoder)


def drain(decoder: Decoder) -> list:
    out = []
    while (message := decoder.next_message()) is not None:
        out.append(message)
    return out


def varint_by_the_doc(value: int) -> bytes:
    """The encoding algorithm as doc/peers.txt words it, written independently of the codec."""
    if value < 0xF0:
        return bytes([value])
    out = [(value | 0xF0) & 0xFF]
    value = (value - 0xF0) >> 4
    while value >= 0x80:
        out.append((value | 0x80) & 0xFF)
        value = (value - 0x80) >> 7
    out.append(value)
    return bytes(out)


STRING_TABLE = TableDefinition(3, "web", KeyType.STRING, 33, (DataType.SERVER_ID,), 1_800_000)


# -- varints --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (1, "01"),
        (239, "ef"),
        (240, "f000"),
        (241, "f100"),
        (2287, "ff7f"),  # last 2-byte value (peers-v2.0.txt: 240 <= X < 2288)
        (2288, "f08000"),
        (0x1234, "f49401"),  # the worked example of doc/peers.txt
        (264431, "ffff7f"),  # last 3-byte value
        (264432, "f0808000"),
        (33818863, "ffffff7f"),  # last 4-byte value
        (33818864, "f080808000"),
        (4328786159, "ffffffff7f"),  # last 5-byte value
        (2**32 - 1, "fff0fefe7e"),
        (2**64 - 1, "fff0fefefefefefefe0e"),
    ],
)
def test_varint_known_values(value, encoded):
    assert encode_varint(value).hex() == encoded
    assert decode_varint(bytes.fromhex(encoded)) == (value, len(encoded) // 2)


@pytest.mark.parametrize(
    ("first", "length"),
    [(240, 2), (2288, 3), (264432, 4), (33818864, 5), (4328786160, 6)],
)
def test_varint_length_boundaries_of_the_v2_0_table(first, length):
    assert len(encode_varint(first)) == length
    assert len(encode_varint(first - 1)) == length - 1


@given(st.integers(0, 2**64 - 1))
def test_varint_round_trip_and_matches_the_documented_algorithm(value):
    encoded = encode_varint(value)
    assert encoded == varint_by_the_doc(value)
    assert decode_varint(encoded + b"\xff") == (value, len(encoded))


def test_varint_rejects_out_of_range_values():
    for value in (-1, 2**64):
        with pytest.raises(ValueError):
            encode_varint(value)


def test_varint_cut_short_too_long_or_above_64_bits_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="cut short"):
        decode_varint(b"\xf4\x94")
    with pytest.raises(ProtocolError, match="end of data"):
        decode_varint(b"")
    with pytest.raises(ProtocolError, match="longer than 10"):
        decode_varint(b"\xff" + b"\x80" * 100)
    with pytest.raises(ProtocolError, match="longer than 3"):
        decode_varint(b"\xf0\x80\x80\x00", max_bytes=3)
    with pytest.raises(ProtocolError, match="64 bits"):
        decode_varint(b"\xff" + b"\xff" * 8 + b"\x7f")


# -- handshake ------------------------------------------------------------------------------------


def test_hello_format_and_parse():
    hello = Hello("lb2", "lb1", 4242)
    data = Encoder().encode(hello)
    assert data == b"HAProxyS 2.1\nlb2\nlb1 4242 1\n"
    assert decode_all(data, "hello") == [hello]


def test_hello_in_version_2_0_with_crlf_and_fragmented():
    decoder = Decoder("hello")
    for byte in b"HAProxyS 2.0\r\nlb2\r\nlb1 7 0\r\n":
        assert decoder.next_message() is None
        decoder.feed(bytes([byte]))
    assert decoder.next_message() == Hello("lb2", "lb1", 7, 0, (2, 0))


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\n", Status.PROTOCOL_ERROR),
        (b"HAProxyS 3.0\n", Status.BAD_VERSION),
        (b"HAProxyS 2.2\n", Status.BAD_VERSION),
        (b"HAProxyS 2.x\n", Status.BAD_VERSION),
        (b"HAProxyS 2.1\nlb2\nlb1\n", Status.PROTOCOL_ERROR),  # no pids
        (b"HAProxyS 2.1\nlb2\nlb1 12 x\n", Status.PROTOCOL_ERROR),
        (b"HAProxyS 2.1\n\nlb1 1 1\n", Status.PROTOCOL_ERROR),
        (b"HAProxyS 2.1\n" + b"x" * 600, Status.PROTOCOL_ERROR),  # line too long
    ],
)
def test_bad_hellos_carry_the_status_to_answer(data, status):
    with pytest.raises(HandshakeError) as caught:
        decode_all(data, "hello")
    assert caught.value.status == status


def test_bad_version_is_refused_before_the_other_lines_arrive():
    decoder = Decoder("hello")
    decoder.feed(b"HAProxyS 9.9\n")
    with pytest.raises(HandshakeError):
        decoder.next_message()
    with pytest.raises(HandshakeError):  # the decoder stays failed
        decoder.next_message()


@pytest.mark.parametrize("code", list(Status))
def test_status_lines(code):
    assert code.value in (200, 300, 501, 502, 503, 504)
    data = encode_status(code)
    assert data == b"%d\n" % code
    assert decode_all(data, "status") == [StatusLine(code)]


def test_messages_may_follow_the_status_line_in_the_same_read():
    data = b"200\n" + Encoder().encode(Heartbeat())
    assert decode_all(data, "status") == [StatusLine(200), Heartbeat()]


def test_bad_status_line_and_bad_names():
    with pytest.raises(HandshakeError):
        decode_all(b"ok\n", "status")
    for name in ("", "lb 1", "lb\n1"):
        with pytest.raises(ValueError):
            Encoder().encode(Hello(name, "lb1", 1))
    with pytest.raises(ValueError):
        encode_status(42)


# -- control, error and unknown messages ----------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (ResyncRequest(), b"\x00\x00"),
        (ResyncFinished(), b"\x00\x01"),
        (ResyncPartial(), b"\x00\x02"),
        (ResyncConfirm(), b"\x00\x03"),
        (Heartbeat(), b"\x00\x04"),
        (ErrorMessage(ErrorType.PROTOCOL), b"\x01\x00"),
        (ErrorMessage(ErrorType.SIZE_LIMIT), b"\x01\x01"),
        (TableSwitch(3), b"\x0a\x83\x01\x03"),
        (Ack(3, 0x01020304), b"\x0a\x84\x05\x03\x01\x02\x03\x04"),
        (UnknownMessage(0, 9), b"\x00\x09"),
        (UnknownMessage(7, 0x90, b"abc"), b"\x07\x90\x03abc"),
    ],
)
def test_fixed_messages_round_trip(message, wire):
    encoder = Encoder()
    encoder.encode(STRING_TABLE)  # a switch needs a known table
    assert encoder.encode(message) == wire
    assert decode_all(wire) == [message]


def test_reserved_class_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="reserved"):
        decode_all(b"\xff\x00")


# -- table definitions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weir_type", "key_type", "key_length"),
    [("string", KeyType.STRING, 33), ("ipv4", KeyType.IPV4, 4), ("ipv6", KeyType.IPV6, 16),
     ("integer", KeyType.INTEGER, 4)],
)  # fmt: skip
def test_definition_of_each_key_type(weir_type, key_type, key_length):
    assert wire_key_length(weir_type) == key_length
    definition = TableDefinition(1, "app", key_type, key_length, (DataType.SERVER_ID,), 60_000)
    wire = Encoder().encode(definition)
    # id, name length, name, key type, key length, bitfield (server_id = bit 0), expire
    payload = b"\x01\x03app" + bytes([key_type, key_length]) + b"\x01" + encode_varint(60_000)
    assert wire == b"\x0a\x82" + encode_varint(len(payload)) + payload
    assert decode_all(wire) == [definition]
    assert definition.layout_problem() is None


def test_definition_2_0_without_expiry():
    definition = TableDefinition(1, "app", KeyType.STRING, 33)
    assert decode_all(Encoder().encode(definition)) == [definition]
    assert definition.expire_ms is None


def test_definition_with_frequency_counter_and_array_parameters():
    definition = TableDefinition(
        2,
        "abuse",
        KeyType.IPV4,
        4,
        (DataType.SERVER_ID, DataType.HTTP_REQ_RATE, DataType.GPC),
        10_000,
        (DataParams(DataType.HTTP_REQ_RATE, period=10_000), DataParams(DataType.GPC, 3)),
    )
    wire = Encoder().encode(definition)
    assert wire.endswith(b"\x0a" + encode_varint(10_000) + b"\x17\x03")
    assert decode_all(wire) == [definition]


def test_definition_with_mismatched_parameters_is_a_protocol_error():
    good = Encoder().encode(
        TableDefinition(
            2, "t", KeyType.IPV4, 4, (DataType.CONN_RATE,), 1000, (DataParams(5, period=100),)
        )
    )
    bad = good[:-2] + b"\x06" + good[-1:]  # parameters announced for data type 6
    with pytest.raises(ProtocolError, match="parameters"):
        decode_all(bad)


def test_definition_with_an_empty_name_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="empty"):
        decode_all(b"\x0a\x82\x05\x01\x00\x06\x21\x01")


# -- updates --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "key_length", "key", "key_wire"),
    [
        (KeyType.STRING, 33, b"JSESSIONID-1", b"\x0cJSESSIONID-1"),
        (KeyType.IPV4, 4, IPv4Address("198.18.0.1"), bytes([198, 18, 0, 1])),
        (KeyType.IPV6, 16, IPv6Address("2001:db8::1"), IPv6Address("2001:db8::1").packed),
        (KeyType.INTEGER, 4, 0xDEADBEEF, b"\xde\xad\xbe\xef"),
        (KeyType.BINARY, 3, b"\x00\x01\x02", b"\x00\x01\x02"),
    ],
)
def test_update_with_each_key_type_and_server_id(key_type, key_length, key, key_wire):
    definition = TableDefinition(1, "t", key_type, key_length, (DataType.SERVER_ID,), 30_000)
    encoder = Encoder()
    head = encoder.encode(definition)
    update = Update(1, 0x10000, key, 300)
    wire = encoder.encode(update)
    payload = b"\x00\x01\x00\x00" + key_wire + encode_varint(300)
    assert wire == b"\x0a\x80" + encode_varint(len(payload)) + payload
    assert decode_all(head + wire) == [definition, update]


def test_timed_update_carries_the_expiry_in_ms_after_the_id():
    encoder = Encoder()
    head = encoder.encode(STRING_TABLE)
    update = Update(3, 7, b"abc", 2, expire_ms=1_500_000)
    wire = encoder.encode(update)
    assert wire == b"\x0a\x85\x0d" + b"\x00\x00\x00\x07" + (1_500_000).to_bytes(4, "big") + (
        b"\x03abc\x02"
    )
    assert decode_all(head + wire) == [STRING_TABLE, update]


def test_incremental_updates_omit_the_id_which_is_the_previous_plus_one():
    encoder = Encoder()
    updates = [
        Update(3, 10, b"a", 1),
        Update(3, 11, b"b", 2),  # incremental
        Update(3, 12, b"c", 1, expire_ms=1000),  # incremental, timed
        Update(3, 20, b"d", 1),  # a gap: full id
    ]
    wires = [encoder.encode(STRING_TABLE)] + [encoder.encode(u) for u in updates]
    assert [w[1] for w in wires] == [0x82, 0x80, 0x81, 0x86, 0x80]
    assert wires[2] == b"\x0a\x81\x03\x01b\x02"
    assert decode_all(b"".join(wires))[1:] == updates


def test_incremental_ids_wrap_at_32_bits_and_are_kept_per_table():
    other = TableDefinition(4, "src", KeyType.IPV4, 4, (DataType.SERVER_ID,), 1000)
    encoder = Encoder()
    messages = [
        STRING_TABLE,
        Update(3, 0xFFFFFFFF, b"a", 1),
        other,
        Update(4, 5, IPv4Address("10.0.0.1"), 1),
        Update(3, 0, b"b", 1),  # back to table 3: definition re-sent, then incremental
    ]
    wire = b"".join(encoder.encode(m) for m in messages)
    decoded = decode_all(wire)
    assert decoded == [*messages[:4], STRING_TABLE, messages[4]]
    assert wire.endswith(b"\x0a\x81\x03\x01b\x01")


def test_encoder_can_always_send_full_ids():
    encoder = Encoder(incremental=False)
    encoder.encode(STRING_TABLE)
    encoder.encode(Update(3, 1, b"a", 1))
    assert encoder.encode(Update(3, 2, b"b", 1))[1] == 0x80


# key type -> (key length, its keys as a stick table stores them, how an Update carries them)
KEY_SHAPES = {
    KeyType.STRING: (33, st.binary(min_size=1, max_size=32), lambda k: k),
    KeyType.IPV4: (4, st.integers(0, 2**32 - 1), IPv4Address),
    KeyType.IPV6: (16, st.integers(0, 2**128 - 1), IPv6Address),
    KeyType.INTEGER: (4, st.integers(0, 2**32 - 1), lambda k: k),
}


@st.composite
def batches(draw):
    key_type = draw(st.sampled_from(sorted(KEY_SHAPES)))
    key_length, keys, _ = KEY_SHAPES[key_type]
    first = draw(st.integers(0, 2**32 + 5))
    steps = draw(st.lists(st.sampled_from([1, 1, 1, 2, 7]), min_size=1, max_size=20))
    ids = [first + sum(steps[:i]) for i in range(len(steps))]
    changes = [
        (
            update_id,
            draw(keys),
            draw(st.sampled_from([1, 2, 239, 240, 70_000, 2**31 - 1])),
            draw(st.floats(-1, 5_000_000, allow_nan=False)),
        )
        for update_id in ids
    ]
    return key_type, key_length, changes, draw(st.booleans())


@settings(max_examples=300)
@given(batches())
def test_a_batch_of_stored_changes_encodes_as_its_updates_one_by_one(batch):
    key_type, key_length, changes, timed = batch
    public = KEY_SHAPES[key_type][2]
    definition = TableDefinition(5, "t", key_type, key_length, (DataType.SERVER_ID,), 30_000)
    one_by_one, batched = Encoder(), Encoder()
    assert one_by_one.encode(definition) == batched.encode(definition)
    updates = [
        Update(
            5,
            update_id & 0xFFFFFFFF,
            public(key),
            server_id,
            min(max(0, int(left * 1000)), 0xFFFFFFFF) if timed else None,
        )
        for update_id, key, server_id, left in changes
    ]
    wire = batched.updates(5, changes, timed=timed)
    assert wire == b"".join(one_by_one.encode(u) for u in updates)
    assert decode_all(one_by_one.encode(definition) + wire)[1:] == updates


def test_a_batch_resends_the_definition_after_another_table_and_frames_long_payloads():
    long_keys = TableDefinition(6, "long", KeyType.STRING, 301, (DataType.SERVER_ID,), 1000)
    encoder = Encoder()
    encoder.encode(STRING_TABLE)
    encoder.encode(long_keys)
    key = b"k" * 300
    wire = encoder.updates(3, [(1, b"a", 1, 2.0), (2, b"b", 1, 2.0)], timed=True)
    assert wire.startswith(Encoder().encode(STRING_TABLE))  # table 3 again: defined again
    wire = encoder.updates(6, [(9, key, 1, 0.5)], timed=True)
    payload = (9).to_bytes(4, "big") + (500).to_bytes(4, "big") + encode_varint(300) + key + b"\x01"
    assert wire.endswith(b"\x0a\x85" + encode_varint(len(payload)) + payload)


def test_a_batch_refuses_keys_that_do_not_fit_the_key_type():
    encoder = Encoder()
    encoder.encode(TableDefinition(1, "v4", KeyType.IPV4, 4, (DataType.SERVER_ID,), 1000))
    for key in (IPv6Address("::1"), 2**32, -1, "10.0.0.1", True):
        with pytest.raises(ValueError, match="does not fit"):
            encoder.updates(1, [(1, key, 1, 1.0)], timed=True)
    encoder.encode(STRING_TABLE)
    with pytest.raises(ValueError, match="not bytes"):
        encoder.updates(3, [(1, "text", 1, 1.0)], timed=True)


def test_update_before_any_definition_or_for_a_skipped_table_is_skipped():
    encoder = Encoder()
    head = encoder.encode(STRING_TABLE)
    first = encoder.encode(Update(3, 9, b"a", 1))
    second = encoder.encode(Update(3, 10, b"b", 1))
    assert decode_all(first) == [SkippedUpdate(None, 9)]
    decoder = Decoder()
    decoder.feed(head + first + second)
    assert decoder.next_message() == STRING_TABLE
    decoder.skip_table(3)
    assert drain(decoder) == [SkippedUpdate(3, 9), SkippedUpdate(3, 10)]


def test_switch_to_an_unknown_table_makes_updates_skipped():
    encoder = Encoder()
    head = encoder.encode(STRING_TABLE)
    update = encoder.encode(Update(3, 9, b"a", 1))
    assert decode_all(head + b"\x0a\x83\x01\x63" + update)[-1] == SkippedUpdate(None, 9)


def test_data_types_of_knowable_size_are_skipped():
    # HAProxy table: server_id, gpc0, conn_rate, server_key, gpc (array of 2)
    definition = TableDefinition(
        5,
        "mix",
        KeyType.STRING,
        33,
        (DataType.SERVER_ID, DataType.GPC0, DataType.CONN_RATE, DataType.SERVER_KEY, DataType.GPC),
        5000,
        (DataParams(DataType.CONN_RATE, period=1000), DataParams(DataType.GPC, 2)),
    )
    head = Encoder().encode(definition)
    payload = (
        b"\x00\x00\x00\x2a"  # update id 42
        + b"\x01k"  # key
        + encode_varint(7)  # server_id
        + encode_varint(1000)  # gpc0
        + b"\x05\x06\x07"  # conn_rate: age, current, previous
        + b"\x05\x01\x03web"  # server_key: length, dictionary id, string length, string
        + b"\x01\x02"  # gpc[0], gpc[1]
        + b"extension"  # fields of a later version are ignored
    )
    wire = head + b"\x0a\x80" + encode_varint(len(payload)) + payload
    assert decode_all(wire)[1] == Update(5, 42, b"k", 7)


@pytest.mark.parametrize(
    ("definition", "problem"),
    [
        (TableDefinition(6, "u", 3, 4, (DataType.SERVER_ID,)), "key type"),
        (TableDefinition(6, "u", KeyType.IPV4, 8, (DataType.SERVER_ID,)), "key length"),
        (TableDefinition(6, "u", KeyType.STRING, 33, (40,), 1000), "data type 40"),
        (TableDefinition(6, "u", KeyType.STRING, 33, (DataType.GPT,)), "array size"),
    ],
)
def test_updates_of_unknowable_size_are_a_protocol_error(definition, problem):
    assert problem in definition.layout_problem()
    wire = Encoder().encode(definition) + b"\x0a\x80\x06\x00\x00\x00\x01\x01k"
    with pytest.raises(ProtocolError, match=problem):
        decode_all(wire)
    decoder = Decoder()  # unless the session skips the table
    decoder.feed(wire)
    decoder.next_message()
    decoder.skip_table(6)
    assert decoder.next_message() == SkippedUpdate(6, 1)


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00\x00\x01",  # id cut short
        b"\x00\x00\x00\x01\x05ab",  # key longer than the message
        b"\x00\x00\x00\x01\x01k",  # server_id missing
        b"\x00\x00\x00\x01\x01k\xf0",  # server_id cut short
    ],
)
def test_truncated_updates_are_protocol_errors(payload):
    head = Encoder().encode(STRING_TABLE)
    with pytest.raises(ProtocolError):
        decode_all(head + b"\x0a\x80" + encode_varint(len(payload)) + payload)


def test_encoder_refuses_what_it_cannot_write():
    encoder = Encoder()
    with pytest.raises(ValueError, match="undefined"):
        encoder.encode(Update(3, 1, b"a", 1))
    encoder.encode(STRING_TABLE)
    for bad in (Update(3, 1, "text", 1), Update(3, 1, b"a", None), Update(3, 1, 5, 1)):
        with pytest.raises(ValueError):
            encoder.encode(bad)
    encoder.encode(TableDefinition(9, "c", KeyType.STRING, 33, (DataType.GPC0,), 1))
    with pytest.raises(ValueError, match="only server_id"):
        encoder.encode(Update(9, 1, b"a", None))
    with pytest.raises(ValueError, match="undefined"):
        encoder.encode(TableSwitch(77))


# -- framing --------------------------------------------------------------------------------------


def test_byte_by_byte_feeding_gives_the_same_messages():
    encoder = Encoder()
    messages = [
        STRING_TABLE,
        *(Update(3, i, b"key%d" % i, i % 5, expire_ms=i * 1000) for i in range(1, 30)),
        Heartbeat(),
        Ack(3, 29),
        ResyncFinished(),
    ]
    wire = b"200\n" + b"".join(encoder.encode(m) for m in messages)
    decoder = Decoder("status")
    out = []
    for byte in wire:
        decoder.feed(bytes([byte]))
        out.extend(drain(decoder))
    assert out == [StatusLine(200), *messages]
    assert decoder.buffered == 0


def test_oversize_message_is_refused_as_soon_as_its_length_is_read():
    decoder = Decoder(max_message_size=100)
    decoder.feed(b"\x0a\x80" + encode_varint(101))
    with pytest.raises(ProtocolError) as caught:
        decoder.next_message()
    assert caught.value.error == ErrorType.SIZE_LIMIT
    assert MAX_MESSAGE_SIZE == 16384


def test_oversize_length_varint_is_a_protocol_error():
    decoder = Decoder()
    decoder.feed(b"\x0a\x80\xff\x80\x80\x80")
    assert decoder.next_message() is None  # 4 length bytes: a fifth may still end it
    decoder.feed(b"\x80")
    with pytest.raises(ProtocolError, match="length longer than 5") as caught:
        decoder.next_message()
    assert caught.value.error == ErrorType.PROTOCOL


# -- properties -----------------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=200), st.sampled_from(["hello", "status", "messages"]))
def test_decoder_raises_nothing_but_protocol_error(data, expect):
    decoder = Decoder(expect, max_message_size=64)
    decoder.feed(data)
    with contextlib.suppress(ProtocolError):
        drain(decoder)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=30), max_size=10))
def test_decoder_on_garbage_after_a_definition(chunks):
    decoder = Decoder()
    decoder.feed(Encoder().encode(STRING_TABLE))
    with contextlib.suppress(ProtocolError):
        for chunk in chunks:
            decoder.feed(b"\x0a" + bytes([0x80 + len(chunk) % 7, len(chunk)]) + chunk)
            drain(decoder)


KEYS = {
    KeyType.STRING: (33, st.binary(max_size=40)),
    KeyType.IPV4: (4, st.integers(0, 2**32 - 1).map(IPv4Address)),
    KeyType.IPV6: (16, st.integers(0, 2**128 - 1).map(IPv6Address)),
    KeyType.INTEGER: (4, st.integers(0, 2**32 - 1)),
}


@st.composite
def streams(draw):
    key_type = draw(st.sampled_from(list(KEYS)))
    key_length, keys = KEYS[key_type]
    with_server = draw(st.booleans())
    definition = TableDefinition(
        draw(st.integers(0, 2**32)),
        draw(st.text(min_size=1, max_size=20)),
        key_type,
        key_length,
        (DataType.SERVER_ID,) if with_server else (),
        draw(st.none() | st.integers(0, 2**40)),
    )
    messages = [definition]
    update_id = draw(st.integers(0, 2**32 - 1))
    for _ in range(draw(st.integers(0, 8))):
        update_id = (update_id + draw(st.sampled_from([1, 1, 2, 1000]))) & 0xFFFFFFFF
        messages.append(
            Update(
                definition.table_id,
                update_id,
                draw(keys),
                draw(st.integers(0, 300) | st.integers(0, 2**31 - 1)) if with_server else None,
                draw(st.none() | st.integers(0, 2**32 - 1)),
            )
        )
        other = draw(
            st.sampled_from(
                [None, Heartbeat(), ResyncRequest(), Ack(definition.table_id, update_id)]
            )
        )
        if other is not None:
            messages.append(other)
    return messages


@settings(max_examples=200)
@given(streams(), st.integers(1, 50))
def test_encode_then_decode_is_the_identity(messages, chunk):
    encoder = Encoder()
    wire = b"".join(encoder.encode(m) for m in messages)
    decoder = Decoder(max_message_size=1000)
    out = []
    for i in range(0, len(wire), chunk):
        decoder.feed(wire[i : i + chunk])
        out.extend(drain(decoder))
    assert out == messages


def drain_with_runs(decoder: Decoder) -> list:
    """``drain``, taking runs of updates with ``plain_updates`` whenever it has one."""
    out = []
    while True:
        run = decoder.plain_updates()
        if run is not None:
            table_id, updates = run
            assert updates
            out.extend(Update(table_id, *update) for update in updates)
            continue
        message = decoder.next_message()
        if message is None:
            return out
        out.append(message)


@st.composite
def cookie_streams(draw):
    """Mostly what plain_updates takes: a string table with a server id, many updates."""
    timed = draw(st.booleans())
    definition = TableDefinition(
        7, "app", KeyType.STRING, 33, (DataType.SERVER_ID,), 1000 if timed else None
    )
    messages: list = [definition]
    update_id = draw(st.integers(0, 2**32 - 1))
    for _ in range(draw(st.integers(1, 30))):
        update_id = (update_id + draw(st.sampled_from([1, 1, 1, 1, 3]))) & 0xFFFFFFFF
        expire = draw(st.integers(0, 2**32 - 1)) if timed else None
        server = draw(st.integers(0, 260))
        messages.append(Update(7, update_id, draw(st.binary(max_size=40)), server, expire))
        if draw(st.integers(0, 9)) == 0:
            messages.append(draw(st.sampled_from([Heartbeat(), Ack(7, 1), TableSwitch(7)])))
    return messages


@settings(max_examples=300)
@given(cookie_streams() | streams(), st.integers(1, 400), st.sampled_from([None, 20, 1000]))
def test_runs_of_plain_updates_are_the_updates_next_message_gives(messages, chunk, size_limit):
    encoder = Encoder()
    wire = b"".join(encoder.encode(m) for m in messages)
    one_by_one, by_runs = (Decoder(max_message_size=size_limit or 1000) for _ in range(2))
    outcomes = []
    for decoder, take in ((one_by_one, drain), (by_runs, drain_with_runs)):
        out = []
        try:
            for i in range(0, len(wire), chunk):
                decoder.feed(wire[i : i + chunk])
                out.extend(take(decoder))
        except ProtocolError as exc:
            out.append(("error", str(exc)))
        outcomes.append(out)
    assert outcomes[0] == outcomes[1]
    if size_limit is None:
        assert outcomes[1] == messages


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=30), max_size=10), st.booleans())
def test_runs_of_plain_updates_stop_where_garbage_starts(chunks, framed):
    outcomes = []
    for take in (drain, drain_with_runs):
        decoder = Decoder()
        decoder.feed(Encoder().encode(STRING_TABLE))
        out: list = []
        try:
            for chunk in chunks:
                if framed:
                    chunk = b"\x0a" + bytes([0x80 + len(chunk) % 7, len(chunk)]) + chunk
                decoder.feed(chunk)
                out.extend(take(decoder))
        except ProtocolError as exc:
            out.append(("error", str(exc)))
        outcomes.append(out)
    assert outcomes[0] == outcomes[1]


# -- runs: updates encoded as the table changes ---------------------------------------------------


@settings(max_examples=200)
@given(batches(), st.integers(1, 25))
def test_a_run_decodes_as_the_updates_it_was_given_with_the_full_expiry(batch, limit):
    key_type, key_length, changes, _ = batch
    public = KEY_SHAPES[key_type][2]
    definition = TableDefinition(5, "t", key_type, key_length, (DataType.SERVER_ID,), 90_000)
    run = UpdateRun(definition, base=7, limit=limit)
    for update_id, key, server_id, _ in changes:
        run.add(update_id, key, server_id)
    taken = changes[:limit]
    assert (run.base, run.count) == (7, len(taken))
    assert (run.first_id, run.last_id) == (taken[0][0], taken[-1][0])
    encoder = Encoder()
    head = encoder.encode(definition)
    wire = encoder.run(5, run)
    assert wire == run.take()  # the table is current: no definition first
    expected = [Update(5, u & 0xFFFFFFFF, public(k), s, 90_000) for u, k, s, _ in taken]
    assert decode_all(head + wire)[1:] == expected
    # The encoder goes on after the run's last id: the next update is incremental.
    follow = encoder.updates(5, [(taken[-1][0] + 1, changes[0][1], 1, 1.0)], timed=True)
    assert follow[1] == 0x86
    run.clear(base=99)
    assert (run.base, run.count, run.take()) == (99, 0, b"")


def test_a_run_starts_with_a_full_id_and_a_gap_or_a_long_key_takes_one_too():
    definition = TableDefinition(2, "app", KeyType.STRING, 301, (DataType.SERVER_ID,), 5_000)
    run = UpdateRun(definition, base=0, limit=100)
    changes = [(10, b"a", 1), (11, b"b", 2), (15, b"c", 1), (16, b"d" * 260, 1), (17, b"e", 300)]
    for update_id, key, server in changes:
        run.add(update_id, key, server)
    wire = run.take()
    types, pos = [], 0
    while pos < len(wire):  # walk the frames: class, type, varint length, payload
        length, start = decode_varint(wire, pos + 2)
        types.append(wire[pos + 1])
        pos = start + length
    # incremental (0x86) only in the usual shape; full (0x85, with the id): the first, after
    # the gap, a key too long for a one-byte length, a server id of two bytes
    assert types == [0x85, 0x86, 0x85, 0x85, 0x85]
    encoder = Encoder()
    head = encoder.encode(definition)
    assert decode_all(head + encoder.run(2, run))[1:] == [
        Update(2, u, k, s, 5_000) for u, k, s in changes
    ]


@pytest.mark.parametrize(
    ("key_type", "key_length", "key"),
    [
        (KeyType.STRING, 301, b"k" * n)
        for n in (1, 32, 0xE5, 0xE6, 0xEF, 0xF0, 300)  # around the one-byte message length
    ]
    + [(KeyType.IPV4, 4, 0xC6120001), (KeyType.INTEGER, 4, 7), (KeyType.IPV6, 16, 2**100 + 1)],
)
@pytest.mark.parametrize("server_id", [1, 0xEF, 0xF0, 70_000])
@pytest.mark.parametrize("update_id", [1, 2**32 - 1, 2**32 + 3])
def test_a_run_starts_with_the_bytes_the_general_encoder_writes(
    key_type, key_length, key, server_id, update_id
):
    """The run's first update (with its id) is written without the general encoder when it can
    be: the bytes must be the same either way."""
    definition = TableDefinition(3, "t", key_type, key_length, (DataType.SERVER_ID,), 60_000)
    started: list[bool] = []
    run = UpdateRun(definition, base=0, limit=10)
    run.on_start = lambda: started.append(True)
    run.add(update_id, key, server_id)
    run.add(update_id + 1, key, 1)  # not a start: on_start is not called again
    general = Encoder(incremental=False)
    general.encode(definition)
    expected = general.updates(3, [(update_id, key, server_id, 60_000)], timed=True, ms_per_unit=1)
    assert run.take().startswith(expected)
    assert started == [True]


def test_a_run_after_another_table_defines_its_table_again():
    first = TableDefinition(1, "a", KeyType.IPV4, 4, (DataType.SERVER_ID,), 1000)
    second = TableDefinition(2, "b", KeyType.STRING, 33, (DataType.SERVER_ID,), 1000)
    encoder = Encoder()
    encoder.encode(first)
    encoder.encode(second)
    run = UpdateRun(first, base=0, limit=10)
    run.add(1, 0xC6120001, 1)
    wire = encoder.run(1, run)
    assert wire.startswith(Encoder().encode(first))
    assert decode_all(wire) == [first, Update(1, 1, IPv4Address("198.18.0.1"), 1, 1000)]


def test_runs_need_an_expiry_and_only_a_server_id():
    for definition in (
        TableDefinition(1, "a", KeyType.STRING, 33, (DataType.SERVER_ID,)),  # 2.0: no expiry
        TableDefinition(1, "a", KeyType.STRING, 33, (DataType.GPC0,), 1000),
        TableDefinition(1, "a", KeyType.BINARY, 3, (DataType.SERVER_ID,), 1000),
    ):
        with pytest.raises(ValueError):
            UpdateRun(definition, base=0, limit=10)
