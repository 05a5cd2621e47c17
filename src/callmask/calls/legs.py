"""The two kinds of call leg a B2BUA has (RFC 3261 sections 12-15, 9 for CANCEL).

``InboundLeg`` is the UAS side of a call the carrier delivered (the caller, "A");
``OutboundLeg`` is the UAC side of a call callmask places to the trunk (the called
party, "B", or an agent). Each builds its own messages from scratch: nothing of one
leg's headers is copied into the other, which is what keeps the caller's identity
(From, Contact, P-Asserted-Identity, Via, Call-ID...) away from the called party.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field

from callmask.calls.endpoint import SipEndpoint
from callmask.sip.auth import Challenge, authorization
from callmask.sip.dialog import Dialog
from callmask.sip.message import (
    Headers,
    RandomHex,
    Request,
    Response,
    SipParseError,
    make_cancel,
    make_response,
    new_branch,
    new_call_id,
    new_tag,
)
from callmask.sip.transaction import Address
from callmask.sip.uri import NameAddr, SipUri

SDP = "application/sdp"
USER_AGENT = "callmask"
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO"


@dataclass(frozen=True, slots=True)
class Trunk:
    """Where outbound legs go, and the credentials if the trunk challenges (401/407)."""

    address: Address
    reliable: bool
    host: str  # as written in CALLMASK_TRUNK_URI, for Request-URIs
    port: int
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class LocalAddress:
    """Where this node's SIP is, and where its branches, tags and Call-IDs come from."""

    host: str
    port: int
    random_hex: RandomHex = field(default=secrets.token_hex, compare=False)

    def via(self, reliable: bool) -> str:
        transport = "TCP" if reliable else "UDP"
        branch = new_branch(self.random_hex)
        return f"SIP/2.0/{transport} {self.host}:{self.port};branch={branch};rport"

    def contact(self, reliable: bool, user: str = "callmask") -> str:
        suffix = ";transport=tcp" if reliable else ""
        return f"<sip:{user}@{self.host}:{self.port}{suffix}>"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def dialog_destination(dialog: Dialog, fallback: Address, reliable: bool) -> Address:
    """Where an in-dialog request goes: the next hop of the dialog when it is an IP
    literal; otherwise (or over TCP, where the carrier's connection is the way back)
    the address the leg's traffic came from."""
    if reliable:
        return fallback
    hop = dialog.next_hop()
    if _is_ip(hop.host):
        return (hop.host.strip("[]"), hop.port or 5060)
    return fallback


class Leg:
    """What both kinds of leg do once a dialog exists: send in-dialog requests (BYE,
    re-INVITE, UPDATE) and answer the ones the other side sends."""

    endpoint: SipEndpoint
    local: LocalAddress
    contact: str
    dialog: Dialog | None

    @property
    def reliable(self) -> bool:
        raise NotImplementedError

    @property
    def destination(self) -> Address:
        raise NotImplementedError

    def request(self, method: str, *, sdp: bytes = b"") -> str:
        """Send an in-dialog request; returns its transaction key."""
        assert self.dialog is not None, "no dialog on this leg yet"
        headers = [("Content-Type", SDP)] if sdp else []
        headers.append(("User-Agent", USER_AGENT))
        request = self.dialog.create_request(
            method, via=self.local.via(self.reliable), headers=headers, body=sdp
        )
        return self.endpoint.send_request(request, self.destination, self.reliable)

    def answer_request(
        self,
        key: str,
        request: Request,
        status: int,
        *,
        sdp: bytes = b"",
        reason: str | None = None,
    ) -> None:
        headers: list[tuple[str, str]] = [("Server", USER_AGENT)]
        if sdp:
            headers += [("Content-Type", SDP), ("Contact", self.contact)]
        self.endpoint.send_response(
            key, make_response(request, status, reason, headers=headers, body=sdp)
        )


