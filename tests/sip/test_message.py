"""Parsing and serialising SIP messages (RFC 3261 7, 20, 25): what carriers actually send."""

from __future__ import annotations

import pytest

from callmask.sip.message import (
    Headers,
    Request,
    Response,
    SipParseError,
    StreamFramer,
    make_bad_request_reply,
    make_cancel,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
)

SDP = (
    b"v=0\r\n"
    b"o=- 20518 0 IN IP4 203.0.113.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 203.0.113.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 54400 RTP/AVP 8 0 101\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)


def invite(
    *,
    body: bytes = SDP,
    content_length: int | None = None,
    extra: str = "",
    newline: str = "\r\n",
) -> bytes:
    length = len(body) if content_length is None else content_length
    lines = [
        "INVITE sip:+4930555000@198.51.100.7:5060;user=phone SIP/2.0",
        "Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK74bf9;rport",
        "Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK-proxy;received=192.0.2.99",
        "Max-Forwards: 69",
        'From: "Alice, the \\"caller\\"" <sip:+4915111111@203.0.113.1>;tag=9fxced76sl',
        "To: <sip:+4930555000@198.51.100.7>",
        "Call-ID: 3848276298220188511@203.0.113.1",
        "CSeq: 2 INVITE",
        "Contact: <sip:+4915111111@203.0.113.1:5060;transport=udp>",
        "Record-Route: <sip:edge1.carrier.example;lr>, <sip:edge2.carrier.example;lr>",
        "Allow: INVITE, ACK, CANCEL, BYE",
        "Content-Type: application/sdp",
        f"Content-Length: {length}",
    ]
    if extra:
        lines.insert(-1, extra)
    return (newline.join(lines) + newline + newline).encode() + body


def test_a_carrier_invite_with_sdp_parses_into_a_request() -> None:
    message = parse_message(invite())

    assert isinstance(message, Request)
    assert message.method == "INVITE"
    assert message.uri == "sip:+4930555000@198.51.100.7:5060;user=phone"
    assert message.call_id == "3848276298220188511@203.0.113.1"
    assert message.cseq == (2, "INVITE")
    assert message.via_branch == "z9hG4bK74bf9"
    assert message.from_tag == "9fxced76sl"
    assert message.to_tag is None
    assert message.body == SDP
    assert message.headers.get("max-forwards") == "69"
    assert message.headers.get("Content-Type") == "application/sdp"


def test_multi_value_headers_split_on_commas_outside_quotes_and_brackets() -> None:
    message = parse_message(invite())
    headers = message.headers

    assert headers.get_all("Via") == [
        "SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bK74bf9;rport",
        "SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK-proxy;received=192.0.2.99",
    ]
    assert headers.get_all("Record-Route") == [
        "<sip:edge1.carrier.example;lr>",
        "<sip:edge2.carrier.example;lr>",
    ]
    assert headers.get("Record-Route") == "<sip:edge1.carrier.example;lr>"
    assert headers.get_all("Allow") == ["INVITE", "ACK", "CANCEL", "BYE"]
    # The display name holds a comma inside quotes: From is never split anyway.
    assert headers.get_all("From") == [
        '"Alice, the \\"caller\\"" <sip:+4915111111@203.0.113.1>;tag=9fxced76sl'
    ]


def test_contacts_with_quoted_commas_split_into_one_value_per_contact() -> None:
    data = invite(extra='Contact: "Desk, 2nd floor" <sip:a@192.0.2.1>;q=0.5, <sip:b@192.0.2.2>')
    contacts = parse_message(data).headers.get_all("Contact")

    assert contacts == [
        "<sip:+4915111111@203.0.113.1:5060;transport=udp>",
        '"Desk, 2nd floor" <sip:a@192.0.2.1>;q=0.5',
        "<sip:b@192.0.2.2>",
    ]


def test_authorization_like_headers_are_never_split() -> None:
    value = 'Digest username="bob", realm="trunk", nonce="a,b", uri="sip:x@y", response="00"'
    headers = Headers([("WWW-Authenticate", value), ("Date", "Sat, 13 Nov 2010 23:29:00 GMT")])

    assert headers.get_all("www-authenticate") == [value]
    assert headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


def test_compact_header_forms_are_expanded() -> None:
    data = (
        b"BYE sip:bob@198.51.100.7 SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKc1\r\n"
        b"f: <sip:alice@203.0.113.1>;tag=1\r\n"
        b"t: <sip:bob@198.51.100.7>;tag=2\r\n"
        b"i: compact@203.0.113.1\r\n"
        b"CSeq: 3 BYE\r\n"
        b"m: <sip:alice@203.0.113.1>\r\n"
        b"k: timer\r\n"
        b"l: 0\r\n\r\n"
    )
    message = parse_message(data)

    assert message.call_id == "compact@203.0.113.1"
    assert message.headers.get("Via") == "SIP/2.0/UDP 203.0.113.1;branch=z9hG4bKc1"
    assert message.headers.get("Supported") == "timer"
    assert message.headers.get("m") == "<sip:alice@203.0.113.1>"
    assert [name for name, _ in message.headers.items()] == [
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Supported",
        "Content-Length",
    ]


def test_folded_header_lines_are_joined_with_one_space() -> None:
    data = invite(
        extra="Subject: I know you're there,\r\n   pick up the phone\r\n\tand talk to me!"
    )
    message = parse_message(data)

    assert message.headers.get("Subject") == (
        "I know you're there, pick up the phone and talk to me!"
    )
    assert message.body == SDP


def test_lf_only_line_ends_are_accepted() -> None:
    body = SDP.replace(b"\r\n", b"\n")
    message = parse_message(invite(body=body, newline="\n"))

    assert isinstance(message, Request)
    assert message.cseq == (2, "INVITE")
    assert message.body == body


def test_leading_crlfs_before_the_start_line_are_ignored() -> None:
    assert isinstance(parse_message(b"\r\n\r\n" + invite()), Request)


def test_a_body_longer_than_content_length_is_truncated() -> None:
    message = parse_message(invite(content_length=10))

    assert message.body == SDP[:10]


def test_a_body_shorter_than_content_length_is_an_error_that_can_still_be_answered() -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(invite(content_length=len(SDP) + 1))

    assert caught.value.is_request is True
    reply = make_bad_request_reply(caught.value)
    assert reply is not None
    parsed = parse_message(reply)
    assert isinstance(parsed, Response)
    assert parsed.status == 400
    assert parsed.call_id == "3848276298220188511@203.0.113.1"
    assert parsed.to_tag is not None
    assert len(parsed.headers.get_all("Via")) == 2


def test_missing_content_length_on_a_datagram_means_the_rest_of_it() -> None:
    data = invite().replace(f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    assert parse_message(data).body == SDP


def test_conflicting_content_lengths_are_rejected() -> None:
    with pytest.raises(SipParseError, match="Content-Length"):
        parse_message(invite(extra="Content-Length: 3"))


def test_an_oversize_message_is_rejected_with_513() -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(invite(body=b"x" * 2000), max_bytes=1500)

    assert caught.value.status == 513


@pytest.mark.parametrize("header", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_a_request_missing_a_mandatory_header_is_rejected(header: str) -> None:
    lines = [
        line
        for line in invite().split(b"\r\n")
        if not line.lower().startswith(header.lower().encode() + b":")
    ]
    with pytest.raises(SipParseError, match=f"Missing {header}"):
        parse_message(b"\r\n".join(lines))


def test_max_forwards_is_optional() -> None:
    data = invite().replace(b"Max-Forwards: 69\r\n", b"")
    assert parse_message(data).headers.get("Max-Forwards") is None


def test_a_cseq_method_differing_from_the_request_method_is_answered_with_400() -> None:
    data = invite().replace(b"CSeq: 2 INVITE", b"CSeq: 2 BYE")
    with pytest.raises(SipParseError, match="CSeq") as caught:
        parse_message(data)

    reply = make_bad_request_reply(caught.value)
    assert reply is not None and reply.startswith(b"SIP/2.0 400 ")
    assert b"CSeq: 2 BYE\r\n" in reply


@pytest.mark.parametrize("cseq", ["CSeq: two INVITE", "CSeq: 2", "CSeq: 4294967296 INVITE"])
def test_a_malformed_cseq_is_rejected_and_not_echoed_in_a_reply(cseq: str) -> None:
    data = invite().replace(b"CSeq: 2 INVITE", cseq.encode())
    with pytest.raises(SipParseError, match="CSeq") as caught:
        parse_message(data)

    assert caught.value.headers is not None
    assert make_bad_request_reply(caught.value) is None


def test_sip_versions_other_than_2_0_get_505() -> None:
    data = invite().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1)
    with pytest.raises(SipParseError) as caught:
        parse_message(data)

    assert caught.value.status == 505
    reply = make_bad_request_reply(caught.value)
    assert reply is not None and reply.startswith(b"SIP/2.0 505 ")


def test_an_unanswerable_request_yields_no_reply() -> None:
    with pytest.raises(SipParseError) as caught:
        parse_message(b"INVITE sip:x@y SIP/2.0\r\nCall-ID: 1\r\n\r\n")
    assert make_bad_request_reply(caught.value) is None


def test_a_broken_ack_is_never_answered() -> None:
    data = invite().replace(b"INVITE sip:", b"ACK sip:", 1)
    with pytest.raises(SipParseError) as caught:
        parse_message(data)  # CSeq says INVITE, method is ACK
    assert make_bad_request_reply(caught.value) is None


def test_garbage_header_line_keeps_the_other_headers_for_the_reply() -> None:
    data = invite(extra="this line has no colon")
    with pytest.raises(SipParseError, match="Malformed header") as caught:
        parse_message(data)

    assert caught.value.headers is not None
    assert caught.value.headers.get("Call-ID") == "3848276298220188511@203.0.113.1"
    assert make_bad_request_reply(caught.value) is not None


def test_responses_parse_with_and_without_reason_phrase() -> None:
    data = (
        b"SIP/2.0 180 Ringing\r\n"
        b"Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKb\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    ringing = parse_message(data)
    assert isinstance(ringing, Response)
    assert (ringing.status, ringing.reason, ringing.to_tag) == (180, "Ringing", "2")

    bare = parse_message(data.replace(b"180 Ringing", b"200"))
    assert isinstance(bare, Response)
    assert (bare.status, bare.reason) == (200, "")


def test_a_status_code_outside_100_699_is_rejected() -> None:
    with pytest.raises(SipParseError, match="Status-Line"):
        parse_message(b"SIP/2.0 700 Nope\r\nVia: x\r\n\r\n")


def test_round_trip_parse_serialize_parse_is_stable() -> None:
    first = parse_message(invite())
    wire = first.serialize()
    second = parse_message(wire)

    assert second == first
    assert second.serialize() == wire


def test_serialize_recomputes_content_length() -> None:
    message = parse_message(invite())
    message.body = b"v=0\r\n"
    wire = message.serialize()

    assert wire.count(b"Content-Length") == 1
    assert b"Content-Length: 5\r\n\r\nv=0\r\n" in wire


def test_headers_set_add_prepend_remove_keep_order() -> None:
    headers = Headers([("Via", "a"), ("To", "t"), ("Via", "b")])
    headers.prepend("Via", "new")
    assert headers.get_all("via") == ["new", "a", "b"]
    headers.set("v", "only")
    assert headers.items() == [("Via", "only"), ("To", "t")]
    headers.prepend("Route", "<sip:r;lr>")
    assert headers.items()[0] == ("Route", "<sip:r;lr>")
    headers.add("X-Custom", "1")
    headers.remove("x-custom")
    headers.remove("Route")
    assert headers.items() == [("Via", "only"), ("To", "t")]
    copy = headers.copy()
    copy.add("CSeq", "1 BYE")
    assert "CSeq" not in headers and "cseq" in copy


def test_headers_refuse_values_that_would_inject_lines() -> None:
    headers = Headers()
    with pytest.raises(ValueError):
        headers.add("From", "<sip:x@y>\r\nVia: SIP/2.0/UDP evil")
    with pytest.raises(ValueError):
        headers.set("Bad Name", "x")


def test_make_response_copies_the_transaction_headers_and_adds_the_to_tag() -> None:
    request = parse_message(invite())
    assert isinstance(request, Request)

    ringing = make_response(request, 180, to_tag="abc")
    assert ringing.reason == "Ringing"
    assert ringing.headers.get_all("Via") == request.headers.get_all("Via")
    assert ringing.headers.get("From") == request.headers.get("From")
    assert ringing.to_tag == "abc"
    assert ringing.cseq == (2, "INVITE")
    # 12.1.1: a dialog-creating response echoes Record-Route.
    assert ringing.headers.get_all("Record-Route") == request.headers.get_all("Record-Route")

    busy = make_response(request, 486, headers=[("Retry-After", "60")])
    assert busy.reason == "Busy Here"
    assert busy.to_tag is None
    assert "Record-Route" not in busy.headers
    assert busy.headers.get("Retry-After") == "60"
    assert isinstance(parse_message(busy.serialize()), Response)


def test_make_response_keeps_an_existing_to_tag() -> None:
    request = parse_message(
        invite().replace(b"To: <sip:+4930555000@198.51.100.7>", b"t: <sip:b@y>;tag=mine")
    )
    assert isinstance(request, Request)
    assert make_response(request, 200, to_tag="other").to_tag == "mine"


def test_make_cancel_follows_rfc3261_9_1() -> None:
    request = parse_message(invite())
    assert isinstance(request, Request)
    request.headers.add("Route", "<sip:edge1.carrier.example;lr>")
    cancel = make_cancel(request)

    assert cancel.method == "CANCEL"
    assert cancel.uri == request.uri
    assert cancel.headers.get_all("Via") == [request.headers.get("Via")]
    assert cancel.via_branch == request.via_branch
    assert cancel.cseq == (2, "CANCEL")
    assert cancel.headers.get("Route") == "<sip:edge1.carrier.example;lr>"
    assert isinstance(parse_message(cancel.serialize()), Request)


def test_stream_framer_cuts_messages_by_content_length_across_chunks() -> None:
    one = invite()
    two = invite(body=b"", content_length=0).replace(b"CSeq: 2", b"CSeq: 3")
    stream = b"\r\n\r\n" + one + two
    framer = StreamFramer()
    messages: list[bytes] = []
    for i in range(0, len(stream), 7):
        messages.extend(framer.feed(stream[i : i + 7]))

    assert messages == [one, two]
    assert parse_message(messages[1]).cseq == (3, "INVITE")


def test_stream_framer_rejects_messages_without_content_length() -> None:
    data = invite().replace(f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    with pytest.raises(SipParseError, match="Content-Length"):
        StreamFramer().feed(data)


def test_stream_framer_rejects_an_endless_header() -> None:
    framer = StreamFramer(max_bytes=1000)
    framer.feed(b"INVITE sip:x@y SIP/2.0\r\n")
    with pytest.raises(SipParseError) as caught:
        for _ in range(100):
            framer.feed(b"X-Filler: " + b"a" * 40 + b"\r\n")
    assert caught.value.status == 513


def test_generated_identifiers_are_unique_and_well_formed() -> None:
    branches = {new_branch() for _ in range(1000)}
    assert len(branches) == 1000
    assert all(b.startswith("z9hG4bK") for b in branches)
    assert new_tag() != new_tag()
    assert len(new_call_id()) == 32
