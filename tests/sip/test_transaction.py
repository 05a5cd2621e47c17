"""SIP transactions with a fake clock (RFC 3261 17, RFC 6026): two layers wired back to back.

``carry`` moves what one TransactionLayer wants to send into the other's ``receive`` (through the
real serialiser and parser); ``advance`` fires a layer's timers up to a time. Nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from callmask.sip.message import (
    Headers,
    Request,
    Response,
    make_cancel,
    make_response,
    new_branch,
    parse_message,
)
from callmask.sip.transaction import (
    AckReceived,
    AckTimedOut,
    Address,
    Event,
    InviteClientState,
    InviteServerState,
    NonInviteServerState,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    Timers,
    TransactionLayer,
    TransactionTimedOut,
)

UAC: Address = ("127.0.0.1", 5070)
UAS: Address = ("127.0.0.1", 5060)


def make_request(
    method: str = "INVITE",
    *,
    branch: str | None = None,
    cseq: int = 1,
    call_id: str = "call-1",
    transport: str = "UDP",
) -> Request:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/{transport} 127.0.0.1:5070;branch={branch or new_branch()};rport"),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@127.0.0.1>;tag=alice"),
            ("To", "<sip:bob@127.0.0.1>"),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", "<sip:alice@127.0.0.1:5070>"),
        ]
    )
    return Request(method, "sip:bob@127.0.0.1:5060", headers)


def carry(
    sender: TransactionLayer,
    receiver: TransactionLayer,
    source: Address,
    now: float,
    *,
    keep: Callable[[Request | Response], bool] = lambda message: True,
) -> list[Request | Response]:
    """Deliver everything ``sender`` queued to ``receiver``; ``keep`` False drops a message."""
    moved: list[Request | Response] = []
    for outgoing in sender.datagrams_to_send():
        message = parse_message(outgoing.data)
        moved.append(message)
        if keep(message):
            receiver.receive(message, source, outgoing.reliable, now)
    return moved


def drain(layer: TransactionLayer) -> list[Event]:
    events: list[Event] = []
    while (event := layer.next_event()) is not None:
        events.append(event)
    return events


def advance(layer: TransactionLayer, until: float) -> list[tuple[float, Outgoing | Event]]:
    """Fire ``layer``'s timers at their exact deadlines up to ``until``; what came out, when."""
    happened: list[tuple[float, Outgoing | Event]] = []
    for _ in range(100_000):
        deadline = layer.get_timer()
        if deadline is None or deadline > until:
            return happened
        layer.handle_timer(deadline)
        happened += [(deadline, out) for out in layer.datagrams_to_send()]
        happened += [(deadline, event) for event in drain(layer)]
    raise AssertionError("timers never settled")


def sent_times(happened: list[tuple[float, Outgoing | Event]]) -> list[float]:
    return [t for t, item in happened if isinstance(item, Outgoing)]


def statuses(events: list[Event]) -> list[tuple[str, int]]:
    return [(e.key, e.response.status) for e in events if isinstance(e, ResponseReceived)]


def only(events: list[Event], kind: type) -> list[Event]:
    return [event for event in events if isinstance(event, kind)]


# -------------------------------------------------------------------- INVITE client timers


def test_an_unanswered_invite_over_udp_is_retransmitted_with_doubling_intervals() -> None:
    uac = TransactionLayer()
    key = uac.send_request(make_request(), UAS, False, now=0.0)
    assert len(uac.datagrams_to_send()) == 1  # the original at t=0

    happened = advance(uac, 40.0)

    assert sent_times(happened) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    timeouts = [(t, e) for t, e in happened if isinstance(e, TransactionTimedOut)]
    assert timeouts == [(32.0, TransactionTimedOut(key))]
    assert len(uac) == 0


def test_an_unanswered_invite_over_tcp_is_not_retransmitted_and_times_out_at_32s() -> None:
    uac = TransactionLayer()
    key = uac.send_request(make_request(transport="TCP"), UAS, True, now=10.0)
    uac.datagrams_to_send()

    happened = advance(uac, 100.0)

    assert sent_times(happened) == []
    assert happened == [(42.0, TransactionTimedOut(key))]


