"""Dialogs (RFC 3261 12): route sets, in-dialog requests, CSeq order, target refresh."""

from __future__ import annotations

import pytest

from callmask.sip.dialog import Dialog, dialog_id_of_request, dialog_id_of_response
from callmask.sip.message import (
    Headers,
    Request,
    Response,
    SipParseError,
    make_response,
    parse_message,
)
from callmask.sip.uri import SipUri

VIA = "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKnew"
OUR_CONTACT = "<sip:callmask@198.51.100.7:5060>"


def outbound_invite() -> Request:
    """What callmask sends to the trunk for the B leg."""
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKinv"),
            ("Max-Forwards", "70"),
            ("From", "<sip:+4930555000@198.51.100.7>;tag=ours"),
            ("To", "<sip:+4915222222@trunk.example.net>"),
            ("Call-ID", "b-leg-1"),
            ("CSeq", "1 INVITE"),
            ("Contact", OUR_CONTACT),
        ]
    )
    return Request("INVITE", "sip:+4915222222@trunk.example.net", headers)


def trunk_ok(invite: Request, *record_route: str) -> Response:
    ok = make_response(
        invite,
        200,
        to_tag="theirs",
        headers=[("Contact", "<sip:b@203.0.113.50:5090;transport=udp>")],
    )
    for value in record_route:
        ok.headers.add("Record-Route", value)
    return ok


def test_a_uac_dialog_reverses_record_route_and_routes_the_bye_through_it() -> None:
    invite = outbound_invite()
    ok = trunk_ok(invite, "<sip:edge2.trunk.example.net;lr>, <sip:edge1.trunk.example.net;lr>")
    dialog = Dialog.as_uac(invite, ok, OUR_CONTACT)

    assert dialog.id == ("b-leg-1", "ours", "theirs")
    assert dialog.route_set == [
        "<sip:edge1.trunk.example.net;lr>",
        "<sip:edge2.trunk.example.net;lr>",
    ]
    assert str(dialog.remote_target) == "sip:b@203.0.113.50:5090;transport=udp"

    bye = dialog.create_request("BYE", via=VIA)

    assert bye.uri == "sip:b@203.0.113.50:5090;transport=udp"
    assert bye.headers.get_all("Route") == dialog.route_set
    assert bye.from_tag == "ours" and bye.to_tag == "theirs"
    assert bye.headers.get("From") == "<sip:+4930555000@198.51.100.7>;tag=ours"
    assert bye.headers.get("To") == "<sip:+4915222222@trunk.example.net>;tag=theirs"
    assert bye.call_id == "b-leg-1"
    assert bye.cseq == (2, "BYE")
    assert bye.headers.get("Max-Forwards") == "70"
    assert bye.headers.get("Via") == VIA
    assert "Contact" not in bye.headers
    assert dialog.next_hop() == SipUri.parse("sip:edge1.trunk.example.net;lr")
    assert isinstance(parse_message(bye.serialize()), Request)


def test_the_ack_for_the_2xx_reuses_the_invite_cseq_and_later_requests_count_on() -> None:
    invite = outbound_invite()
    dialog = Dialog.as_uac(invite, trunk_ok(invite), OUR_CONTACT)

    ack = dialog.create_request("ACK", via=VIA)
    reinvite = dialog.create_request("INVITE", via=VIA, body=b"v=0\r\n")
    bye = dialog.create_request("BYE", via=VIA)

    assert ack.cseq == (1, "ACK")
    assert ack.uri == "sip:b@203.0.113.50:5090;transport=udp"
    assert reinvite.cseq == (2, "INVITE")
    assert reinvite.headers.get("Contact") == OUR_CONTACT
    assert reinvite.body == b"v=0\r\n"
    assert bye.cseq == (3, "BYE")
    assert dialog.next_hop() == dialog.remote_target


def test_an_explicit_cseq_never_lets_the_counter_go_back() -> None:
    invite = outbound_invite()
    dialog = Dialog.as_uac(invite, trunk_ok(invite), OUR_CONTACT)
    assert dialog.create_request("INVITE", via=VIA, cseq=10).cseq == (10, "INVITE")
    assert dialog.create_request("ACK", via=VIA, cseq=10).cseq == (10, "ACK")
    assert dialog.create_request("BYE", via=VIA).cseq == (11, "BYE")


def test_strict_routing_puts_the_first_route_in_the_request_uri() -> None:
    invite = outbound_invite()
    ok = trunk_ok(
        invite, "<sip:old-proxy.example.net;lr>", "<sip:strict.example.net;maddr=10.0.0.1>"
    )
    dialog = Dialog.as_uac(invite, ok, OUR_CONTACT)
    assert dialog.route_set[0] == "<sip:strict.example.net;maddr=10.0.0.1>"

    bye = dialog.create_request("BYE", via=VIA)

    assert bye.uri == "sip:strict.example.net;maddr=10.0.0.1"
    assert bye.headers.get_all("Route") == [
        "<sip:old-proxy.example.net;lr>",
        "<sip:b@203.0.113.50:5090;transport=udp>",
    ]
    assert dialog.next_hop() == SipUri.parse("sip:strict.example.net;maddr=10.0.0.1")


