"""SIP messages: parse bytes into requests/responses and serialise them (RFC 3261 7, 20, 25).

The parser is a hand-written ``bytes.find``/``str.split`` pass because it sits on the hot path of
every datagram (target: an INVITE in well under 30 us). It accepts what RFC 3261 7.3/7.5 asks us
to accept: CRLF or bare LF line ends, leading CRLFs, header folding (7.3.1), compact header names
(7.3.3, plus the RFC 3841/4474/4028 ones), and rejects what makes a message unusable: a bad start
line or a Request-URI without a scheme (25.1), anything but SIP/2.0 (21.5.6 -> 505), missing
mandatory headers (8.1.1), a From or To whose quotes or <> never close (20.20, 20.39), a malformed
CSeq or one whose method differs from the request method (8.1.1.5, 20.16), a body shorter than its
Content-Length (18.3; a longer one is truncated) and oversize input (21.5.11 -> 513). Every failure
is a :class:`SipParseError` carrying the headers understood so far, so a transport can still answer
a 400 (:func:`make_bad_request_reply`). Header values are kept as received (only folding and outer
whitespace are normalised); list-valued headers are split on demand by :meth:`Headers.get_all`.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from callmask.sip._grammar import (
    SipParseError,
    addr_params_start,
    is_token,
    split_list,
)

__all__ = [
    "Headers",
    "RandomHex",
    "Request",
    "Response",
    "SipParseError",
    "StreamFramer",
    "make_bad_request_reply",
    "make_cancel",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
    "reason_phrase",
]

# RFC 3261 8.1.1.7: every branch we generate starts with the magic cookie.
MAGIC_COOKIE = "z9hG4bK"

# RFC 3261 7.3.3 compact forms, plus a/j/d (RFC 3841), y/n (RFC 4474), x (RFC 4028),
# o/u (RFC 6665), r/b (RFC 3515/3892).
_COMPACT: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL_NAMES = (
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Accept-Resource-Priority",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Diversion",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "History-Info",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "P-Asserted-Identity",
    "P-Associated-URI",
    "P-Called-Party-ID",
    "P-Charging-Vector",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Remote-Party-ID",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Resource-Priority",
    "Retry-After",
    "Route",
    "RSeq",
    "Security-Client",
    "Security-Server",
    "Security-Verify",
    "Server",
    "Service-Route",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
)

# Any spelling we can resolve without work -> (lower-case key, canonical name). Only fixed,
# known spellings go in here: caching attacker-chosen names would let input grow memory.
_LOOKUP: dict[str, tuple[str, str]] = {}
for _name in _CANONICAL_NAMES:
    for _spelling in (_name, _name.lower(), _name.upper()):
        _LOOKUP[_spelling] = (_name.lower(), _name)
for _short, _name in _COMPACT.items():
    _LOOKUP[_short] = _LOOKUP[_short.upper()] = (_name.lower(), _name)
del _name, _spelling, _short

# Headers whose grammar is a comma-separated list (RFC 3261 7.3.1 allows combining them on one
# line). Authorization-like headers, Date, and anything unknown are never split: their values
# contain commas that are not list separators.
_LIST_KEYS = frozenset(
    {
        "accept",
        "accept-contact",
        "accept-encoding",
        "accept-language",
        "accept-resource-priority",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "contact",
        "content-encoding",
        "content-language",
        "diversion",
        "error-info",
        "history-info",
        "in-reply-to",
        "p-asserted-identity",
        "p-associated-uri",
        "p-preferred-identity",
        "path",
        "proxy-require",
        "reason",
        "record-route",
        "reject-contact",
        "remote-party-id",
        "request-disposition",
        "require",
        "resource-priority",
        "route",
        "security-client",
        "security-server",
        "security-verify",
        "service-route",
        "supported",
        "unsupported",
        "via",
        "warning",
    }
)

_MANDATORY = (
    ("via", "Via"),
    ("from", "From"),
    ("to", "To"),
    ("call-id", "Call-ID"),
    ("cseq", "CSeq"),
)
_SINGLETONS = (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq"))

_KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "UPDATE",
        "INFO",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "PUBLISH",
    }
)

# RFC 3261 8.1.3.3 / 20.16: CSeq sequence numbers are below 2**31.
_MAX_CSEQ = 2**31 - 1

_REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}

_CLASS_PHRASES = {1: "Trying", 2: "OK", 3: "Redirection", 4: "Request Failure", 5: "Server Failure"}


def reason_phrase(status: int) -> str:
    """Default reason phrase of ``status`` (RFC 3261 21 and later registrations)."""
    phrase = _REASON_PHRASES.get(status)
    if phrase is not None:
        return phrase
    return _CLASS_PHRASES.get(status // 100, "Global Failure")


def _resolve(name: str) -> tuple[str, str]:
    """(lower-case key, name to write) for a header name; compact forms expanded."""
    hit = _LOOKUP.get(name)
    if hit is not None:
        return hit
    lowered = name.lower()
    hit = _LOOKUP.get(lowered)
    if hit is not None:
        return hit
    return lowered, name


def _key(name: str) -> str:
    hit = _LOOKUP.get(name)
    if hit is not None:
        return hit[0]
    lowered = name.lower()
    hit = _LOOKUP.get(lowered)
    return lowered if hit is None else hit[0]


def _check_field(name: str, value: str) -> None:
    # Values often come from outside (a callback's callerId): a CR or LF would let them inject
    # headers into what we send.
    if not is_token(name):
        raise ValueError(f"invalid SIP header name {name!r}")
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"SIP header value for {name} contains CR, LF or NUL")


class Headers:
    """Ordered multi-map of SIP header fields with case-insensitive, compact-aware names.

    Each entry is one header line as received (``Via: a, b`` is one entry); :meth:`get` and
    :meth:`get_all` split list-valued headers (Via, Route, Contact, ...) into their elements,
    honouring quotes and ``<...>``. Names of well-known headers are stored in canonical spelling.
    """

    __slots__ = ("_keys", "_memo", "_names", "_values")

    _keys: list[str]
    _names: list[str]
    _values: list[str]
    # get()'s answers by the name asked for: a message's Call-ID, CSeq, From and To are
    # looked up a dozen times over its life. Every change to the fields drops it.
    _memo: dict[str, str | None] | None

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._keys = []
        self._names = []
        self._values = []
        self._memo = None
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _trusted(cls, keys: list[str], names: list[str], values: list[str]) -> Headers:
        # The parser has already validated the fields; skip the per-field checks of add().
        self = cls.__new__(cls)
        self._keys = keys
        self._names = names
        self._values = values
        self._memo = None
        return self

    def get(self, name: str) -> str | None:
        """First value of ``name`` (for list headers: the first element), or None."""
        memo = self._memo
        if memo is None:
            memo = self._memo = {}
        elif name in memo:
            return memo[name]
        value = self._first(_key(name))
        memo[name] = value
        return value

    def _first(self, key: str) -> str | None:
        keys = self._keys
        if key not in keys:
            return None
        value = self._values[keys.index(key)]
        if key in _LIST_KEYS and "," in value:
            try:
                parts = split_list(value)
            except SipParseError:
                return value
            return parts[0] if parts else value
        return value

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` in order, list headers split into elements.

        A list value that cannot be split (unbalanced quote) is returned whole.
        """
        key = _key(name)
        out: list[str] = []
        splits = key in _LIST_KEYS
        for k, value in zip(self._keys, self._values, strict=True):
            if k != key:
                continue
            if splits and "," in value:
                try:
                    out.extend(split_list(value))
                except SipParseError:
                    out.append(value)
            else:
                out.append(value)
        return out

    def lines(self, name: str) -> list[str]:
        """Values of ``name`` exactly as the header lines hold them (no list splitting)."""
        key = _key(name)
        return [v for k, v in zip(self._keys, self._values, strict=True) if k == key]

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` by ``value`` at the first one's position, or append."""
        self._memo = None
        _check_field(name, value)
        key, spelled = _resolve(name)
        keys = self._keys
        if key not in keys:
            keys.append(key)
            self._names.append(spelled)
            self._values.append(value)
            return
        first = keys.index(key)
        self._names[first] = spelled
        self._values[first] = value
        for i in range(len(keys) - 1, first, -1):
            if keys[i] == key:
                del keys[i], self._names[i], self._values[i]

    def set_first(self, name: str, value: str) -> None:
        """Replace only the first value of ``name`` (the first element of a list line).

        Used to stamp the top Via with ``received``/``rport`` without touching the others.
        Appends when ``name`` is absent.
        """
        self._memo = None
        _check_field(name, value)
        key, spelled = _resolve(name)
        keys = self._keys
        if key not in keys:
            self.add(name, value)
            return
        index = keys.index(key)
        line = self._values[index]
        if key in _LIST_KEYS and "," in line:
            try:
                parts = split_list(line)
            except SipParseError:
                parts = [line]
            if len(parts) > 1:
                value = ", ".join([value, *parts[1:]])
        self._names[index] = spelled
        self._values[index] = value

    def add(self, name: str, value: str) -> None:
        """Append one header line."""
        self._memo = None
        _check_field(name, value)
        key, spelled = _resolve(name)
        self._keys.append(key)
        self._names.append(spelled)
        self._values.append(value)

    def prepend(self, name: str, value: str) -> None:
        """Insert before the first line of ``name`` (or at the very top if there is none)."""
        self._memo = None
        _check_field(name, value)
        key, spelled = _resolve(name)
        index = self._keys.index(key) if key in self._keys else 0
        self._keys.insert(index, key)
        self._names.insert(index, spelled)
        self._values.insert(index, value)

    def remove(self, name: str) -> None:
        """Remove every line of ``name``."""
        self._memo = None
        key = _key(name)
        keep = [i for i, k in enumerate(self._keys) if k != key]
        if len(keep) == len(self._keys):
            return
        self._keys = [self._keys[i] for i in keep]
        self._names = [self._names[i] for i in keep]
        self._values = [self._values[i] for i in keep]

    def items(self) -> list[tuple[str, str]]:
        return list(zip(self._names, self._values, strict=True))

    def copy(self) -> Headers:
        return Headers._trusted(list(self._keys), list(self._names), list(self._values))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key(name) in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._keys == other._keys and self._values == other._values

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

    def _serialize_into(self, lines: list[str]) -> None:
        for key, name, value in zip(self._keys, self._names, self._values, strict=True):
            # Content-Length is always recomputed from the body by serialize().
            if key != "content-length":
                lines.append(f"{name}: {value}")


def _param_of(header_params: str, name: str) -> str | None:
    # ``header_params`` is ";a=b;c" text; plain split is enough for the token-valued params
    # (tag, branch) we look up here. ``name`` is lower-case. LWS may surround "=" (RFC 3261
    # 25.1: EQUAL = SWS "=" SWS; RFC 4475 3.1.1.1 sends "tag = 98asjd8").
    for item in header_params.split(";"):
        key, equals, value = item.partition("=")
        if equals and key.strip().lower() == name:
            return value.strip()
    return None


@functools.lru_cache(maxsize=4096)
def tag_of(value: str | None) -> str | None:
    """``tag`` parameter of a From/To value, or None (also for unparseable values)."""
    if value is None:
        return None
    try:
        start = addr_params_start(value)
    except SipParseError:
        return None
    if start >= len(value):
        return None
    return _param_of(value[start:], "tag")


@functools.lru_cache(maxsize=4096)
def branch_of(via: str | None) -> str | None:
    """``branch`` parameter of one Via value, or None."""
    if via is None:
        return None
    semi = via.find(";")
    if semi < 0:
        return None
    return _param_of(via[semi:], "branch")


@functools.lru_cache(maxsize=4096)
def parse_cseq(value: str | None) -> tuple[int, str]:
    """(sequence number, method) of a CSeq value; SipParseError if absent or malformed."""
    if value is None:
        raise SipParseError("Missing CSeq header")
    parts = value.split()
    if len(parts) != 2:
        raise SipParseError("Bad CSeq header")
    number, method = parts
    if not (number.isascii() and number.isdigit()) or len(number) > 10 or not is_token(method):
        raise SipParseError("Bad CSeq header")
    sequence = int(number)
    if sequence > _MAX_CSEQ:
        raise SipParseError("Bad CSeq header")
    return sequence, method


class _Message:
    """Read-only conveniences shared by requests and responses."""

    __slots__ = ()

    headers: Headers

    @property
    def call_id(self) -> str:
        """Call-ID value ("" if absent; parsed messages always have one)."""
        return self.headers.get("Call-ID") or ""

    @property
    def cseq(self) -> tuple[int, str]:
        """(sequence number, method); SipParseError if the header is missing or malformed."""
        return parse_cseq(self.headers.get("CSeq"))

    @property
    def via_branch(self) -> str | None:
        """``branch`` of the top Via, or None."""
        return branch_of(self.headers.get("Via"))

    @property
    def from_tag(self) -> str | None:
        return tag_of(self.headers.get("From"))

    @property
    def to_tag(self) -> str | None:
        return tag_of(self.headers.get("To"))


@dataclass(slots=True)
class Request(_Message):
    method: str
    uri: str
    headers: Headers
    body: bytes = b""

    def serialize(self) -> bytes:
        """Wire form; Content-Length is always written and always matches ``body``."""
        lines = [f"{self.method} {self.uri} SIP/2.0"]
        self.headers._serialize_into(lines)
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "\r\n".join(lines).encode() + self.body


@dataclass(slots=True)
class Response(_Message):
    status: int
    reason: str
    headers: Headers
    body: bytes = b""

    def serialize(self) -> bytes:
        """Wire form; Content-Length is always written and always matches ``body``."""
        lines = [f"SIP/2.0 {self.status} {self.reason}"]
        self.headers._serialize_into(lines)
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "\r\n".join(lines).encode() + self.body


# RFC 3261 25.1 absoluteURI / RFC 3986 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")


def _is_scheme(text: str) -> bool:
    # Also refuses a Request-URI enclosed in "<>" (RFC 4475 3.1.2.7).
    return text[0].isascii() and text[0].isalpha() and _SCHEME_CHARS.issuperset(text)


def _split_head(data: bytes) -> tuple[bytes, int]:
    """(header bytes without the blank line, index where the body starts); -1 if no blank line."""
    end = data.find(b"\r\n\r\n")
    best = end
    skip = 4
    # RFC 3261 7.5 lets a peer end lines with bare LF; take whichever blank line comes first.
    lf = data.find(b"\n\n")
    if lf >= 0 and (best < 0 or lf < best):
        best, skip = lf, 2
    mixed = data.find(b"\n\r\n")
    if mixed >= 0 and (best < 0 or mixed < best):
        best, skip = mixed, 3
    if best < 0:
        return data, -1
    head = data[:best]
    if head.endswith(b"\r"):
        head = head[:-1]
    return head, best + skip


def parse_message(data: bytes, *, max_bytes: int = 65_535) -> Request | Response:
    """Parse one SIP message (a UDP datagram, or a frame from :class:`StreamFramer`).

    Raises only :class:`SipParseError`. ``max_bytes`` defaults to the largest UDP payload
    (RFC 3261 18.1.1 leaves the limit to us; 65,535 covers any datagram).
    """
    if len(data) > max_bytes:
        raise SipParseError("Message Too Large", status=513)
    if data[:1] in (b"\r", b"\n"):
        # RFC 3261 7.5: ignore CRLFs before the start line (keep-alives, stream leftovers).
        data = data.lstrip(b"\r\n")
        if not data:
            raise SipParseError("Empty message")
    head_bytes, body_start = _split_head(data)
    head = head_bytes.decode("utf-8", "replace")
    if "\r" in head:
        head = head.replace("\r\n", "\n")
        if "\r" in head:
            raise SipParseError("Bare CR in message header")
    lines = head.split("\n")
    start_line = lines[0]

    error: str | None = None
    status_hint = 400
    is_request = not start_line.startswith("SIP/")
    method: str | None = None
    uri = ""
    status = 0
    reason = ""
    if is_request:
        parts = start_line.split(" ")
        if len(parts) != 3 or not parts[1]:
            error = "Bad Request-Line"
        else:
            method, uri, version = parts
            if method not in _KNOWN_METHODS and not is_token(method):
                error = "Bad Request-Line"
                method = None
            elif version != "SIP/2.0" and version.upper() != "SIP/2.0":
                error = "Version Not Supported"
                status_hint = 505
            else:
                colon = uri.find(":")
                if colon <= 0 or not _is_scheme(uri[:colon]):
                    error = "Bad Request-URI"
    else:
        parts = start_line.split(" ", 2)
        code = parts[1] if len(parts) >= 2 else ""
        if parts[0].upper() != "SIP/2.0":
            error = "Version Not Supported"
        elif len(code) != 3 or not (code.isascii() and code.isdigit()) or code[0] not in "123456":
            error = "Bad Status-Line"
        else:
            status = int(code)
            reason = parts[2] if len(parts) == 3 else ""

    keys: list[str] = []
    names: list[str] = []
    values: list[str] = []
    lookup = _LOOKUP
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            # RFC 3261 7.3.1: a line starting with whitespace continues the previous value,
            # and the folding is equivalent to a single space.
            continuation = line.strip(" \t")
            if not values:
                error = error or "Malformed header line"
            elif continuation:
                previous = values[-1]
                values[-1] = f"{previous} {continuation}" if previous else continuation
            continue
        colon = line.find(":")
        if colon <= 0:
            error = error or "Malformed header line"
            continue
        name = line[:colon]
        hit = lookup.get(name)
        if hit is None:
            name = name.rstrip(" \t")
            hit = lookup.get(name) or lookup.get(name.lower())
            if hit is None:
                if not is_token(name):
                    error = error or "Malformed header line"
                    continue
                hit = (name.lower(), name)
        keys.append(hit[0])
        names.append(hit[1])
        values.append(line[colon + 1 :].strip(" \t"))
    headers = Headers._trusted(keys, names, values)

    def fail(why: str, hint: int = 400) -> SipParseError:
        return SipParseError(
            why, headers=headers, is_request=is_request, method=method, status=hint
        )

    if error is not None:
        raise fail(error, status_hint)
    if body_start < 0:
        raise fail("Missing empty line after headers")
    for key, spelled in _MANDATORY:
        if key not in keys:
            raise fail(f"Missing {spelled} header")
    for key, spelled in _SINGLETONS:
        if keys.count(key) > 1:
            raise fail(f"Multiple {spelled} headers")
    try:
        _, cseq_method = parse_cseq(values[keys.index("cseq")])
    except SipParseError as exc:
        raise fail(exc.reason) from None
    if is_request and cseq_method != method:
        raise fail("CSeq method does not match request method")
    for key, spelled in (("from", "From"), ("to", "To")):
        # A From/To whose quotes or <> never close cannot be echoed with the tag a response
        # adds (RFC 3261 8.2.6.2) or matched to a dialog (RFC 4475 3.1.2.6 sends one).
        try:
            addr_params_start(values[keys.index(key)])
        except SipParseError as exc:
            raise fail(f"Bad {spelled} header: {exc.reason}") from None

    available = len(data) - body_start
    if "content-length" in keys:
        text = values[keys.index("content-length")]
        if keys.count("content-length") > 1 and any(
            v != text for k, v in zip(keys, values, strict=True) if k == "content-length"
        ):
            raise fail("Bad Content-Length header")
        if not (text.isascii() and text.isdigit()) or len(text) > 10:
            raise fail("Bad Content-Length header")
        length = int(text)
        if length > available:
            raise fail("Content-Length larger than message body")
        body = data[body_start : body_start + length] if length < available else data[body_start:]
    else:
        # RFC 3261 18.3/20.14: on a datagram a missing Content-Length means "the rest".
        body = data[body_start:]

    if is_request:
        assert method is not None  # set whenever the Request-Line had no error
        return Request(method, uri, headers, body)
    return Response(status, reason, headers, body)


def _add_tag(to_value: str, tag: str) -> str:
    return f"{to_value};tag={tag}"


# RFC 3261 12.1.1: a UAS copies Record-Route into responses that create a dialog.
_DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to ``request`` per RFC 3261 8.2.6.2.

    Copies every Via line in order, From, To, Call-ID and CSeq; adds ``;tag=to_tag`` to To when
    given and To has no tag yet (an existing tag is kept: in-dialog requests already carry
    ours). For 101-299 responses to dialog-creating methods Record-Route is copied too (12.1.1),
    and a 100 echoes Timestamp (8.2.6.1). ``headers`` are appended after those.
    """
    if not 100 <= status <= 699:
        raise ValueError(f"SIP status {status} out of range")
    keys: list[str] = []
    names: list[str] = []
    values: list[str] = []
    copy_record_route = 100 < status < 300 and request.method in _DIALOG_CREATING
    src = request.headers
    # Two passes keep the RFC order (Via first) whatever order the request used.
    for key, name, value in zip(src._keys, src._names, src._values, strict=True):
        if key == "via":
            keys.append(key)
            names.append(name)
            values.append(value)
    for wanted in ("from", "to", "call-id", "cseq"):
        if wanted in src._keys:
            index = src._keys.index(wanted)
            value = src._values[index]
            if wanted == "to" and to_tag is not None and tag_of(value) is None:
                value = _add_tag(value, to_tag)
            keys.append(wanted)
            names.append(src._names[index])
            values.append(value)
    for key, name, value in zip(src._keys, src._names, src._values, strict=True):
        if (key == "record-route" and copy_record_route) or (key == "timestamp" and status == 100):
            keys.append(key)
            names.append(name)
            values.append(value)
    response_headers = Headers._trusted(keys, names, values)
    for name, value in headers:
        response_headers.add(name, value)
    return Response(
        status, reason_phrase(status) if reason is None else reason, response_headers, body
    )


def make_cancel(request: Request) -> Request:
    """The CANCEL for a client INVITE ``request`` (RFC 3261 9.1).

    Same Request-URI, Call-ID, From, To, CSeq number and Route set, and only the top Via (so the
    CANCEL shares the INVITE's branch and reaches the same server transaction).
    """
    top_via = request.headers.get("Via")
    if top_via is None:
        raise ValueError("request has no Via")
    sequence, _ = request.cseq
    out = Headers()
    out.add("Via", top_via)
    for name in ("From", "To", "Call-ID"):
        value = request.headers.get(name)
        if value is not None:
            out.add(name, value)
    out.add("CSeq", f"{sequence} CANCEL")
    for route in request.headers.lines("Route"):
        out.add("Route", route)
    out.add("Max-Forwards", "70")
    return Request("CANCEL", request.uri, out)


def _safe_reason(reason: str) -> str:
    cleaned = "".join(ch for ch in reason if " " <= ch <= "~")
    return cleaned[:100] or "Bad Request"


def make_bad_request_reply(
    error: SipParseError, random_hex: RandomHex = secrets.token_hex
) -> bytes | None:
    """Bytes of a 400 (or 505/513, per ``error.status``) answering a broken request, or None.

    None when the input was a response or an ACK (neither is answered), or when Via, From, To,
    Call-ID or a parseable CSeq did not survive: without them the sender could not match it.
    """
    if error.is_request is not True or error.headers is None or error.method == "ACK":
        return None
    src = error.headers
    try:
        vias = src.lines("Via")
        from_value = src.get("From")
        to_value = src.get("To")
        call_id = src.get("Call-ID")
        cseq = src.get("CSeq")
        if not vias or from_value is None or to_value is None or not call_id or not cseq:
            return None
        # The reply must itself parse: an unusable From, To or CSeq means no reply (the peer
        # could not match it to its transaction anyway).
        addr_params_start(from_value)
        addr_params_start(to_value)
        parse_cseq(cseq)
        if tag_of(to_value) is None:
            to_value = _add_tag(to_value, new_tag(random_hex))
        headers = Headers()
        for via in vias:
            headers.add("Via", via)
        headers.add("From", from_value)
        headers.add("To", to_value)
        headers.add("Call-ID", call_id)
        headers.add("CSeq", cseq)
        status = error.status if error.status in (400, 505, 513) else 400
        return Response(status, _safe_reason(error.reason), headers).serialize()
    except (SipParseError, ValueError):
        return None


def _stream_content_length(head: bytes) -> int:
    for line in head.split(b"\n"):
        colon = line.find(b":")
        if colon <= 0:
            continue
        name = line[:colon].strip().lower()
        if name == b"content-length" or name == b"l":
            text = line[colon + 1 :].strip()
            if not text.isdigit() or len(text) > 10:
                raise SipParseError("Bad Content-Length header")
            return int(text)
    raise SipParseError("Missing Content-Length header on stream transport")


class StreamFramer:
    """Cuts a TCP byte stream into SIP messages (RFC 3261 18.3: framing by Content-Length).

    CRLFs between messages (RFC 5626 keep-alives) are skipped. Raises SipParseError when the
    stream cannot be framed any more (no Content-Length, oversize message); the caller should
    close the connection since the framing is lost.
    """

    def __init__(self, *, max_bytes: int = 65_535) -> None:
        self._buffer = bytearray()
        self._max_bytes = max_bytes
        # Where to resume looking for the blank line, so trickled input is not rescanned.
        self._scan_from = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        messages: list[bytes] = []
        buffer = self._buffer
        while True:
            leading = 0
            while leading < len(buffer) and buffer[leading] in (13, 10):
                leading += 1
            if leading:
                del buffer[:leading]
                self._scan_from = 0
            if not buffer:
                return messages
            start = max(0, self._scan_from - 3)
            crlf = buffer.find(b"\r\n\r\n", start)
            lf = buffer.find(b"\n\n", start)
            ends = [(pos, skip) for pos, skip in ((crlf, 4), (lf, 2)) if pos >= 0]
            if not ends:
                if len(buffer) > self._max_bytes:
                    raise SipParseError("Message Too Large", status=513)
                self._scan_from = len(buffer)
                return messages
            end, skip = min(ends)
            body_start = end + skip
            length = _stream_content_length(bytes(buffer[:end]))
            total = body_start + length
            if total > self._max_bytes:
                raise SipParseError("Message Too Large", status=513)
            if len(buffer) < total:
                # Header complete, body pending: next feed resumes the same header scan.
                self._scan_from = max(0, end)
                return messages
            messages.append(bytes(buffer[:total]))
            del buffer[:total]
            self._scan_from = 0


RandomHex = Callable[[int], str]
"""``n`` random bytes as hex, like ``secrets.token_hex``: where branches, tags and
Call-IDs come from. Injectable as the clock is (``now``), so a test can make a node's
identifiers repeat from run to run."""


def new_branch(random_hex: RandomHex = secrets.token_hex) -> str:
    """A fresh RFC 3261 branch: magic cookie plus 64 random bits."""
    return MAGIC_COOKIE + random_hex(8)


def new_tag(random_hex: RandomHex = secrets.token_hex) -> str:
    """A fresh From/To tag (RFC 3261 19.3: at least 32 random bits; we use 64)."""
    return random_hex(8)


def new_call_id(random_hex: RandomHex = secrets.token_hex) -> str:
    """A fresh Call-ID: 128 random bits, no host part (nothing about us leaks)."""
    return random_hex(16)