def test_a_coarse_caller_clock_keeps_the_retransmission_schedule() -> None:
    uac = TransactionLayer()
    uac.send_request(make_request(), UAS, False, now=0.0)
    uac.datagrams_to_send()
    sends: list[float] = []
    for step in range(1, 81):  # the adapter wakes up every 100 ms
        now = step / 10
        uac.handle_timer(now)
        sends += [now for _ in uac.datagrams_to_send()]

    assert sends == pytest.approx([0.5, 1.5, 3.5, 7.5])


def test_a_provisional_response_stops_invite_retransmissions_and_timer_b() -> None:
    uac, uas = TransactionLayer(), TransactionLayer()
    key = uac.send_request(make_request(), UAS, False, now=0.0)
    carry(uac, uas, UAC, 0.0)
    carry(uas, uac, UAS, 0.01)  # the automatic 100 Trying

    [trying] = drain(uac)
    assert isinstance(trying, ResponseReceived) and trying.response.status == 100
    assert uac.state(key) is InviteClientState.PROCEEDING
    assert advance(uac, 120.0) == []
    assert uac.state(key) is InviteClientState.PROCEEDING


# -------------------------------------------------------------------- INVITE server side


def test_a_retransmitted_invite_gets_the_last_response_and_no_new_transaction() -> None:
    uas = TransactionLayer()
    invite = make_request()
    wire = invite.serialize()

    uas.receive(parse_message(wire), UAC, False, 0.0)
    [received] = drain(uas)
    assert isinstance(received, RequestReceived)
    [trying] = uas.datagrams_to_send()
    assert trying.data.startswith(b"SIP/2.0 100 Trying")
    ringing = make_response(received.request, 180, to_tag="bob")
    uas.send_response(received.key, ringing, 0.2)
    [sent_ringing] = uas.datagrams_to_send()

    uas.receive(parse_message(wire), UAC, False, 0.5)  # the carrier retransmits

    assert drain(uas) == []
    assert uas.datagrams_to_send() == [sent_ringing]
    assert len(uas) == 1


def test_auto_trying_can_be_turned_off() -> None:
    uas = TransactionLayer(auto_trying=False)
    uas.receive(make_request(), UAC, False, 0.0)
    assert uas.datagrams_to_send() == []
    assert len(drain(uas)) == 1


def test_responses_go_to_the_received_address_and_rport_of_the_top_via() -> None:
    uas = TransactionLayer()
    nat_source = ("198.51.100.20", 61000)
    uas.receive(make_request(), nat_source, False, 0.0)

    [event] = drain(uas)
    assert isinstance(event, RequestReceived)
    top_via = event.request.headers.get("Via")
    assert top_via is not None and "rport=61000" in top_via and "received=198.51.100.20" in top_via
    [trying] = uas.datagrams_to_send()
    assert trying.destination == nat_source
    assert b"rport=61000;received=198.51.100.20" in trying.data


def test_a_failure_response_is_acked_by_the_client_transaction_with_the_same_branch() -> None:
    uac, uas = TransactionLayer(), TransactionLayer()
    invite = make_request()
    key = uac.send_request(invite, UAS, False, now=0.0)
    carry(uac, uas, UAC, 0.0)
    [received] = drain(uas)
    assert isinstance(received, RequestReceived)
    uas.send_response(received.key, make_response(received.request, 486, to_tag="bob"), 0.1)

    carry(uas, uac, UAS, 0.1)  # 100 Trying and 486
    events = drain(uac)
    [busy] = [e for e in only(events, ResponseReceived) if e.response.status == 486]
    assert isinstance(busy, ResponseReceived) and busy.key == key
    [ack_out] = uac.datagrams_to_send()
    ack = parse_message(ack_out.data)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.via_branch == invite.via_branch
    assert ack.uri == invite.uri
    assert ack.cseq == (1, "ACK")
    assert ack.to_tag == "bob"
    assert ack_out.destination == UAS

    uas.receive(ack, UAC, False, 0.2)
    assert drain(uas) == []  # absorbed by the server transaction, not a 2xx ACK
    assert uas.state(received.key) is InviteServerState.CONFIRMED
    assert sent_times(advance(uas, 100.0)) == []  # Timer G stopped
    assert len(uas) == 0


