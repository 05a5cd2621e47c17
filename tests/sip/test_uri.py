"""URIs, name-addr and Via values (RFC 3261 19.1, 20.10, 20.42; RFC 3581; RFC 5118)."""

from __future__ import annotations

import pytest

from callmask.sip.message import SipParseError
from callmask.sip.uri import NameAddr, SipUri, Via


def test_a_full_sip_uri_parses_into_its_parts() -> None:
    uri = SipUri.parse("sip:+4930555000:secret@trunk.example.net:5080;user=phone;lr?Subject=hi")

    assert uri.scheme == "sip"
    assert uri.user == "+4930555000"
    assert uri.password == "secret"
    assert uri.host == "trunk.example.net"
    assert uri.port == 5080
    assert uri.params == (("user", "phone"), ("lr", None))
    assert uri.headers == (("Subject", "hi"),)
    assert uri.param("USER") == "phone"
    assert uri.param("lr") == ""
    assert uri.param("transport") is None
    assert str(uri) == "sip:+4930555000:secret@trunk.example.net:5080;user=phone;lr?Subject=hi"


def test_user_parts_may_carry_semicolons_and_escapes() -> None:
    uri = SipUri.parse("sip:+1555;npdi;rn=+1666@gw.example;user=phone")
    assert uri.user == "+1555;npdi;rn=+1666"
    assert uri.params == (("user", "phone"),)

    escaped = SipUri.parse("sip:%61lice@example.com")
    assert escaped.user == "%61lice"
    assert str(escaped) == "sip:%61lice@example.com"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:alice@[2001:db8::10]:5070", "2001:db8::10", 5070),
        ("sips:[2001:db8::10]", "2001:db8::10", None),
        ("sip:bob@192.0.2.4", "192.0.2.4", None),
    ],
)
def test_ip_hosts_including_ipv6_references(text: str, host: str, port: int | None) -> None:
    uri = SipUri.parse(text)
    assert (uri.host, uri.port) == (host, port)
    assert str(uri) == text


def test_address_defaults_the_port_by_scheme() -> None:
    assert SipUri.parse("sip:[2001:db8::1]").address() == ("2001:db8::1", 5060)
    assert SipUri.parse("sips:a@example.com").address() == ("example.com", 5061)


def test_tel_uris_keep_the_number_in_user() -> None:
    uri = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+1-201-555-0123", "")
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


