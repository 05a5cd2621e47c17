"""RFC 4475 "SIP Torture Test Messages", section 3.1 (parser tests), against callmask.

The corpus in tests/sip/torture/ holds the 13 valid messages of RFC 4475 3.1.1 and the 19
invalid ones of 3.1.2, byte for byte as the RFC gives them (CRLF line ends, the NUL and
UTF-8 octets of intmeth, the binary body of mpart01, trws's trailing spaces). Every valid
one must parse; every invalid one must raise SipParseError, except where our parser is
deliberately lenient and the RFC allows it (LENIENT below, each with the RFC's words and
our reason); nothing may raise anything else, whole or truncated. Then the corpus goes to
a running node over UDP: it answers 400/505 where the message can be answered, drops and
counts the rest, and goes on serving.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from callmask.sip.message import (
    Request,
    Response,
    SipParseError,
    StreamFramer,
    make_bad_request_reply,
    parse_message,
)
from tests.calls.conftest import Node
from tests.calls.test_sip_edges import RawCall, SipSocket, is_response
from tests.support.sipp import parse_sip_message

CORPUS = Path(__file__).resolve().parent.parent / "sip" / "torture"

# RFC 4475 3.1.1: "All elements should treat this as a well-formed request" (and the like).
VALID = (
    "wsinv",  # 3.1.1.1 A Short Tortuous INVITE
    "intmeth",  # 3.1.1.2 Wide Range of Valid Characters
    "esc01",  # 3.1.1.3 Valid Use of the % Escaping Mechanism
    "escnull",  # 3.1.1.4 Escaped Nulls in URIs
    "esc02",  # 3.1.1.5 Use of % When It Is Not an Escape
    "lwsdisp",  # 3.1.1.6 Message with No LWS between Display Name and <
    "longreq",  # 3.1.1.7 Long Values in Header Fields
    "dblreq",  # 3.1.1.8 Extra Trailing Octets in a UDP Datagram
    "semiuri",  # 3.1.1.9 Semicolon-Separated Parameters in URI User Part
    "transports",  # 3.1.1.10 Varied and Unknown Transport Types
    "mpart01",  # 3.1.1.11 Multipart MIME Message
    "unreason",  # 3.1.1.12 Unusual Reason Phrase
    "noreason",  # 3.1.1.13 Empty Reason Phrase
)

# RFC 4475 3.1.2, with the status a node answers when the message can be answered
# (None: a response, which is never answered, or nothing left to address a reply with).
INVALID: dict[str, int | None] = {
    "badinv01": None,  # 3.1.2.1 Extraneous Header Field Separators (LENIENT)
    "clerr": 400,  # 3.1.2.2 Content Length Larger Than Message
    "ncl": 400,  # 3.1.2.3 Negative Content-Length
    "scalar02": None,  # 3.1.2.4 Request Scalar Fields with Overlarge Values
    "scalarlg": None,  # 3.1.2.5 Response Scalar Fields with Overlarge Values
    "quotbal": None,  # 3.1.2.6 Unterminated Quoted String in Display Name
    "ltgtruri": 400,  # 3.1.2.7 <> Enclosing Request-URI
    "lwsruri": 400,  # 3.1.2.8 Malformed SIP Request-URI (embedded LWS)
    "lwsstart": 400,  # 3.1.2.9 Multiple SP Separating Request-Line Elements
    "trws": 400,  # 3.1.2.10 SP Characters at End of Request-Line
    "escruri": None,  # 3.1.2.11 Escaped Headers in SIP Request-URI (LENIENT)
    "baddate": None,  # 3.1.2.12 Invalid Time Zone in Date Header Field (LENIENT)
    "regbadct": None,  # 3.1.2.13 Failure to Enclose name-addr URI in <> (LENIENT)
    "badaspec": None,  # 3.1.2.14 Spaces within addr-spec (LENIENT)
    "baddn": 400,  # 3.1.2.15 Non-token Characters in Display Name (see LENIENT)
    "badvers": 505,  # 3.1.2.16 Unknown Protocol Version
    "mismatch01": 400,  # 3.1.2.17 Start Line and CSeq Method Mismatch
    "mismatch02": 400,  # 3.1.2.18 Unknown Method with CSeq Method Mismatch
    "bigcode": None,  # 3.1.2.19 Overlarge Response Code
}

# Invalid messages our parser accepts on purpose: the RFC's words, then why we may.
LENIENT: dict[str, str] = {
    "badinv01": (
        'RFC: "An element receiving this request should respond with a 400 Bad Request '
        'error." We do not: empty list elements and empty parameters (";;,;,,") are '
        "skipped, as RFC 3261 7.3.1 list headers often arrive with stray separators from "
        "real carriers; the first Via value is complete, callmask forwards no Via, and the "
        "answer goes back on the Via as received. A documented deviation from a SHOULD."
    ),
    "escruri": (
        'RFC: "It is acceptable for an element to reject this request with a 400 Bad '
        "Request. An element could choose to be liberal in what it accepts and ignore the "
        'escaped headers." callmask reads only the user part (the DID) of a Request-URI '
        "and never forwards it."
    ),
    "baddate": (
        'RFC: "It is acceptable to reject this request as malformed (though an element '
        "shouldn't do that unless the contents of the Date header field were actually "
        'important to its processing)." callmask never reads Date.'
    ),
    "regbadct": (
        'RFC: "It is reasonable for an element receiving this request to respond with a '
        "400 Bad Request. An element choosing to be liberal in what it accepts could infer "
        'the angle brackets since there is no ambiguity in this example." callmask does not '
        "register anyone: the REGISTER is answered 405 and its Contact never read."
    ),
    "badaspec": (
        'RFC: "It is reasonable to reject this request with a 400 Bad Request response. '
        'Elements attempting to be liberal may ignore the spaces." The parser does not '
        "interpret To; callmask only echoes it in responses."
    ),
    "baddn": (
        'RFC: "It is reasonable always to reject this kind of error with a 400 Bad Request '
        "response. An element may attempt to be liberal in what it receives and infer the "
        'missing quotes." The message as the RFC archives it has no empty line after its '
        "last header, so it is rejected (400) for that; with the empty line it parses, "
        "display names being neither interpreted nor forwarded by callmask."
    ),
}

# Invalid requests we reject but cannot answer: 400 needs a Via, From, To, Call-ID and a
# CSeq that a reply can carry (RFC 3261 8.2.6.2) and that the sender can match.
UNANSWERED_REJECTS: dict[str, str] = {
    "scalar02": (
        'RFC: "An element receiving this request should respond with a 400 Bad Request due '
        'to the CSeq error." The CSeq number is over 2**31 (RFC 3261 8.1.1.5), so a reply '
        "could not carry a valid CSeq: dropped and counted instead."
    ),
    "quotbal": (
        'RFC: "An element receiving this request should return a 400 Bad Request error." '
        "A To value with an unterminated quote cannot be given the tag a reply needs "
        "(the tag would land inside the quoted string): dropped and counted instead."
    ),
}


def corpus(name: str) -> bytes:
    return (CORPUS / f"{name}.dat").read_bytes()


def test_the_corpus_is_the_rfc_4475_section_3_1_set() -> None:
    names = sorted(path.stem for path in CORPUS.glob("*.dat"))
    assert names == sorted([*VALID, *INVALID]), "a torture message is missing or extra"
    assert set(LENIENT) | set(UNANSWERED_REJECTS) <= set(INVALID)


@pytest.mark.parametrize("name", VALID)
def test_a_peer_sending_a_valid_torture_message_has_it_parsed(name: str) -> None:
    message = parse_message(corpus(name))
    assert message.call_id
    if isinstance(message, Request):
        assert message.cseq[1] == message.method


def test_the_short_tortuous_invite_is_read_as_the_rfc_means_it() -> None:
    message = parse_message(corpus("wsinv"))
    assert isinstance(message, Request)
    assert message.method == "INVITE"
    assert message.uri == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert message.cseq == (9, "INVITE")  # "cseq: 0009\r\n  INVITE": folded, leading zeros
    assert message.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert message.headers.get("Max-Forwards") == "0068"
    # Three Via values: one folded line, then two comma-separated on a compact "v:" line.
    vias = message.headers.get_all("Via")
    assert len(vias) == 3 and vias[0].endswith("192.0.2.2;branch=390skdjuw")
    assert message.via_branch == "390skdjuw"
    # LWS around "=" (RFC 3261 25.1 EQUAL = SWS "=" SWS) still yields the tags.
    assert message.from_tag == "98asjd8"
    assert message.to_tag == "1918181833n"
    assert message.headers.get("Subject") == ""
    assert message.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert message.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert message.headers.get_all("Contact")[0].startswith('"Quoted string \\"\\""')
    assert len(message.body) == 150 and message.body.startswith(b"v=0\r\n")


def test_the_unusual_valid_messages_keep_their_odd_parts() -> None:
    intmeth = parse_message(corpus("intmeth"))
    assert isinstance(intmeth, Request)
    assert intmeth.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert intmeth.via_branch == "z9hG4bK-.!%66*_+`'~"
    assert intmeth.from_tag == "_token~1'+`*%!-."
    esc02 = parse_message(corpus("esc02"))
    assert isinstance(esc02, Request) and esc02.method == "RE%47IST%45R"
    # "C%6Fntact" is an unknown header, not a third Contact.
    assert len(esc02.headers.get_all("Contact")) == 2
    assert esc02.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    # 3.1.1.8: a datagram with a second message after the first one's Content-Length: the
    # extra octets are not part of the REGISTER.
    dblreq = parse_message(corpus("dblreq"))
    assert isinstance(dblreq, Request) and dblreq.method == "REGISTER" and dblreq.body == b""
    longreq = parse_message(corpus("longreq"))
    assert isinstance(longreq, Request)
    assert len(longreq.headers.get_all("Via")) == 34
    assert len(longreq.from_tag or "") > 100
    semiuri = parse_message(corpus("semiuri"))
    assert isinstance(semiuri, Request) and semiuri.uri.startswith("sip:user;par=u%40example.net@")
    mpart01 = parse_message(corpus("mpart01"))
    assert isinstance(mpart01, Request) and len(mpart01.body) == 553
    unreason = parse_message(corpus("unreason"))
    assert isinstance(unreason, Response) and unreason.status == 200
    assert unreason.reason.startswith("= 2**3 * 5**2 ")
    noreason = parse_message(corpus("noreason"))
    assert isinstance(noreason, Response) and (noreason.status, noreason.reason) == (100, "")


@pytest.mark.parametrize("name", list(INVALID))
def test_a_peer_sending_an_invalid_torture_message_is_refused_or_knowingly_tolerated(
    name: str,
) -> None:
    data = corpus(name)
    if name in LENIENT and name != "baddn":
        message = parse_message(data)
        assert message.call_id, LENIENT[name]
        return
    with pytest.raises(SipParseError) as caught:
        parse_message(data)
    reply = make_bad_request_reply(caught.value)
    expected = INVALID[name]
    if expected is None:
        assert reply is None, UNANSWERED_REJECTS.get(name, "responses are never answered")
        return
    assert reply is not None
    answer = parse_message(reply)
    assert isinstance(answer, Response) and answer.status == expected
    sent = parse_sip_message(data, "sent")
    assert answer.call_id == sent.call_id and answer.to_tag


def test_the_display_names_without_quotes_are_tolerated_once_the_message_is_complete() -> None:
    message = parse_message(corpus("baddn") + b"\r\n")
    assert isinstance(message, Request) and message.method == "OPTIONS", LENIENT["baddn"]


def test_a_stream_peer_with_a_bad_content_length_is_waited_for_or_cut_off() -> None:
    # 3.1.2.2 over TCP: "there's not much the receiving party could do but wait for more
    # data on the stream"; 3.1.2.3: "the framing error is not recoverable, and the
    # connection should be closed" (the framer raises; the endpoint closes).
    assert StreamFramer().feed(corpus("clerr")) == []
    with pytest.raises(SipParseError):
        StreamFramer().feed(corpus("ncl"))


@pytest.mark.parametrize("name", [*VALID, *INVALID])
def test_every_truncation_of_a_torture_message_raises_only_our_parse_error(name: str) -> None:
    data = corpus(name)
    for end in range(len(data)):
        try:
            parse_message(data[:end])
        except SipParseError as error:
            make_bad_request_reply(error)  # must not raise either


# --------------------------------------------------------------------------- on the wire

REJECTED = [name for name in INVALID if name not in LENIENT or name == "baddn"]


@pytest.mark.interop
async def test_a_node_sent_the_whole_corpus_answers_or_drops_each_and_keeps_serving(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    counters = node.engine.endpoint.counters
    parse_errors_before = counters.parse_errors
    caplog.set_level(logging.WARNING, logger="callmask")
    async with SipSocket() as peer:
        for name in [*VALID, *INVALID]:
            peer.send(corpus(name), node.sip_port)
        replies = await peer.quiet(1.0)
        # Answers to requests that parsed go where their Via says (RFC 3261 18.2.2), not
        # here; what comes back to this socket is the 400/505 for each rejected request,
        # and the 405 for mpart01's MESSAGE, whose Via asks for rport (RFC 3581).
        answered = {m.call_id: m.status for m in replies}
        wanted = {
            parse_sip_message(corpus(name), "sent").call_id: status
            for name, status in [*INVALID.items(), ("mpart01", 405)]
            if status is not None
        }
        assert answered == wanted, [m.first_line for m in replies]
        assert counters.parse_errors - parse_errors_before == len(REJECTED)
        # Still serving: the calls the parsed INVITEs started have ended (none of their
        # numbers is ours), and a plain OPTIONS is answered.
        for _ in range(200):  # at most 10 s
            if not node.engine.by_public_id:
                break
            await asyncio.sleep(0.05)
        assert not node.engine.by_public_id, "a call the corpus started never ended"
        ping = RawCall(node.sip_port, peer.port)
        peer.send(ping.request("OPTIONS", 1), node.sip_port)
        await peer.wait_for(is_response(200, "OPTIONS", ping.call_id), 5)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