def test_a_lost_ack_for_a_failure_is_recovered_by_timer_g_and_a_second_ack() -> None:
    uac, uas = TransactionLayer(), TransactionLayer()
    uac.send_request(make_request(), UAS, False, now=0.0)
    carry(uac, uas, UAC, 0.0)
    [received] = drain(uas)
    assert isinstance(received, RequestReceived)
    uas.send_response(received.key, make_response(received.request, 603, to_tag="b"), 0.0)
    carry(uas, uac, UAS, 0.0)
    assert len(only(drain(uac), ResponseReceived)) == 2  # 100, 603
    carry(uac, uas, UAC, 0.0, keep=lambda m: False)  # the ACK is lost

    happened = advance(uas, 0.5)  # Timer G: the 603 again
    assert sent_times(happened) == [0.5]
    [(_, resent)] = happened
    assert isinstance(resent, Outgoing)
    uac.receive(parse_message(resent.data), UAS, False, 0.5)
    assert drain(uac) == []  # a retransmitted final is not passed up again
    carry(uac, uas, UAC, 0.5)  # ... but ACKed again
    assert uas.state(received.key) is InviteServerState.CONFIRMED


def test_timer_h_gives_up_when_the_ack_never_comes() -> None:
    uas = TransactionLayer()
    uas.receive(make_request(), UAC, False, 0.0)
    [received] = drain(uas)
    assert isinstance(received, RequestReceived)
    uas.send_response(received.key, make_response(received.request, 480, to_tag="b"), 0.0)
    uas.datagrams_to_send()

    happened = advance(uas, 100.0)

    # G: 0.5, then doubling capped at T2 = 4 s, until H at 32 s.
    assert sent_times(happened) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert len(uas) == 0


# ------------------------------------------------------------------------ 2xx and its ACK


@dataclass
class Answered:
    """An INVITE from ``uac`` to ``uas`` answered 200 (the 2xx already passed up)."""

    uac: TransactionLayer
    uas: TransactionLayer
    client_key: str
    server_key: str
    invite: Request
    ok: Response


def answered_call(*, reliable: bool = False) -> Answered:
    uac, uas = TransactionLayer(), TransactionLayer()
    invite = make_request(transport="TCP" if reliable else "UDP")
    client_key = uac.send_request(invite, UAS, reliable, now=0.0)
    carry(uac, uas, UAC, 0.0)
    [received] = drain(uas)
    assert isinstance(received, RequestReceived)
    uas.send_response(received.key, make_response(received.request, 200, to_tag="bob"), 0.1)
    carry(uas, uac, UAS, 0.1)
    events = drain(uac)
    assert statuses(events) == [(client_key, 100), (client_key, 200)]
    final = events[-1]
    assert isinstance(final, ResponseReceived) and not final.retransmission
    return Answered(uac, uas, client_key, received.key, invite, final.response)


def ack_for(invite: Request, ok: Response) -> Request:
    """The TU's end-to-end ACK for a 2xx: a new branch (RFC 3261 13.2.2.4)."""
    headers = Headers(
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch={new_branch()}"),
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("From") or ""),
            ("To", ok.headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq[0]} ACK"),
        ]
    )
    return Request("ACK", "sip:bob@127.0.0.1:5060", headers)


def test_the_ack_for_a_2xx_is_end_to_end_and_stops_the_2xx_retransmissions() -> None:
    call = answered_call()
    assert call.uac.state(call.client_key) is InviteClientState.ACCEPTED
    assert call.uac.datagrams_to_send() == []  # the layer does not ACK a 2xx itself

    ack = ack_for(call.invite, call.ok)
    call.uac.send_ack(call.client_key, ack, UAS, False)
    [moved] = carry(call.uac, call.uas, UAC, 0.2)
    assert isinstance(moved, Request) and moved.via_branch != call.invite.via_branch

    [event] = drain(call.uas)
    assert isinstance(event, AckReceived) and event.key == call.server_key
    assert sent_times(advance(call.uas, 100.0)) == []
    assert only(drain(call.uas), AckTimedOut) == []
    assert len(call.uas) == 0