class InboundLeg(Leg):
    """The caller's side: answers the carrier's INVITE and owns the resulting dialog."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        local: LocalAddress,
        key: str,
        invite: Request,
        source: Address,
        reliable: bool,
    ) -> None:
        self.endpoint = endpoint
        self.local = local
        self.key = key
        self.invite = invite
        self.source = source
        self._reliable = reliable
        self.local_tag = new_tag(local.random_hex)
        self.contact = local.contact(reliable)
        self.dialog: Dialog | None = None
        self.final_sent = False

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    @property
    def media_tag(self) -> str:
        """The caller's side of the media session in rtpengine: its From tag."""
        return self.invite.from_tag or self.invite.call_id

    def respond(
        self,
        status: int,
        reason: str | None = None,
        *,
        sdp: bytes = b"",
        extra: Headers | None = None,
    ) -> None:
        if self.final_sent:
            return
        headers: list[tuple[str, str]] = []
        if status > 100:
            headers.append(("Contact", self.contact))
        if 200 <= status < 300:
            headers += [("Allow", ALLOW), ("Supported", "replaces, timer")]
        headers.append(("Server", USER_AGENT))
        if extra is not None:
            headers += extra.items()
        if sdp:
            headers.append(("Content-Type", SDP))
        response = make_response(
            self.invite,
            status,
            reason,
            to_tag=self.local_tag if status > 100 else None,
            headers=headers,
            body=sdp,
        )
        if status >= 200:
            self.final_sent = True
        if 100 < status < 300 and self.dialog is None:
            self.dialog = Dialog.as_uas(self.invite, self.local_tag, self.contact)
        self.endpoint.send_response(self.key, response)

    @property
    def reliable(self) -> bool:
        return self._reliable

    @property
    def destination(self) -> Address:
        assert self.dialog is not None
        return dialog_destination(self.dialog, self.source, self.reliable)


