"""The proxy's sans-io HTTP pieces: response heads, chunked decoding, error pages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.proxy.http import (
    ERROR_PAGES,
    ChunkedDecoder,
    InvalidResponse,
    ResponseHeadCache,
    chunk,
    parse_response_head,
)

pytestmark = pytest.mark.unit


def test_plain_response_head():
    head = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b")
    assert (head.status, head.reason, head.version) == (200, b"OK", b"1.1")
    assert head.content_length == 5
    assert not head.chunked
    assert head.keep_alive
    assert head.fields == b"\r\nContent-Length: 5\r\nX-A: b"


def test_hop_by_hop_headers_are_not_kept():
    head = parse_response_head(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Private\r\nKeep-Alive: timeout=5\r\n"
        b"Transfer-Encoding: chunked\r\nTrailer: X\r\nX-Kept: 1"
    )
    assert head.fields == b"\r\nX-Kept: 1"
    assert head.chunked
    assert head.content_length == -1


def test_connection_close_and_http10_defaults():
    assert not parse_response_head(b"HTTP/1.1 200 OK\r\nConnection: close").keep_alive
    assert not parse_response_head(b"HTTP/1.0 200 OK").keep_alive
    assert parse_response_head(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive").keep_alive


def test_chunked_wins_over_content_length():
    head = parse_response_head(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: gzip, chunked"
    )
    assert head.chunked and head.content_length == -1


def test_status_without_reason():
    head = parse_response_head(b"HTTP/1.1 204")
    assert head.status == 204 and head.reason == b""


@pytest.mark.parametrize(
    "block",
    [
        b"HTTX/1.1 200 OK",
        b"HTTP/2.0 200 OK",
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 abc OK",
        b"HTTP/1.1 200 OK\r\nBad Header: x",
        b"HTTP/1.1 200 OK\r\nNoColon",
        b"HTTP/1.1 200 OK\r\n: empty-name",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2",
        b"HTTP/1.1 200 OK\r\nX: a\x00b",
    ],
)
def test_invalid_response_heads(block):
    with pytest.raises(InvalidResponse):
        parse_response_head(block)


def test_repeated_equal_content_length_is_accepted():
    head = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3")
    assert head.content_length == 3


def decode_all(data: bytes, split: int | None = None) -> tuple[bytes, int, bool]:
    decoder = ChunkedDecoder()
    out: list[bytes] = []
    if split is None:
        used = decoder.feed(data, out)
    else:
        used = decoder.feed(data[:split], out)
        if not decoder.done:
            used = split + decoder.feed(data[split:], out)
    return b"".join(out), used, decoder.done


def test_chunked_decoding_with_extensions_and_trailers():
    body = b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: v\r\n\r\n"
    payload, used, done = decode_all(body)
    assert (payload, used, done) == (b"abcde", len(body), True)


def test_chunked_decoding_stops_at_the_end_of_the_body():
    payload, used, done = decode_all(b"1\r\na\r\n0\r\n\r\nHTTP/1.1 200 next")
    assert payload == b"a" and done and used == len(b"1\r\na\r\n0\r\n\r\n")


@pytest.mark.parametrize("bad", [b"zz\r\n", b"-1\r\n", b"\r\n", b"1\r\nab\r\n", b"+1\r\na\r\n"])
def test_bad_chunks_are_rejected(bad):
    with pytest.raises(InvalidResponse):
        decode_all(bad + b"0\r\n\r\n")


def test_overlong_chunk_size_line_is_rejected():
    with pytest.raises(InvalidResponse):
        decode_all(b"1" * 10000)


@given(
    pieces=st.lists(st.binary(min_size=1, max_size=300), max_size=20),
    split=st.integers(min_value=0, max_value=10_000),
)
def test_chunk_encoding_round_trips_whatever_the_split(pieces, split):
    wire = b"".join(chunk(p) for p in pieces) + b"0\r\n\r\n"
    split = min(split, len(wire))
    payload, used, done = decode_all(wire, split)
    assert payload == b"".join(pieces)
    assert done and used == len(wire)


def test_error_pages_are_complete_http_messages():
    for status, page in ERROR_PAGES.items():
        head, _, body = page.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status)
        assert b"Connection: close" in head
        assert b"Content-Length: %d" % len(body) in head
        assert str(status).encode() in body


def test_response_head_cache_shares_identical_heads_and_refuses_invalid_ones():
    cache = ResponseHeadCache(size=2)
    block = b"HTTP/1.1 200 OK\r\nContent-Length: 5"
    first = cache.parse(block)
    assert cache.parse(bytes(block)) is first  # equal bytes, one parse
    with pytest.raises(InvalidResponse):
        cache.parse(b"HTTX/1.1 200 OK")
    with pytest.raises(InvalidResponse):  # not remembered as valid either
        cache.parse(b"HTTX/1.1 200 OK")
    cache.parse(b"HTTP/1.1 204 No Content")
    cache.parse(b"HTTP/1.1 304 Not Modified")  # full: emptied, then kept
    assert cache.parse(block) is not first
    assert cache.parse(block).content_length == 5