def test_2xx_retransmissions_reach_the_tu_flagged_and_get_the_stored_ack_again() -> None:
    call = answered_call()
    call.uac.send_ack(call.client_key, ack_for(call.invite, call.ok), UAS, False)
    carry(call.uac, call.uas, UAC, 0.2, keep=lambda m: False)  # the ACK is lost

    [(t, resent)] = advance(call.uas, 0.6)
    assert t == pytest.approx(0.6)  # 0.1 + T1
    assert isinstance(resent, Outgoing)
    call.uac.receive(parse_message(resent.data), UAS, False, t)

    [again] = drain(call.uac)
    assert isinstance(again, ResponseReceived) and again.retransmission
    assert again.key == call.client_key
    carry(call.uac, call.uas, UAC, t)  # the layer re-sent the TU's ACK by itself
    [acked] = drain(call.uas)
    assert isinstance(acked, AckReceived) and acked.key == call.server_key


def test_the_server_retransmits_a_2xx_until_64_t1_then_reports_the_missing_ack() -> None:
    call = answered_call()

    happened = advance(call.uas, 100.0)

    intervals = [0.5, 1, 2, 4, 4, 4, 4, 4, 4, 4]
    expected = [0.1 + sum(intervals[: i + 1]) for i in range(len(intervals))]
    assert sent_times(happened) == pytest.approx(expected)
    timed_out = [(t, e) for t, e in happened if isinstance(e, AckTimedOut)]
    assert timed_out == [(pytest.approx(32.1), AckTimedOut(call.server_key))]
    assert len(call.uas) == 0


def test_a_repeated_ack_for_a_2xx_is_reported_once() -> None:
    call = answered_call()
    ack = ack_for(call.invite, call.ok)
    call.uas.receive(ack, UAC, False, 0.2)
    call.uas.receive(ack, UAC, False, 0.3)
    assert [type(e) for e in drain(call.uas)] == [AckReceived]


def test_an_ack_after_the_transaction_ended_still_reaches_the_tu_without_a_key() -> None:
    call = answered_call()
    advance(call.uas, 100.0)
    drain(call.uas)
    call.uas.receive(ack_for(call.invite, call.ok), UAC, False, 100.0)
    [event] = drain(call.uas)
    assert isinstance(event, AckReceived) and event.key is None


def test_the_accepted_client_transaction_ends_after_timer_m() -> None:
    call = answered_call()
    assert len(call.uac) == 1
    advance(call.uac, 0.1 + 32.0)
    assert len(call.uac) == 0


def test_the_2xx_is_retransmitted_over_tcp_too_because_it_is_end_to_end() -> None:
    call = answered_call(reliable=True)
    happened = advance(call.uas, 1.0)
    assert sent_times(happened) == [pytest.approx(0.6)]
    call.uas.receive(ack_for(call.invite, call.ok), UAC, True, 1.0)
    assert [type(e) for e in drain(call.uas)] == [AckReceived]
    assert sent_times(advance(call.uas, 100.0)) == []


# ---------------------------------------------------------------------------- CANCEL (9)


def ringing_call() -> tuple[TransactionLayer, TransactionLayer, str, RequestReceived, Request]:
    """INVITE from uac to uas, answered 180: (uac, uas, client key, server's event, INVITE)."""
    uac, uas = TransactionLayer(), TransactionLayer()
    invite = make_request()
    client_key = uac.send_request(invite, UAS, False, now=0.0)
    carry(uac, uas, UAC, 0.0)
    [received] = drain(uas)
    assert isinstance(received, RequestReceived)
    uas.send_response(received.key, make_response(received.request, 180, to_tag="bob"), 0.1)
    carry(uas, uac, UAS, 0.1)
    assert statuses(drain(uac)) == [(client_key, 100), (client_key, 180)]
    return uac, uas, client_key, received, invite


