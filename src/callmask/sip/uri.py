"""SIP/SIPS/tel URIs, name-addr values and Via values (RFC 3261 19.1, 20.10, 20.42, 25.1; RFC 3966).

Values are immutable and keep their text as given (user parts stay %-escaped, parameter values keep
their quotes), so ``str(X.parse(s))`` reproduces ``s`` up to whitespace and the angle brackets
that name-addr always gets. IPv6 hosts are stored without brackets (ready for a socket address)
and bracketed again when written (RFC 3261 19.1.1, RFC 5118). :meth:`Via.response_address` decides
where a response goes per RFC 3261 18.2.2 and the ``rport`` extension of RFC 3581.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from callmask.sip._grammar import (
    Params,
    SipParseError,
    find_param,
    format_params,
    has_param,
    is_token,
    parse_params,
    quote,
    remove_param,
    replace_param,
    skip_quoted,
    unquote,
)

__all__ = ["NameAddr", "SipUri", "Via", "default_port"]

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
_IPV6_CHARS = frozenset("0123456789abcdefABCDEF:.")
_IPV4_CHARS = frozenset("0123456789.")
# RFC 3261 25.1 user = unreserved / escaped / user-unreserved; "#" is not in the grammar but
# carriers send it in service codes ("*31#"), so it is tolerated.
_USER_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()%&=+$,;?/#"
)
_PASSWORD_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()%&=+$,"
)
# RFC 3966 phone digits, visual separators, and the hex digits of a local number.
_TEL_CHARS = frozenset("0123456789abcdefABCDEF*#+-.()pPwW")
_SCHEMES = frozenset({"sip", "sips", "tel"})


def default_port(scheme_or_transport: str) -> int:
    """5061 for sips/TLS, else 5060 (RFC 3261 19.1.2, 18)."""
    return 5061 if scheme_or_transport.lower() in ("sips", "tls") else 5060


def _parse_port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        raise SipParseError("Bad port")
    port = int(text)
    if port > 65535:
        raise SipParseError("Bad port")
    return port


def _parse_hostport(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        close = text.find("]")
        host = text[1:close] if close > 1 else ""
        if not host or not _IPV6_CHARS.issuperset(host) or ":" not in host:
            raise SipParseError("Bad IPv6 reference")
        after = text[close + 1 :]
        if not after:
            return host, None
        if after[0] != ":":
            raise SipParseError("Bad host")
        return host, _parse_port(after[1:])
    colon = text.find(":")
    if colon >= 0:
        host = text[:colon]
        port: int | None = _parse_port(text[colon + 1 :])
    else:
        host = text
        port = None
    if not host or not _HOST_CHARS.issuperset(host):
        raise SipParseError("Bad host")
    return host, port


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _is_ip_literal(host: str) -> bool:
    return ":" in host or (host.count(".") == 3 and _IPV4_CHARS.issuperset(host))


# A call's From, To, Contact and Via values are parsed again at every message that
# carries them; the parsed values are immutable, so the last few thousand are kept.
PARSE_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class SipUri:
    """A sip:, sips: or tel: URI.

    For ``tel:`` the number is in ``user`` and ``host`` is "" (RFC 3966 has no host part).
    """

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    @functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
    def parse(cls, text: str) -> SipUri:
        """Parse a URI; raises SipParseError (unsupported scheme, bad host/port, junk)."""
        text = text.strip()
        if not text.isascii() or not text.isprintable():
            raise SipParseError("Bad URI")
        for bad in ' <>"':
            if bad in text:
                raise SipParseError("Bad URI")
        colon = text.find(":")
        if colon <= 0:
            raise SipParseError("Bad URI")
        scheme = text[:colon].lower()
        if scheme not in _SCHEMES:
            raise SipParseError("Unsupported URI Scheme")
        rest = text[colon + 1 :]
        if scheme == "tel":
            semi = rest.find(";")
            number = rest if semi < 0 else rest[:semi]
            if not number or not _TEL_CHARS.issuperset(number):
                raise SipParseError("Bad tel URI")
            params = parse_params(rest[semi:]) if semi >= 0 else ()
            return cls("tel", number, None, "", None, params)

        user: str | None = None
        password: str | None = None
        at = rest.find("@")
        if at >= 0:
            userinfo = rest[:at]
            rest = rest[at + 1 :]
            ucolon = userinfo.find(":")
            if ucolon >= 0:
                user, password = userinfo[:ucolon], userinfo[ucolon + 1 :]
                if not _PASSWORD_CHARS.issuperset(password):
                    raise SipParseError("Bad URI password")
            else:
                user = userinfo
            if not user or not _USER_CHARS.issuperset(user):
                raise SipParseError("Bad URI user")

        headers: tuple[tuple[str, str], ...] = ()
        question = rest.find("?")
        if question >= 0:
            headers = _parse_uri_headers(rest[question + 1 :])
            rest = rest[:question]
        semi = rest.find(";")
        if semi >= 0:
            params = parse_params(rest[semi:])
            rest = rest[:semi]
        else:
            params = ()
        host, port = _parse_hostport(rest)
        return cls(scheme, user, password, host, port, params, headers)

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":")
                out.append(self.password)
            out.append("@")
        out.append(_format_host(self.host))
        if self.port is not None:
            out.append(f":{self.port}")
        if self.params:
            out.append(format_params(self.params))
        if self.headers:
            out.append("?")
            out.append("&".join(f"{name}={value}" for name, value in self.headers))
        return "".join(out)

    def param(self, name: str) -> str | None:
        """Value of URI parameter ``name`` (case-insensitive); "" for a flag like ``;lr``."""
        return find_param(self.params, name)

    def has_param(self, name: str) -> bool:
        return has_param(self.params, name)

    def with_user(self, user: str | None) -> SipUri:
        if user is not None and (not user or not _USER_CHARS.issuperset(user)):
            raise ValueError(f"invalid SIP URI user {user!r}")
        password = None if user is None else self.password
        return SipUri(self.scheme, user, password, self.host, self.port, self.params, self.headers)

    def with_host(self, host: str, port: int | None = None) -> SipUri:
        host = _strip_brackets(host)
        return SipUri(self.scheme, self.user, self.password, host, port, self.params, self.headers)

    def with_params(self, params: Iterable[tuple[str, str | None]]) -> SipUri:
        """A copy whose parameters are exactly ``params``."""
        return self._with(tuple(params))

    def with_param(self, name: str, value: str | None = None) -> SipUri:
        """A copy with ``name`` set to ``value`` (None: a flag such as ``lr``)."""
        return self._with(replace_param(self.params, name, value))

    def without_param(self, name: str) -> SipUri:
        return self._with(remove_param(self.params, name))

    def without_headers(self) -> SipUri:
        if not self.headers:
            return self
        return SipUri(self.scheme, self.user, self.password, self.host, self.port, self.params)

    def _with(self, params: Params) -> SipUri:
        # A direct constructor call: dataclasses.replace() costs several times more.
        return SipUri(
            self.scheme, self.user, self.password, self.host, self.port, params, self.headers
        )

    def address(self) -> tuple[str, int]:
        """(host, port) to send to when no DNS is involved: the port defaults per scheme."""
        return self.host, self.port if self.port is not None else default_port(self.scheme)


def _parse_uri_headers(text: str) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for item in text.split("&"):
        eq = item.find("=")
        if eq <= 0:
            raise SipParseError("Bad URI header")
        out.append((item[:eq], item[eq + 1 :]))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """A From/To/Contact/Route/P-Asserted-Identity value: display name, URI, header params."""

    display_name: str | None
    uri: SipUri
    params: Params = ()

    @classmethod
    @functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
    def parse(cls, text: str) -> NameAddr:
        """Parse ``"Name" <uri>;p=v``, ``Name <uri>``, ``<uri>`` or a bare ``uri;p=v``."""
        text = text.strip()
        if not text:
            raise SipParseError("Empty name-addr")
        display: str | None
        if text[0] == '"':
            end = skip_quoted(text, 0)
            display = unquote(text[:end])
            rest = text[end:].lstrip()
            if not rest.startswith("<"):
                raise SipParseError("Expected < after display name")
        else:
            lt = text.find("<")
            semi = text.find(";")
            if lt < 0 or (0 <= semi < lt):
                # addr-spec form: the first ";" ends the URI (RFC 3261 20.10).
                if semi < 0:
                    return cls(None, SipUri.parse(text))
                return cls(None, SipUri.parse(text[:semi]), parse_params(text[semi:]))
            display_text = text[:lt].strip()
            if any(ch in display_text for ch in '<>"'):
                raise SipParseError("Bad display name")
            display = " ".join(display_text.split()) if display_text else None
            rest = text[lt:]
        gt = rest.find(">")
        if gt < 0:
            raise SipParseError("Unterminated <")
        uri = SipUri.parse(rest[1:gt])
        after = rest[gt + 1 :].strip()
        if after and after[0] != ";":
            raise SipParseError("Junk after name-addr")
        return cls(display, uri, parse_params(after) if after else ())

    def __str__(self) -> str:
        prefix = "" if self.display_name is None else quote(self.display_name) + " "
        return f"{prefix}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        value = find_param(self.params, "tag")
        return value or None

    def param(self, name: str) -> str | None:
        return find_param(self.params, name)

    def with_tag(self, tag: str) -> NameAddr:
        if not is_token(tag):
            raise ValueError(f"invalid tag {tag!r}")
        return NameAddr(self.display_name, self.uri, replace_param(self.params, "tag", tag))

    def without_tag(self) -> NameAddr:
        if not self.params:
            return self
        return NameAddr(self.display_name, self.uri, remove_param(self.params, "tag"))

    def with_param(self, name: str, value: str | None = None) -> NameAddr:
        return NameAddr(self.display_name, self.uri, replace_param(self.params, name, value))

    def with_uri(self, uri: SipUri) -> NameAddr:
        return NameAddr(self.display_name, uri, self.params)

    def with_display_name(self, display_name: str | None) -> NameAddr:
        return NameAddr(display_name, self.uri, self.params)


@dataclass(frozen=True, slots=True)
class Via:
    """One Via value: ``SIP/2.0/<transport> <host>[:<port>];params`` (RFC 3261 20.42)."""

    transport: str
    host: str
    port: int | None
    params: Params

    @classmethod
    @functools.lru_cache(maxsize=PARSE_CACHE_SIZE)
    def parse(cls, text: str) -> Via:
        """Parse one Via element (not a comma-separated list); raises SipParseError."""
        parts = text.split("/", 2)
        if len(parts) != 3:
            raise SipParseError("Bad Via header")
        protocol, version, rest = parts
        if protocol.strip().upper() != "SIP" or version.strip() != "2.0":
            raise SipParseError("Bad Via header")
        fields = rest.split(None, 1)
        if len(fields) != 2:
            raise SipParseError("Bad Via header")
        transport, sent_by = fields
        if not is_token(transport):
            raise SipParseError("Bad Via transport")
        semi = sent_by.find(";")
        if semi >= 0:
            params = parse_params(sent_by[semi:])
            sent_by = sent_by[:semi]
        else:
            params = ()
        host, port = _parse_hostport(sent_by.strip())
        return cls(transport.upper(), host, port, params)

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return (
            f"SIP/2.0/{self.transport} {_format_host(self.host)}{port}{format_params(self.params)}"
        )

    @property
    def sent_by(self) -> str:
        """``host[:port]`` as in the header (host bracketed if IPv6)."""
        port = "" if self.port is None else f":{self.port}"
        return f"{_format_host(self.host)}{port}"

    @property
    def branch(self) -> str | None:
        return find_param(self.params, "branch") or None

    @property
    def received(self) -> str | None:
        value = find_param(self.params, "received")
        return _strip_brackets(value) if value else None

    @property
    def rport(self) -> int | None:
        """The port a server filled into ``rport`` (RFC 3581), else None."""
        value = find_param(self.params, "rport")
        if not value or not (value.isascii() and value.isdigit()) or len(value) > 5:
            return None
        port = int(value)
        return port if port <= 65535 else None

    @property
    def has_rport(self) -> bool:
        """True when the ``rport`` parameter is present (filled or not)."""
        return has_param(self.params, "rport")

    def param(self, name: str) -> str | None:
        return find_param(self.params, name)

    def with_param(self, name: str, value: str | None = None) -> Via:
        return Via(self.transport, self.host, self.port, replace_param(self.params, name, value))

    def response_address(self, source: tuple[str, int]) -> tuple[str, int]:
        """Where to send a response to the request that carried this (top) Via over UDP.

        RFC 3261 18.2.2: ``maddr`` first, then ``received`` with the sent-by port; RFC 3581: a
        filled ``rport`` (or an empty one, meaning this Via was not yet stamped) sends to the
        port the request came from. ``source`` is the request's source address. A sent-by
        hostname that was never stamped with ``received`` resolves to the source IP: this
        core does no DNS. For reliable transports the caller reuses the connection instead.
        """
        default = default_port(self.transport)
        maddr = find_param(self.params, "maddr")
        if maddr:
            return _strip_brackets(maddr), self.port or default
        rport = self.rport
        if rport is not None:
            return self.received or source[0], rport
        if self.has_rport:
            return source
        received = self.received
        if received:
            return received, self.port or default
        if _is_ip_literal(self.host):
            return self.host, self.port or default
        return source[0], self.port or default
