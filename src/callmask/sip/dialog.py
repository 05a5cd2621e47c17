"""SIP dialogs: the state two user agents share after an INVITE (RFC 3261 section 12).

A :class:`Dialog` is built from the dialog-creating INVITE and its response, on the caller's side
(:meth:`Dialog.as_uac`, 12.1.2: route set = Record-Route reversed) or the callee's side
(:meth:`Dialog.as_uas`, 12.1.1: route set = Record-Route as received). It then makes in-dialog
requests (12.2.1.1: Request-URI and Route from the remote target and the route set, loose or
strict routing; From/To with both tags; CSeq numbering), checks the CSeq order of requests it
receives (12.2.2) and follows target refreshes (12.2.1.2/12.2.2). It is plain data: no timers,
no I/O; the B2BUA keeps one per leg and looks it up by :attr:`Dialog.id`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from callmask.sip._grammar import SipParseError
from callmask.sip.message import Headers, Request, Response, parse_cseq
from callmask.sip.uri import NameAddr, SipUri

__all__ = ["Dialog", "DialogId", "dialog_id_of_request", "dialog_id_of_response"]

# (Call-ID, local tag, remote tag): the dialog ID of RFC 3261 12.
DialogId = tuple[str, str, str]

# Requests and responses that carry a Contact which replaces the remote target (RFC 3261
# 12.2, RFC 3311 UPDATE, RFC 6665 SUBSCRIBE/NOTIFY, RFC 3515 REFER).
_TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
# Requests that need our Contact so the peer can reach us for the rest of the dialog.
_NEEDS_CONTACT = _TARGET_REFRESH


def dialog_id_of_request(request: Request) -> DialogId:
    """ID of the dialog a received in-dialog request belongs to, from our side's view."""
    return request.call_id, request.to_tag or "", request.from_tag or ""


def dialog_id_of_response(response: Response) -> DialogId:
    """ID of the dialog a response to our request belongs to, from our side's view."""
    return response.call_id, response.from_tag or "", response.to_tag or ""


def _contact_uri(message: Request | Response) -> SipUri | None:
    contact = message.headers.get("Contact")
    if contact is None or contact.strip() == "*":
        return None
    return NameAddr.parse(contact).uri


def _request_uri(uri: SipUri) -> str:
    # RFC 3261 19.1.1 table: "method" and URI headers are not allowed in a Request-URI.
    return str(uri.without_param("method").without_headers())


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: SipUri
    route_set: list[str]
    local_seq: int
    remote_seq: int | None
    local_contact: str

    @classmethod
    def as_uac(cls, request: Request, response: Response, local_contact: str) -> Dialog:
        """The dialog our INVITE ``request`` and its 1xx/2xx ``response`` (with To-tag) create.

        Raises SipParseError when the response has no To-tag or an unparseable From/To/Contact.
        """
        remote_tag = response.to_tag
        if not remote_tag:
            raise SipParseError("Response without To tag creates no dialog")
        from_value = request.headers.get("From")
        to_value = response.headers.get("To")
        if from_value is None or to_value is None:
            raise SipParseError("Missing From or To header")
        target = _contact_uri(response) or SipUri.parse(request.uri)
        return cls(
            call_id=request.call_id,
            local_tag=request.from_tag or "",
            remote_tag=remote_tag,
            local_uri=NameAddr.parse(from_value).without_tag(),
            remote_uri=NameAddr.parse(to_value).without_tag(),
            remote_target=target,
            # 12.1.2: the UAC reverses Record-Route.
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_seq=request.cseq[0],
            remote_seq=None,
            local_contact=local_contact,
        )

    @classmethod
    def as_uas(cls, request: Request, local_tag: str, local_contact: str) -> Dialog:
        """The dialog a received INVITE creates once we answer it with To-tag ``local_tag``.

        Raises SipParseError when Contact is missing or From/To/Contact do not parse.
        """
        from_value = request.headers.get("From")
        to_value = request.headers.get("To")
        if from_value is None or to_value is None:
            raise SipParseError("Missing From or To header")
        target = _contact_uri(request)
        if target is None:
            raise SipParseError("Missing Contact header")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            # An RFC 2543 peer may send no From tag; the dialog then has an empty remote tag.
            remote_tag=request.from_tag or "",
            local_uri=NameAddr.parse(to_value).without_tag(),
            remote_uri=NameAddr.parse(from_value).without_tag(),
            remote_target=target,
            route_set=request.headers.get_all("Record-Route"),
            # 12.1.1: the local sequence number starts empty; create_request counts from 1.
            local_seq=0,
            remote_seq=request.cseq[0],
            local_contact=local_contact,
        )

    @property
    def id(self) -> DialogId:
        return self.call_id, self.local_tag, self.remote_tag

    def create_request(
        self,
        method: str,
        *,
        via: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        cseq: int | None = None,
    ) -> Request:
        """An in-dialog request (RFC 3261 12.2.1.1) with the full Via value ``via``.

        CSeq: ACK and CANCEL reuse ``cseq`` or the current local sequence number (the INVITE's);
        other methods take ``cseq`` when given (and never let the counter go back) or the next
        number.
        """
        if method in ("ACK", "CANCEL"):
            number = self.local_seq if cseq is None else cseq
        elif cseq is not None:
            number = cseq
            self.local_seq = max(self.local_seq, cseq)
        else:
            self.local_seq += 1
            number = self.local_seq

        routes = list(self.route_set)
        request_uri = _request_uri(self.remote_target)
        if routes:
            first = NameAddr.parse(routes[0]).uri
            if not first.has_param("lr"):
                # 12.2.1.1 strict routing: the first route becomes the Request-URI and the
                # remote target goes last in Route.
                request_uri = _request_uri(first)
                routes = [*routes[1:], f"<{self.remote_target}>"]

        out = Headers()
        out.add("Via", via)
        out.add("Max-Forwards", "70")
        out.add("From", str(self.local_uri.with_tag(self.local_tag)))
        remote = self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri
        out.add("To", str(remote))
        out.add("Call-ID", self.call_id)
        out.add("CSeq", f"{number} {method}")
        for route in routes:
            out.add("Route", route)
        if method in _NEEDS_CONTACT:
            out.add("Contact", self.local_contact)
        for name, value in headers:
            out.add(name, value)
        return Request(method, request_uri, out, body)

    def next_hop(self) -> SipUri:
        """Where an in-dialog request goes: the first route (loose or strict), else the target."""
        if self.route_set:
            return NameAddr.parse(self.route_set[0]).uri
        return self.remote_target

    def receive_request(self, request: Request) -> bool:
        """Check and record the CSeq of a request from the peer (12.2.2).

        False means out of order (a lower number than seen before): answer 500.
        """
        number = request.cseq[0]
        if self.remote_seq is not None and number < self.remote_seq:
            return False
        self.remote_seq = number
        return True

    def update_target(self, message: Request | Response) -> None:
        """Take the remote target from Contact of a target refresh (re-INVITE, UPDATE, ...).

        Requests refresh when their method is a target refresh; responses when they answer one
        with 101-299. Messages without a usable Contact leave the target as it is.
        """
        if isinstance(message, Request):
            method = message.method
        else:
            if not 100 < message.status < 300:
                return
            method = parse_cseq(message.headers.get("CSeq"))[1]
        if method not in _TARGET_REFRESH:
            return
        target = _contact_uri(message)
        if target is not None:
            self.remote_target = target