def test_a_cancel_finds_its_invite_and_ends_it_with_487() -> None:
    uac, uas, client_key, received, invite = ringing_call()
    server_key = received.key
    cancel_key = uac.send_request(make_cancel(invite), UAS, False, now=1.0)
    carry(uac, uas, UAC, 1.0)

    [cancel_event] = drain(uas)
    assert isinstance(cancel_event, RequestReceived)
    assert cancel_event.request.method == "CANCEL"
    assert cancel_event.key != server_key
    assert uas.matching_invite(cancel_event.request) == server_key
    uas.send_response(cancel_event.key, make_response(cancel_event.request, 200), 1.0)
    uas.send_response(server_key, make_response(received.request, 487, to_tag="bob"), 1.0)
    carry(uas, uac, UAS, 1.0)

    assert sorted(statuses(drain(uac))) == sorted([(cancel_key, 200), (client_key, 487)])
    carry(uac, uas, UAC, 1.0)  # the layer's ACK for the 487
    assert uas.state(server_key) is InviteServerState.CONFIRMED


def test_a_cancel_for_an_unknown_invite_matches_nothing() -> None:
    uas = TransactionLayer()
    assert uas.matching_invite(make_cancel(make_request())) is None


def test_a_cancel_before_any_provisional_response_waits_for_one() -> None:
    uac, uas = TransactionLayer(), TransactionLayer(auto_trying=False)
    invite = make_request()
    uac.send_request(invite, UAS, False, now=0.0)
    carry(uac, uas, UAC, 0.0)
    [received] = drain(uas)
    assert isinstance(received, RequestReceived)

    uac.send_request(make_cancel(invite), UAS, False, now=0.1)
    assert uac.datagrams_to_send() == []  # RFC 3261 9.1: not before a provisional

    uas.send_response(received.key, make_response(received.request, 180, to_tag="b"), 0.2)
    carry(uas, uac, UAS, 0.2)
    [sent] = carry(uac, uas, UAC, 0.2)
    assert isinstance(sent, Request) and sent.method == "CANCEL"


def test_a_held_back_cancel_is_dropped_when_the_invite_fails_first() -> None:
    uac, uas = TransactionLayer(), TransactionLayer(auto_trying=False)
    invite = make_request()
    uac.send_request(invite, UAS, False, now=0.0)
    carry(uac, uas, UAC, 0.0)
    [received] = drain(uas)
    assert isinstance(received, RequestReceived)
    uac.send_request(make_cancel(invite), UAS, False, now=0.1)
    uas.send_response(received.key, make_response(received.request, 404, to_tag="b"), 0.2)
    carry(uas, uac, UAS, 0.2)

    sent = [parse_message(o.data) for o in uac.datagrams_to_send()]
    assert [m.method for m in sent if isinstance(m, Request)] == ["ACK"]
    advance(uac, 100.0)
    assert len(uac) == 0


def test_a_cancelled_invite_that_never_gets_a_final_response_gives_up_after_64_t1() -> None:
    uac, uas, client_key, _, invite = ringing_call()
    cancel_key = uac.send_request(make_cancel(invite), UAS, False, now=1.0)
    carry(uac, uas, UAC, 1.0)
    [cancel_event] = drain(uas)
    assert isinstance(cancel_event, RequestReceived)
    uas.send_response(cancel_event.key, make_response(cancel_event.request, 200), 1.0)
    carry(uas, uac, UAS, 1.0)  # 200 for the CANCEL, but the 487 never comes
    drain(uac)

    happened = advance(uac, 100.0)
    timed_out = [(t, e) for t, e in happened if isinstance(e, TransactionTimedOut)]
    assert timed_out == [(33.0, TransactionTimedOut(client_key))]
    assert cancel_key != client_key
    assert len(uac) == 0


# ------------------------------------------------------------------- non-INVITE transactions


def test_non_invite_retransmissions_cap_at_t2_and_timer_f_fires_at_32s() -> None:
    uac = TransactionLayer()
    key = uac.send_request(make_request("OPTIONS"), UAS, False, now=0.0)
    uac.datagrams_to_send()

    happened = advance(uac, 100.0)

    assert sent_times(happened) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert [(t, e) for t, e in happened if not isinstance(e, Outgoing)] == [
        (32.0, TransactionTimedOut(key))
    ]


