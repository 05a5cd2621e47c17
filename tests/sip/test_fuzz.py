"""Hypothesis: hostile bytes never get anything but SipParseError out of the parsers.

Random bytes, truncations and mutations of real messages go through ``parse_message``; random and
mutated text through the URI, name-addr, Via and Digest parsers. Whatever does parse must
serialise and parse back to the same message.
"""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callmask.sip.auth import Challenge
from callmask.sip.message import (
    Request,
    Response,
    SipParseError,
    make_bad_request_reply,
    parse_message,
)
from callmask.sip.uri import NameAddr, SipUri, Via

FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SAMPLES = [
    (
        b"INVITE sip:+4930555000@198.51.100.7:5060;user=phone SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK74bf9;rport\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::4]:5060;branch=z9hG4bK-p, SIP/2.0/TCP h;branch=z9hG4bKq\r\n"
        b"Max-Forwards: 69\r\n"
        b'From: "Alice, \\"A\\"" <sip:+4915111111@203.0.113.1>;tag=9fxced76sl\r\n'
        b"To: <sip:+4930555000@198.51.100.7>\r\n"
        b"Call-ID: 3848276298220188511@203.0.113.1\r\n"
        b"CSeq: 2 INVITE\r\n"
        b"Contact: <sip:+4915111111@203.0.113.1:5060>\r\n"
        b"Subject: folded\r\n  line\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: 28\r\n\r\n"
        b"v=0\r\nc=IN IP4 203.0.113.1\r\n"
    ),
    (
        b"SIP/2.0 200 OK\r\n"
        b"v: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKb;received=192.0.2.1;rport=5070\r\n"
        b"f: <sip:a@x>;tag=1\nt: <sip:b@y>;tag=2\ni: c\nCSeq: 1 INVITE\n"
        b"m: <sip:b@192.0.2.2>\nl: 0\n\n"
    ),
    (
        b"BYE sip:bob@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKz\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 9 BYE\r\n"
        b"Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>\r\n\r\n"
    ),
]


def check_message(data: bytes) -> None:
    try:
        message = parse_message(data, max_bytes=4096)
    except SipParseError as exc:
        # Whatever broke, building the 400 must not break too.
        reply = make_bad_request_reply(exc)
        if reply is not None:
            assert isinstance(parse_message(reply), Response)
        return
    assert isinstance(message, Request | Response)
    again = parse_message(message.serialize(), max_bytes=1 << 20)
    assert type(again) is type(message)
    assert again.body == message.body
    strip = [(n, v) for n, v in message.headers.items() if n != "Content-Length"]
    assert [(n, v) for n, v in again.headers.items() if n != "Content-Length"] == strip
    # The conveniences must be total on anything that parsed.
    _ = (message.call_id, message.cseq, message.via_branch, message.from_tag, message.to_tag)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_sip_parse_error(data: bytes) -> None:
    check_message(data)


@FUZZ
@given(st.sampled_from(SAMPLES), st.data())
def test_truncated_real_messages_raise_only_sip_parse_error(
    sample: bytes, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(sample)))
    check_message(sample[:cut])


@FUZZ
@given(
    st.sampled_from(SAMPLES),
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=1),
            st.binary(min_size=0, max_size=8),
            st.integers(0, 8),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_real_messages_raise_only_sip_parse_error(
    sample: bytes, edits: list[tuple[float, bytes, int]]
) -> None:
    data = bytearray(sample)
    for where, insert, delete in edits:
        at = int(where * len(data))
        data[at : at + delete] = insert
    check_message(bytes(data))


INTERESTING = st.sampled_from([*':;@<>"\\,=?&[]/ \t.%+*#', "sip:", "tel:", "SIP/2.0/UDP "])
TEXT = st.lists(st.one_of(INTERESTING, st.text(max_size=6)), max_size=24).map("".join)

URI_SAMPLES = [
    "sip:+4930555000:pw@[2001:db8::1]:5080;user=phone;lr?Subject=x&h=y",
    "tel:+1-201-555-0123;phone-context=example.com",
    '"A, \\"B\\"" <sip:a@b.example;transport=tcp>;tag=1;+sip.instance="<urn:x>"',
    "SIP / 2.0 / UDP [2001:db8::9]:5062;branch=z9hG4bKx;rport=1;received=192.0.2.1",
    'Digest realm="r", nonce="n,1", qop="auth,auth-int", algorithm=SHA-256, opaque="o", stale=TRUE',
]


def check_text(text: str) -> None:
    for kind in (SipUri, NameAddr, Via):
        try:
            value = kind.parse(text)
        except SipParseError:
            continue
        # What parsed renders to text that parses back to the same value.
        assert kind.parse(str(value)) == value
    with contextlib.suppress(SipParseError):
        Challenge.parse(text)


@FUZZ
@given(TEXT)
def test_random_text_into_uri_name_addr_via_and_challenge_parsers(text: str) -> None:
    check_text(text)


@FUZZ
@given(st.sampled_from(URI_SAMPLES), st.integers(0, 200), TEXT, st.integers(0, 4))
def test_mutated_header_values_raise_only_sip_parse_error(
    sample: str, where: int, insert: str, delete: int
) -> None:
    at = where % (len(sample) + 1)
    check_text(sample[:at] + insert + sample[at + delete :])
