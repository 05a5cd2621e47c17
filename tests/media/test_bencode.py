"""Bencode as rtpengine speaks it: BEP 3 on the way out, unsorted keys on the way in."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callmask.media.bencode import MAX_DEPTH, BencodeError, BencodeValue, decode, encode

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# Text as str, and bytes only when they are not UTF-8: exactly what decode() hands back.
leaves = st.one_of(
    INT64,
    st.text(),
    st.binary(min_size=1).filter(_not_utf8),
)
values: st.SearchStrategy[BencodeValue] = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=10), children, max_size=5),
    ),
    max_leaves=30,
)


def test_an_ng_ping_encodes_as_in_the_protocol_document() -> None:
    assert encode({"command": "ping"}) == b"d7:command4:pinge"


def test_dictionary_keys_are_written_in_byte_order() -> None:
    encoded = encode({"sdp": "v=0", "call-id": "c", "from-tag": "f", "command": "offer"})
    assert encoded == b"d7:call-id1:c7:command5:offer8:from-tag1:f3:sdp3:v=0e"


def test_non_ascii_keys_sort_by_their_utf8_bytes() -> None:
    encoded = encode({"\u00e9": 3, "z": 4, "b": 1, "a": 2})
    assert encoded == b"d1:ai2e1:bi1e1:zi4e2:\xc3\xa9i3ee"


def test_a_reply_with_unsorted_keys_decodes() -> None:
    reply = b"d6:result5:error12:error-reason21:No call-id in messagee"
    assert decode(reply) == {"result": "error", "error-reason": "No call-id in message"}


def test_an_rtpengine_delete_warning_reply_decodes() -> None:
    reply = b"d7:warning38:Call-ID not found or tags didn't match6:result2:oke"
    assert decode(reply) == {"warning": "Call-ID not found or tags didn't match", "result": "ok"}


def test_text_decodes_to_str_and_non_utf8_to_bytes() -> None:
    assert decode(b"l3:abc2:\xff\xfe5:\xc3\xa9t\xc3\xa9e") == ["abc", b"\xff\xfe", "\u00e9t\u00e9"]


def test_nested_query_shape_round_trips() -> None:
    reply = {
        "result": "ok",
        "tags": {"a": {"medias": [{"streams": [{"stats": {"packets": 5, "bytes": 860}}]}]}},
        "totals": {"RTP": {"packets": 5}},
        "created": 1_700_000_000,
    }
    assert decode(encode(reply)) == reply


@pytest.mark.parametrize(
    "value",
    [True, False, 1.5, None, {1: "x"}, {b"k": "x"}, object(), 2**63, -(2**63) - 1, "\ud800"],
)
def test_values_without_a_bencode_form_are_refused(value: object) -> None:
    with pytest.raises(BencodeError):
        encode(value)


def test_a_bool_nested_in_flags_is_refused() -> None:
    with pytest.raises(BencodeError):
        encode({"command": "offer", "flags": ["trust address", True]})


def test_tuples_encode_as_lists() -> None:
    assert encode(("a", 1)) == encode(["a", 1]) == b"l1:ai1ee"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"i1ex",  # trailing garbage
        b"d6:result2:okee",  # trailing garbage after a dictionary
        b"5:ab",  # length beyond the data
        b"03:abc",  # leading zero in a length
        b"i03e",  # leading zero in an integer
        b"i-0e",
        b"ie",
        b"i-e",
        b"i1.5e",
        b"i12",
        b"i99999999999999999999e",  # beyond 64 bits
        b"l",  # unterminated list
        b"d1:a",  # dictionary ends after a key
        b"di1ei2ee",  # integer key
        b"d2:\xff\xfei1ee",  # key that is not UTF-8
        b"d1:ai1e1:ai2ee",  # duplicate key
        b"x",
        b":",
        b"-1:a",
        b"99999999999:a",
    ],
)
def test_malformed_input_raises_bencode_error(data: bytes) -> None:
    with pytest.raises(BencodeError):
        decode(data)


def test_nesting_up_to_the_limit_decodes_and_beyond_it_fails() -> None:
    assert decode(b"l" * MAX_DEPTH + b"i1e" + b"e" * MAX_DEPTH) is not None
    deeper = b"l" * (MAX_DEPTH + 1) + b"i1e" + b"e" * (MAX_DEPTH + 1)
    with pytest.raises(BencodeError):
        decode(deeper)
    very_deep = b"l" * 100_000
    with pytest.raises(BencodeError):
        decode(very_deep, max_size=200_000)


def test_input_above_the_size_limit_fails_before_parsing() -> None:
    data = encode("x" * 70_000)
    with pytest.raises(BencodeError, match="exceeds"):
        decode(data)
    assert decode(data, max_size=80_000) == "x" * 70_000


@given(values)
def test_decode_inverts_encode(value: BencodeValue) -> None:
    assert decode(encode(value)) == value


@given(values)
def test_encoding_is_canonical(value: BencodeValue) -> None:
    encoded = encode(value)
    assert encode(decode(encoded)) == encoded


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_bencode_error(data: bytes) -> None:
    with contextlib.suppress(BencodeError):
        decode(data)


@settings(max_examples=300)
@given(values, st.data())
def test_truncated_or_corrupted_encodings_raise_only_bencode_error(
    value: BencodeValue, data: st.DataObject
) -> None:
    encoded = encode(value)
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded)))
    position = data.draw(st.integers(min_value=0, max_value=max(len(encoded) - 1, 0)))
    replacement = data.draw(st.integers(min_value=0, max_value=255))
    corrupted = bytearray(encoded)
    if corrupted:
        corrupted[position] = replacement
    for candidate in (encoded[:cut], bytes(corrupted)):
        with contextlib.suppress(BencodeError):
            decode(candidate)