@pytest.mark.parametrize(
    "text",
    [
        "http://example.com",
        "sip:",
        "sip:@example.com",
        "sip:alice@",
        "sip:alice@example.com:99999",
        "sip:alice@exa mple.com",
        "sip:alice@[2001:db8::1",
        "sip:alice@<example.com>",
        "sip:alice@example.com;=x",
        "nocolon",
    ],
)
def test_malformed_uris_raise_sip_parse_error(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


def test_uri_builders_return_new_values() -> None:
    uri = SipUri.parse("sip:alice@example.com")
    changed = uri.with_user("+4930555000").with_param("user", "phone").with_host("[::1]", 5080)

    assert str(changed) == "sip:+4930555000@[::1]:5080;user=phone"
    assert str(changed.without_param("user").with_user(None)) == "sip:[::1]:5080"
    assert str(uri) == "sip:alice@example.com"
    with pytest.raises(ValueError):
        uri.with_user("bad user")


def test_name_addr_with_quoted_display_name_holding_commas_and_escaped_quotes() -> None:
    value = NameAddr.parse('"Smith, John \\"JJ\\"" <sip:jj@example.com;transport=tcp>;tag=8a;x=y')

    assert value.display_name == 'Smith, John "JJ"'
    assert value.uri.param("transport") == "tcp"
    assert value.tag == "8a"
    assert value.param("x") == "y"
    assert str(value) == '"Smith, John \\"JJ\\"" <sip:jj@example.com;transport=tcp>;tag=8a;x=y'
    assert NameAddr.parse(str(value)) == value


def test_name_addr_token_display_name_and_bare_addr_spec() -> None:
    named = NameAddr.parse("Alice   Smith <sip:alice@example.com>")
    assert named.display_name == "Alice Smith"

    # In the bare form the parameters after the URI belong to the header, not the URI.
    bare = NameAddr.parse("sip:bob@example.com;tag=77")
    assert bare.display_name is None
    assert bare.uri == SipUri.parse("sip:bob@example.com")
    assert bare.tag == "77"
    assert str(bare) == "<sip:bob@example.com>;tag=77"


def test_bare_contact_with_a_quoted_instance_parameter() -> None:
    value = NameAddr.parse('sip:ua@192.0.2.9;+sip.instance="<urn:uuid:00000000-0000>";expires=60')
    assert value.uri.host == "192.0.2.9"
    assert value.param("+sip.instance") == '"<urn:uuid:00000000-0000>"'
    assert value.param("expires") == "60"


def test_with_tag_replaces_or_adds_the_tag() -> None:
    value = NameAddr.parse("<sip:bob@example.com>")
    assert str(value.with_tag("1")) == "<sip:bob@example.com>;tag=1"
    assert value.with_tag("1").with_tag("2").tag == "2"
    assert value.with_tag("1").without_tag() == value


@pytest.mark.parametrize(
    "text", ['"unterminated <sip:a@b>', '"x" sip:a@b', "<sip:a@b", "<sip:a@b> junk", ""]
)
def test_malformed_name_addr_raises(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


def test_via_parses_with_spaces_around_slashes_and_ipv6_sent_by() -> None:
    via = Via.parse("SIP / 2.0 / udp [2001:db8::9]:5062 ;branch=z9hG4bKx ;rport")

    assert (via.transport, via.host, via.port) == ("UDP", "2001:db8::9", 5062)
    assert via.branch == "z9hG4bKx"
    assert via.has_rport and via.rport is None
    assert str(via) == "SIP/2.0/UDP [2001:db8::9]:5062;branch=z9hG4bKx;rport"
    assert via.sent_by == "[2001:db8::9]:5062"


@pytest.mark.parametrize(
    "text", ["SIP/2.0 host", "SIP/3.0/UDP host", "SIP/2.0/UDP", "SIP/2.0/UDP host:port", "x/y/z h"]
)
def test_malformed_via_raises(text: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(text)


def test_response_address_follows_rfc3261_18_2_2_and_rfc3581() -> None:
    source = ("198.51.100.1", 40000)
    # No received: the host in sent-by with its port.
    assert Via.parse("SIP/2.0/UDP 192.0.2.4:5070;branch=z9hG4bK1").response_address(source) == (
        "192.0.2.4",
        5070,
    )
    # received: that address, sent-by port (default 5060).
    assert Via.parse("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;received=198.51.100.1").response_address(
        source
    ) == ("198.51.100.1", 5060)
    # rport filled in by us: back to the exact source port (NAT).
    assert Via.parse(
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=40000;received=198.51.100.1"
    ).response_address(source) == ("198.51.100.1", 40000)
    # rport requested but not stamped yet: the packet's source.
    assert Via.parse("SIP/2.0/UDP 10.0.0.1;rport;branch=z9hG4bK1").response_address(source) == (
        source
    )
    # maddr wins.
    assert Via.parse("SIP/2.0/UDP 10.0.0.1;maddr=[2001:db8::2];branch=z9hG4bK1").response_address(
        source
    ) == ("2001:db8::2", 5060)
    # A hostname nobody stamped: no DNS here, the source IP with the sent-by port.
    assert Via.parse("SIP/2.0/TLS pbx.example.com;branch=z9hG4bK1").response_address(source) == (
        "198.51.100.1",
        5061,
    )


def test_via_with_param_stamps_received() -> None:
    via = Via.parse("SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1")
    stamped = via.with_param("received", "192.0.2.1")
    assert str(stamped) == "SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1;received=192.0.2.1"
    assert stamped.received == "192.0.2.1"