class OutboundLeg(Leg):
    """A call callmask places to the trunk, with a fresh identity of its own."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        local: LocalAddress,
        trunk: Trunk,
        *,
        number: str,
        caller_id: str,
        sdp: bytes,
    ) -> None:
        self.endpoint = endpoint
        self.local = local
        self.trunk = trunk
        self.number = number
        self.caller_id = caller_id
        self.call_id = new_call_id(local.random_hex)
        self.local_tag = new_tag(local.random_hex)
        self.contact = local.contact(trunk.reliable)
        self.invite: Request | None = None
        self.key: str | None = None
        self.dialog: Dialog | None = None
        self.provisional_seen = False
        self.cancel_wanted = False
        self.cancel_sent = False
        self.final_status: int | None = None
        self.auth_attempted = False
        self.last_answer_sdp = ""
        self._cseq = 1
        self._sdp = sdp

    def _user(self, number: str) -> str:
        # E.164 with '+' is what most trunks expect in the user part; keep it.
        return number

    def start(self) -> str:
        user_host = f"{self.trunk.host}:{self.trunk.port}"
        request_uri = f"sip:{self._user(self.number)}@{user_host}"
        identity = f"<sip:{self._user(self.caller_id)}@{self.local.host}>"
        transport = ";transport=tcp" if self.trunk.reliable else ""
        headers = Headers(
            [
                ("Via", self.local.via(self.trunk.reliable)),
                ("Max-Forwards", "70"),
                ("From", f"{identity};tag={self.local_tag}"),
                ("To", f"<{request_uri}>"),
                ("Call-ID", self.call_id),
                ("CSeq", f"{self._cseq} INVITE"),
                ("Contact", self.contact),
                ("P-Asserted-Identity", identity),
                ("Allow", ALLOW),
                ("User-Agent", USER_AGENT),
                ("Content-Type", SDP),
            ]
        )
        self.invite = Request("INVITE", request_uri + transport, headers, self._sdp)
        return self._send_invite()

    def _send_invite(self) -> str:
        assert self.invite is not None
        self.key = self.endpoint.send_request(self.invite, self.trunk.address, self.trunk.reliable)
        return self.key

    def retry_with_credentials(self, challenge_response: Response) -> str | None:
        """Answer a 401/407 once with digest credentials (RFC 3261 22.2); None when the
        trunk has none configured or they were already refused."""
        assert self.invite is not None
        if self.auth_attempted or not self.trunk.username or self.trunk.password is None:
            return None
        status = challenge_response.status
        challenge_header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        answer_header = "Authorization" if status == 401 else "Proxy-Authorization"
        value = challenge_response.headers.get(challenge_header)
        if value is None:
            return None
        try:
            challenge = Challenge.parse(value)
        except SipParseError:
            return None
        self.auth_attempted = True
        self._cseq += 1
        headers = self.invite.headers.copy()
        headers.set("Via", self.local.via(self.trunk.reliable))
        headers.set("CSeq", f"{self._cseq} INVITE")
        headers.set(
            answer_header,
            authorization(
                challenge,
                method="INVITE",
                uri=self.invite.uri,
                username=self.trunk.username,
                password=self.trunk.password,
                cnonce=new_tag(self.local.random_hex),
                body=self.invite.body,
            ),
        )
        self.invite = Request("INVITE", self.invite.uri, headers, self.invite.body)
        return self._send_invite()

    def on_response(self, response: Response) -> None:
        """Track dialog state; ACK a 2xx (the ACK is end-to-end, RFC 3261 13.2.2.4)."""
        assert self.invite is not None and self.key is not None
        status = response.status
        if 100 < status < 200:
            self.provisional_seen = True
            if response.body:
                self.last_answer_sdp = response.body.decode("utf-8", "replace")
            if response.to_tag and self.dialog is None:
                self.dialog = Dialog.as_uac(self.invite, response, self.contact)
        elif 200 <= status < 300:
            if response.body:
                self.last_answer_sdp = response.body.decode("utf-8", "replace")
            if self.dialog is None or self.dialog.remote_tag != response.to_tag:
                self.dialog = Dialog.as_uac(self.invite, response, self.contact)
            else:
                self.dialog.update_target(response)
            self.final_status = status
            cseq = self.invite.cseq[0]
            ack = self.dialog.create_request(
                "ACK", via=self.local.via(self.trunk.reliable), cseq=cseq
            )
            self.endpoint.send_ack(self.key, ack, self.destination, self.trunk.reliable)
        elif status >= 300:
            self.final_status = status
        if status >= 100:
            self.provisional_seen = self.provisional_seen or status < 200

    @property
    def reliable(self) -> bool:
        return self.trunk.reliable

    @property
    def destination(self) -> Address:
        if self.dialog is None:
            return self.trunk.address
        return dialog_destination(self.dialog, self.trunk.address, self.trunk.reliable)

    def cancel(self) -> None:
        """CANCEL the INVITE (RFC 3261 9.1). The transaction layer holds the CANCEL
        back until a provisional response has arrived, and drops it if a final one
        comes first, so this may be called at any time."""
        assert self.invite is not None
        self.cancel_wanted = True
        if self.cancel_sent or self.final_status is not None:
            return
        self.cancel_sent = True
        self.endpoint.send_request(
            make_cancel(self.invite), self.trunk.address, self.trunk.reliable
        )


def parse_trunk(uri_text: str, username: str | None, password: str | None) -> Trunk:
    uri = SipUri.parse(uri_text)
    reliable = (uri.param("transport") or "udp").lower() == "tcp"
    port = uri.port or 5060
    host = uri.host.strip("[]")
    return Trunk(
        address=(host, port),
        reliable=reliable,
        host=uri.host,
        port=port,
        username=username,
        password=password,
    )


def request_user(request: Request) -> str | None:
    """The user part of the Request-URI: the DID the carrier delivers."""
    try:
        return SipUri.parse(request.uri).user
    except SipParseError:
        return None


def caller_of(request: Request) -> str:
    """The caller as the carrier presents it: P-Asserted-Identity, else From user."""
    for name in ("P-Asserted-Identity", "From"):
        value = request.headers.get(name)
        if not value:
            continue
        try:
            user = NameAddr.parse(value.split(",")[0]).uri.user
        except SipParseError:
            continue
        if user:
            return user
    return "anonymous"


class TrunkLegs:
    """Places legs to the trunk through the node's SIP endpoint (``LegFactory``). The
    engine sets ``local`` once the endpoint is bound and ``trunk`` once its host is
    resolved; legs placed afterwards use them."""

    def __init__(self, endpoint: SipEndpoint, local: LocalAddress, trunk: Trunk) -> None:
        self.endpoint = endpoint
        self.local = local
        self.trunk = trunk

    def outbound(self, number: str, caller_id: str, sdp: bytes) -> OutboundLeg:
        return OutboundLeg(
            self.endpoint, self.local, self.trunk, number=number, caller_id=caller_id, sdp=sdp
        )

    def send_ack(self, key: str, ack: Request, destination: Address, reliable: bool) -> None:
        self.endpoint.send_ack(key, ack, destination, reliable)
