"""The SSRF guard on customer-given URLs (callback, status, webhook, audio URLs)."""

from __future__ import annotations

import pytest

from callmask.errors import InvalidInput
from callmask.netguard import BlockedAddress, check_resolved, check_url

# Addresses a customer must not make callmask call, in every spelling the C resolver
# understands: loopback, RFC 1918, link-local (cloud metadata), CGNAT, unspecified,
# IPv6 loopback, ULA and link-local, IPv4-mapped loopback.
NON_PUBLIC_URLS = [
    "http://127.0.0.1/callback",
    "http://127.0.0.1:8080/callback",
    "http://127.255.255.254/",
    "http://10.0.0.1/",
    "http://10.255.255.255/",
    "http://172.16.0.1/",
    "http://192.168.1.10/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://[::1]/",
    "http://[::1]:8080/status",
    "http://[::]/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",  # 169.254.169.254, IPv4-mapped
    "http://224.0.0.1/",
    # IPv6 forms that embed a private IPv4 address a translator would reach.
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
    "http://[64:ff9b:1::808:808]/",  # RFC 8215 local-use NAT64 prefix
    "http://[::7f00:1]/",  # IPv4-compatible 127.0.0.1
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    # inet_aton forms: the resolver reads each of these as 127.0.0.1 (or 0.0.0.0).
    "http://2130706433/",
    "http://127.1/",
    "http://0x7f.0.0.1/",
    "http://0177.0.0.1/",
    "http://0x7f000001/",
    "http://0/",
    "http://167772161/",  # 10.0.0.1
]

LOOPBACK_NAMES = [
    "http://localhost/",
    "http://LOCALHOST:8080/x",
    "http://localhost./x",
    "http://api.localhost/x",
]

NOT_URLS = [
    "",
    "client.server/1/callback",
    "not a url",
    "ftp://client.server/audio.mp3",
    "file:///etc/passwd",
    "gopher://client.server/",
    "javascript:alert(1)",
    "http://",
    "http:///callback",
    "http://client.server:99999/",
    "http://client.server:port/",
    "http://user:secret@client.server/",
    "http://a b/",
    "http://client\tserver/",
    "http://" + "a" * 2100 + ".example/",
]


@pytest.mark.parametrize("url", NON_PUBLIC_URLS)
def test_a_customer_cannot_point_callmask_at_a_non_public_address(url: str) -> None:
    with pytest.raises(BlockedAddress, match="non-public"):
        check_url(url, allow_private=False, field="callbackUrl")


@pytest.mark.parametrize("url", LOOPBACK_NAMES)
def test_a_customer_cannot_point_callmask_at_localhost_by_name(url: str) -> None:
    with pytest.raises(BlockedAddress, match="loopback"):
        check_url(url, allow_private=False, field="callbackUrl")


@pytest.mark.parametrize("url", NOT_URLS)
def test_a_value_that_is_not_an_http_url_is_refused_even_when_private_is_allowed(
    url: str,
) -> None:
    for allow_private in (False, True):
        with pytest.raises(InvalidInput) as caught:
            check_url(url, allow_private=allow_private, field="statusUrl")
        assert not isinstance(caught.value, BlockedAddress)
        assert "statusUrl" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://client.server/1/callback",
        "https://client.server:8443/1/status?x=1",
        "http://93.184.216.34/callback",
        "http://[2606:2800:220:1:248:1893:25c8:1946]/x",
        "https://bücher.example/x",
        "http://8.8.8.8./x",
        "http://[64:ff9b::808:808]/x",  # NAT64 of a public address
    ],
)
def test_public_urls_and_unresolved_names_are_accepted_unchanged(url: str) -> None:
    assert check_url(url, allow_private=False) == url


@pytest.mark.parametrize("url", NON_PUBLIC_URLS + LOOPBACK_NAMES)
def test_the_operator_flag_allows_private_addresses(url: str) -> None:
    assert check_url(url, allow_private=True) == url


# check_url lets names through (DNS changes); check_resolved judges what a name resolves
# to, at connect time (the session's resolver: tests/test_outbound.py).
RESOLVED_NON_PUBLIC = [
    "127.0.0.1",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.10",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "::1",
    "::",
    "fd00::1",
    "fe80::1",
    "::ffff:127.0.0.1",
    "64:ff9b::a00:1",
    "64:ff9b:1::808:808",
    "::7f00:1",
    "2002:7f00:1::",
]


@pytest.mark.parametrize("address", RESOLVED_NON_PUBLIC)
def test_a_name_that_resolves_to_a_non_public_address_is_refused(address: str) -> None:
    with pytest.raises(BlockedAddress, match="resolves to a non-public address"):
        check_resolved("callback.example", ["93.184.216.34", address])


def test_a_name_that_resolves_to_public_addresses_only_is_accepted() -> None:
    check_resolved("callback.example", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
    check_resolved("callback.example", ["64:ff9b::808:808"])  # NAT64 of a public address