def test_a_provisional_without_to_tag_creates_no_dialog() -> None:
    invite = outbound_invite()
    with pytest.raises(SipParseError):
        Dialog.as_uac(invite, make_response(invite, 180), OUR_CONTACT)


def carrier_invite() -> Request:
    """What the carrier sends for an inbound call (the A leg)."""
    data = (
        b"INVITE sip:+4930555000@198.51.100.7 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKa\r\n"
        b"Record-Route: <sip:sbc1.carrier.example;lr>\r\n"
        b"Record-Route: <sip:sbc2.carrier.example;lr>\r\n"
        b'From: "Caller" <sip:+4915111111@carrier.example>;tag=caller\r\n'
        b"To: <sip:+4930555000@198.51.100.7>\r\n"
        b"Call-ID: a-leg-1\r\n"
        b"CSeq: 101 INVITE\r\n"
        b"Contact: <sip:+4915111111@203.0.113.1:5060>\r\n\r\n"
    )
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def test_a_uas_dialog_keeps_record_route_order_and_starts_its_own_cseq() -> None:
    invite = carrier_invite()
    dialog = Dialog.as_uas(invite, "ourtag", OUR_CONTACT)

    assert dialog.id == ("a-leg-1", "ourtag", "caller")
    assert dialog_id_of_request(invite) == ("a-leg-1", "", "caller")
    assert dialog.route_set == ["<sip:sbc1.carrier.example;lr>", "<sip:sbc2.carrier.example;lr>"]
    assert dialog.remote_seq == 101

    bye = dialog.create_request("BYE", via=VIA)

    assert bye.uri == "sip:+4915111111@203.0.113.1:5060"
    assert bye.headers.get_all("Route") == dialog.route_set
    assert bye.headers.get("From") == "<sip:+4930555000@198.51.100.7>;tag=ourtag"
    assert bye.headers.get("To") == '"Caller" <sip:+4915111111@carrier.example>;tag=caller'
    assert bye.cseq == (1, "BYE")


def test_requests_from_the_peer_must_not_go_back_in_cseq() -> None:
    invite = carrier_invite()
    dialog = Dialog.as_uas(invite, "ourtag", OUR_CONTACT)

    def peer_request(method: str, cseq: int) -> Request:
        request = Request(method, "sip:callmask@198.51.100.7", invite.headers.copy())
        request.headers.set("CSeq", f"{cseq} {method}")
        return request

    assert dialog.receive_request(peer_request("ACK", 101))  # same number as the INVITE
    assert dialog.receive_request(peer_request("INVITE", 102))
    assert not dialog.receive_request(peer_request("UPDATE", 100))  # out of order: 500
    assert dialog.remote_seq == 102
    assert dialog.receive_request(peer_request("BYE", 103))
    assert dialog.remote_seq == 103


def test_a_reinvite_and_its_2xx_refresh_the_remote_target_but_a_bye_does_not() -> None:
    invite = carrier_invite()
    dialog = Dialog.as_uas(invite, "ourtag", OUR_CONTACT)

    reinvite = Request("INVITE", "sip:callmask@198.51.100.7", invite.headers.copy())
    reinvite.headers.set("Contact", "<sip:+4915111111@203.0.113.9:5070>")
    dialog.update_target(reinvite)
    assert str(dialog.remote_target) == "sip:+4915111111@203.0.113.9:5070"

    bye = Request("BYE", "sip:callmask@198.51.100.7", invite.headers.copy())
    bye.headers.set("CSeq", "103 BYE")
    bye.headers.set("Contact", "<sip:elsewhere@192.0.2.1>")
    dialog.update_target(bye)
    assert str(dialog.remote_target) == "sip:+4915111111@203.0.113.9:5070"

    outbound = outbound_invite()
    uac = Dialog.as_uac(outbound, trunk_ok(outbound), OUR_CONTACT)
    refresh = uac.create_request("INVITE", via=VIA)
    ok = make_response(refresh, 200, headers=[("Contact", "<sip:b@203.0.113.77>")])
    assert dialog_id_of_response(ok) == uac.id
    uac.update_target(ok)
    assert str(uac.remote_target) == "sip:b@203.0.113.77"
    uac.update_target(make_response(refresh, 488, headers=[("Contact", "<sip:x@192.0.2.9>")]))
    assert str(uac.remote_target) == "sip:b@203.0.113.77"


def test_a_uas_dialog_needs_the_callers_contact() -> None:
    invite = carrier_invite()
    invite.headers.remove("Contact")
    with pytest.raises(SipParseError, match="Contact"):
        Dialog.as_uas(invite, "ourtag", OUR_CONTACT)
