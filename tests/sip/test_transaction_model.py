"""The transaction state tables as a whole: every (state, input) pair, and random lossy exchanges.

The first test reaches into the layer (h2-style) to put a transaction of each kind into each state
and feed it each input; the Hypothesis test only uses the public API and a lossy, reordering-free
in-memory network, and checks that whatever happens, the TU hears at most one outcome per
transaction and both layers end up empty once time passes.
"""

from __future__ import annotations

import enum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callmask.sip import transaction as tx
from callmask.sip.message import Headers, Request, make_response, new_branch, parse_message
from callmask.sip.transaction import (
    AckReceived,
    AckTimedOut,
    Event,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionLayer,
    TransactionTimedOut,
)
from tests.sip.test_transaction import UAC, UAS, drain, make_request

TABLES: dict[tx.Kind, tuple[type[enum.Enum], tx._Table]] = {
    tx.Kind.INVITE_CLIENT: (tx.InviteClientState, tx._INVITE_CLIENT),
    tx.Kind.NON_INVITE_CLIENT: (tx.NonInviteClientState, tx._NON_INVITE_CLIENT),
    tx.Kind.INVITE_SERVER: (tx.InviteServerState, tx._INVITE_SERVER),
    tx.Kind.NON_INVITE_SERVER: (tx.NonInviteServerState, tx._NON_INVITE_SERVER),
}


@pytest.mark.parametrize("kind", list(TABLES))
def test_each_table_only_uses_its_own_states_and_never_leaves_terminated(kind: tx.Kind) -> None:
    states, table = TABLES[kind]
    for (state, _), (next_state, _) in table.items():
        assert isinstance(state, states) and isinstance(next_state, states)
        assert state is not states["TERMINATED"]
    # Every live state has a way out (a timer or a final response), so nothing lives forever
    # except what waits for the TU (server Proceeding/Trying, client Proceeding).
    reachable = {state for state, _ in table}
    assert reachable == {s for s in states if s.name != "TERMINATED"}


def transaction_in(
    kind: tx.Kind, state: enum.Enum, *, reliable: bool
) -> tuple[TransactionLayer, tx._Transaction]:
    layer = TransactionLayer()
    if kind in (tx.Kind.INVITE_CLIENT, tx.Kind.NON_INVITE_CLIENT):
        method = "INVITE" if kind is tx.Kind.INVITE_CLIENT else "BYE"
        key = layer.send_request(make_request(method), UAS, reliable, now=0.0)
        txn = layer._clients[key]
    else:
        method = "INVITE" if kind is tx.Kind.INVITE_SERVER else "BYE"
        layer.receive(make_request(method), UAC, reliable, 0.0)
        [event] = drain(layer)
        assert isinstance(event, RequestReceived)
        txn = layer._servers[event.key]
    layer.datagrams_to_send()
    txn.state = state
    return layer, txn


def payload_for(txn: tx._Transaction, event: tx.Input) -> dict[str, object]:
    request = txn.request
    statuses = {
        tx.Input.PROVISIONAL: 180,
        tx.Input.SUCCESS: 200,
        tx.Input.FAILURE: 486,
        tx.Input.SEND_PROVISIONAL: 183,
        tx.Input.SEND_SUCCESS: 200,
        tx.Input.SEND_FAILURE: 503,
    }
    if event in statuses:
        return {"response": make_response(request, statuses[event], to_tag="t")}
    if event is tx.Input.ACK:
        ack = Request("ACK", request.uri, request.headers.copy())
        ack.headers.set("CSeq", f"{request.cseq[0]} ACK")
        return {"request": ack, "source": UAC}
    return {}


@pytest.mark.parametrize("reliable", [False, True])
@pytest.mark.parametrize("kind", list(TABLES))
def test_every_state_takes_every_input_without_breaking(kind: tx.Kind, reliable: bool) -> None:
    states, table = TABLES[kind]
    for state in states:
        if state.name == "TERMINATED":
            continue
        for event in tx.Input:
            layer, txn = transaction_in(kind, state, reliable=reliable)
            before = len(layer)
            layer._step(txn, event, 1.0, 1.0, **payload_for(txn, event))  # type: ignore[arg-type]

            entry = table.get((state, event))
            if entry is None:
                assert txn.state is state, (state, event)  # absorbed
                assert layer.datagrams_to_send() == [] and drain(layer) == []
                continue
            next_state, _ = entry
            if txn.alive:
                assert txn.state is next_state
                assert len(layer) == before
            else:
                assert txn.state is states["TERMINATED"]
                assert len(layer) == before - 1
            for out in layer.datagrams_to_send():
                parse_message(out.data)  # everything sent is a valid message
            if next_state is state:
                continue  # the state was forced, not entered: its entry timers never ran
            # A state entered for real ends once time passes, unless it waits for the TU
            # (server Trying/Proceeding) or for the peer's final response (client Proceeding).
            layer.handle_timer(10_000.0)
            if txn.alive:
                assert txn.state.name in ("PROCEEDING", "TRYING"), (state, event, txn.state)


