"""Refuse URLs that would make callmask reach into the operator's own network (SSRF).

Customers give callmask URLs that it later calls or fetches (routing callbacks, status
reports, webhooks, audio files). Unless ``CALLMASK_WEBHOOK_ALLOW_PRIVATE`` is set, such
a URL must not lead to loopback, private (RFC 1918, RFC 4193), link-local (169.254/16,
including cloud metadata endpoints), CGNAT, multicast, unspecified or reserved
addresses.

Two checks, because DNS answers change: ``check_url`` looks at the URL itself (scheme,
literal IPs, ``localhost``) without resolving anything, at configuration time (so a
name that does not resolve yet is accepted) and again before each request;
``check_resolved`` refuses a name if any address it resolves to is not public. The
latter runs inside the HTTP client's resolver (``callmask.outbound``), on the very
addresses the connection is then made to: a second lookup of our own could get a
different answer from a DNS server that changes it between the two (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from callmask.errors import InvalidInput

MAX_URL_LENGTH = 2048


class BlockedAddress(InvalidInput):
    """The URL leads to an address callmask is not allowed to reach."""


# IPv6 prefixes that carry an IPv4 address in their last 32 bits and, where a
# translator or a dual stack exists, reach it: NAT64 (RFC 6052 well-known prefix) and
# the deprecated IPv4-compatible form (RFC 4291, 2.5.5.1). Python counts both "global"
# whatever IPv4 address they embed, so 64:ff9b::a00:1 would pass as 10.0.0.1.
_IPV4_EMBEDDING = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96"))
# RFC 8215 local-use NAT64 prefix: translated inside the operator's own network.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address in _LOCAL_NAT64:
            return False
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in prefix for prefix in _IPV4_EMBEDDING):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            address = embedded
    return address.is_global and not address.is_multicast


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` denotes without DNS, or None for a name.

    Besides dotted quads, the C resolver reads the inet_aton forms "127.1",
    "2130706433", "0x7f.0.0.1" and "0177.0.0.1" as IPv4 literals, so they are literals
    here too: a check that only knows dotted quads lets them reach loopback.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def check_url(url: str, *, allow_private: bool, field: str = "url") -> str:
    """Validate ``url`` as an http(s) URL callmask may call; return it unchanged."""
    if not isinstance(url, str) or not url:
        raise InvalidInput(f"{field} must be a non-empty URL")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"{field} is longer than {MAX_URL_LENGTH} characters")
    # urlsplit silently drops tabs and newlines (WHATWG rules), so it would validate
    # a different URL from the one stored and later requested.
    if any(c.isspace() or not c.isprintable() for c in url):
        raise InvalidInput(f"{field} contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        _port = parts.port  # raises ValueError on a malformed or out-of-range port
    except ValueError as exc:
        raise InvalidInput(f"{field} is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(f"{field} must be an http or https URL")
    host = parts.hostname
    if not host:
        raise InvalidInput(f"{field} has no host")
    if parts.username or parts.password:
        raise InvalidInput(f"{field} must not carry credentials")
    # urlsplit accepts any character in a host ("a b", "x\ty"); inet_aton would even
    # read "127.0.0.1 junk" as 127.0.0.1. Only names and IPv6 literals get past here.
    if ":" not in host and not all(c.isalnum() or c in "-._" for c in host):
        raise InvalidInput(f"{field} has an invalid host ({host!r})")
    if allow_private:
        return url
    # A trailing dot names the same host ("localhost." is localhost).
    name = host.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        raise BlockedAddress(f"{field} points to a loopback host ({host})")
    literal = _literal_address(name)
    if literal is None:
        if ":" in host:
            raise InvalidInput(f"{field} has an invalid host ({host!r})")
        return url
    if not _is_public(literal):
        raise BlockedAddress(f"{field} points to a non-public address ({host})")
    return url


def check_resolved(host: str, addresses: Iterable[str]) -> None:
    """Refuse ``host`` if any of the addresses it resolved to is not public."""
    for text in addresses:
        address = ipaddress.ip_address(text)
        if not _is_public(address):
            raise BlockedAddress(f"{host} resolves to a non-public address ({address})")