def test_non_invite_in_proceeding_retransmits_every_t2() -> None:
    uac, uas = TransactionLayer(), TransactionLayer()
    uac.send_request(make_request("BYE"), UAS, False, now=0.0)
    carry(uac, uas, UAC, 0.0)
    [received] = drain(uas)
    assert isinstance(received, RequestReceived)
    uas.send_response(received.key, make_response(received.request, 100), 0.1)
    carry(uas, uac, UAS, 0.1)

    assert sent_times(advance(uac, 15.0)) == [0.5, 4.5, 8.5, 12.5]


def test_a_non_invite_server_transaction_absorbs_retransmissions_until_timer_j() -> None:
    uas = TransactionLayer()
    bye = make_request("BYE").serialize()
    uas.receive(parse_message(bye), UAC, False, 0.0)
    [received] = drain(uas)
    assert isinstance(received, RequestReceived)

    uas.receive(parse_message(bye), UAC, False, 0.3)  # before the TU answered: absorbed
    assert uas.datagrams_to_send() == [] and drain(uas) == []

    uas.send_response(received.key, make_response(received.request, 200), 0.5)
    [ok] = uas.datagrams_to_send()
    uas.receive(parse_message(bye), UAC, False, 1.0)
    assert uas.datagrams_to_send() == [ok]
    assert drain(uas) == []
    assert uas.state(received.key) is NonInviteServerState.COMPLETED

    advance(uas, 0.5 + 32.0)  # Timer J = 64*T1
    assert len(uas) == 0
    uas.receive(parse_message(bye), UAC, False, 40.0)
    assert [type(e) for e in drain(uas)] == [RequestReceived]  # a new transaction now


def test_over_tcp_completed_transactions_end_at_once() -> None:
    uac, uas = TransactionLayer(), TransactionLayer()
    uac.send_request(make_request("BYE", transport="TCP"), UAS, True, now=0.0)
    carry(uac, uas, UAC, 0.0)
    [received] = drain(uas)
    assert isinstance(received, RequestReceived)
    uas.send_response(received.key, make_response(received.request, 200), 0.0)
    carry(uas, uac, UAS, 0.0)

    assert len(uas) == 0  # Timer J = 0 over reliable transports
    assert len(uac) == 0  # Timer K = 0
    assert [type(e) for e in drain(uac)] == [ResponseReceived]


def test_a_response_matching_no_transaction_is_stray() -> None:
    uac = TransactionLayer()
    request = make_request()
    uac.receive(make_response(request, 200, to_tag="x"), UAS, False, 0.0)
    [event] = drain(uac)
    assert isinstance(event, StrayResponse) and event.source == UAS


def test_a_request_whose_via_is_unusable_is_dropped_and_counted() -> None:
    uas = TransactionLayer()
    request = make_request()
    request.headers.set("Via", "garbage")
    uas.receive(request, UAC, False, 0.0)
    assert drain(uas) == [] and uas.datagrams_to_send() == []
    assert uas.malformed_count == 1


def test_the_tu_must_use_a_magic_cookie_branch_and_not_send_ack_as_a_transaction() -> None:
    uac = TransactionLayer()
    with pytest.raises(ValueError):
        uac.send_request(make_request(branch="old-style"), UAS, False, now=0.0)
    with pytest.raises(ValueError):
        uac.send_request(make_request("ACK"), UAS, False, now=0.0)


def test_timers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Timers(t1_s=0)


# ------------------------------------------------------------------------------- memory


def test_ten_thousand_completed_transactions_leave_nothing_behind() -> None:
    uac, uas = TransactionLayer(), TransactionLayer()
    for i in range(10_000):
        now = i * 0.001
        uac.send_request(make_request("OPTIONS", call_id=f"c{i}"), UAS, False, now=now)
        carry(uac, uas, UAC, now)
        event = uas.next_event()
        assert isinstance(event, RequestReceived)
        uas.send_response(event.key, make_response(event.request, 200), now)
        carry(uas, uac, UAS, now)
        assert isinstance(uac.next_event(), ResponseReceived)
    assert len(uac) == 10_000 and len(uas) == 10_000

    uac.handle_timer(200.0)
    uas.handle_timer(200.0)

    assert len(uac) == 0 and len(uas) == 0
    assert uac.get_timer() is None and uas.get_timer() is None
    assert uac.datagrams_to_send() == [] and uas.datagrams_to_send() == []