def tu_ack(invite: Request, response_to: str) -> Request:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch={new_branch()}"),
            ("From", invite.headers.get("From") or ""),
            ("To", response_to),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{invite.cseq[0]} ACK"),
        ]
    )
    return Request("ACK", invite.uri, headers)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_exchanges_over_a_lossy_network_always_end_cleanly(data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(["INVITE", "BYE", "OPTIONS"]), label="method")
    reliable = data.draw(st.booleans(), label="reliable")
    uac, uas = TransactionLayer(), TransactionLayer(auto_trying=data.draw(st.booleans()))
    request = make_request(method, transport="TCP" if reliable else "UDP")
    now = 0.0
    client_key = uac.send_request(request, UAS, reliable, now)
    server_key: str | None = None
    server_request: Request | None = None
    final_sent = False
    outcomes: list[Event] = []

    def move(sender: TransactionLayer, receiver: TransactionLayer, source: tuple[str, int]) -> None:
        for out in sender.datagrams_to_send():
            lost = not reliable and data.draw(st.booleans(), label="lost")
            if not lost:
                receiver.receive(parse_message(out.data), source, out.reliable, now)

    def tu() -> None:
        nonlocal server_key, server_request
        for event in drain(uas):
            if isinstance(event, RequestReceived):
                assert server_key is None, "a retransmission became a second transaction"
                server_key, server_request = event.key, event.request
            else:
                assert isinstance(event, AckReceived | AckTimedOut)
        for event in drain(uac):
            assert isinstance(event, ResponseReceived | TransactionTimedOut | StrayResponse)
            if isinstance(event, ResponseReceived) and event.response.status < 200:
                continue
            if isinstance(event, ResponseReceived) and event.retransmission:
                continue
            if isinstance(event, StrayResponse):
                continue
            outcomes.append(event)
            if (
                isinstance(event, ResponseReceived)
                and method == "INVITE"
                and event.response.status < 300
            ):
                to = event.response.headers.get("To") or ""
                uac.send_ack(client_key, tu_ack(request, to), UAS, reliable)

    def tick(until: float) -> None:
        """Let time pass deadline by deadline; the network loses but never delays."""
        nonlocal now
        for _ in range(1000):
            move(uac, uas, UAC)
            move(uas, uac, UAS)
            tu()
            deadlines = [t for t in (uac.get_timer(), uas.get_timer()) if t is not None]
            if not deadlines or min(deadlines) > until:
                break
            now = max(now, min(deadlines))
            uac.handle_timer(now)
            uas.handle_timer(now)
        now = max(now, until)

    for _ in range(data.draw(st.integers(1, 25), label="steps")):
        step = data.draw(st.sampled_from(["to uas", "to uac", "time", "answer"]), label="step")
        if step == "to uas":
            move(uac, uas, UAC)
        elif step == "to uac":
            move(uas, uac, UAS)
        elif step == "time":
            tick(now + data.draw(st.floats(0.0, 8.0), label="dt"))
        elif server_key is not None and server_request is not None:
            status = data.draw(st.sampled_from([100, 180, 200, 486, 503]), label="status")
            final_sent = final_sent or status >= 200
            uas.send_response(server_key, make_response(server_request, status, to_tag="b"), now)
        tu()

    for _ in range(100):  # let everything play out, still over the lossy network
        if server_key is not None and server_request is not None and not final_sent:
            # The TU always answers in the end: a server transaction waits for it forever.
            uas.send_response(server_key, make_response(server_request, 200, to_tag="b"), now)
            final_sent = True
        tick(now + 2.0)

    assert len(outcomes) <= 1, outcomes  # one final response or one timeout, never both
    assert len(uac) == 0 and len(uas) == 0
    assert uac.get_timer() is None and uas.get_timer() is None
