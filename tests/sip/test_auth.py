"""Digest authentication against the RFCs' own worked examples (RFC 2617 3.5, RFC 7616 3.9.1)."""

from __future__ import annotations

import hashlib

import pytest

from callmask.sip.auth import Challenge, authorization, pick_challenge
from callmask.sip.message import SipParseError

RFC2617 = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC7616_SHA256 = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)


def params_of(value: str) -> dict[str, str]:
    assert value.startswith("Digest ")
    out: dict[str, str] = {}
    for part in value[len("Digest ") :].split(", "):
        name, _, raw = part.partition("=")
        out[name] = raw.strip('"')
    return out


def test_rfc2617_worked_example_mufasa() -> None:
    challenge = Challenge.parse(RFC2617)
    assert challenge.realm == "testrealm@host.com"
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.algorithm == "MD5"

    value = authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        cnonce="0a4f113b",
    )

    params = params_of(value)
    assert params["response"] == "6629fae49393a05397450978507c4ef1"
    assert params["qop"] == "auth"
    assert params["nc"] == "00000001"
    assert params["cnonce"] == "0a4f113b"
    assert params["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    assert params["uri"] == "/dir/index.html"


def test_rfc7616_sha256_worked_example() -> None:
    challenge = Challenge.parse(RFC7616_SHA256)
    value = authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )

    params = params_of(value)
    assert params["response"] == (
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )
    assert params["algorithm"] == "SHA-256"


def test_a_trunk_challenge_without_qop_uses_rfc2069_digest() -> None:
    challenge = Challenge.parse('Digest realm="trunk", nonce="abc", stale=true')
    assert challenge.stale and challenge.qop == () and challenge.opaque is None

    value = authorization(
        challenge, method="INVITE", uri="sip:+491@trunk", username="u", password="p", cnonce="x"
    )

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    expected = md5(f"{md5('u:trunk:p')}:abc:{md5('INVITE:sip:+491@trunk')}")
    params = params_of(value)
    assert params["response"] == expected
    assert "qop" not in params and "cnonce" not in params and "nc" not in params


def test_auth_int_hashes_the_body_and_md5_sess_rehashes_ha1() -> None:
    challenge = Challenge.parse('Digest realm="r", nonce="n", qop="auth-int", algorithm=MD5-sess')
    body = b"v=0\r\n"
    value = authorization(
        challenge,
        method="INVITE",
        uri="sip:b@r",
        username="u",
        password="p",
        cnonce="c",
        nc=2,
        body=body,
    )

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{md5('u:r:p')}:n:c")
    ha2 = md5(f"INVITE:sip:b@r:{hashlib.md5(body).hexdigest()}")
    params = params_of(value)
    assert params["response"] == md5(f"{ha1}:n:00000002:c:auth-int:{ha2}")
    assert params["qop"] == "auth-int" and params["nc"] == "00000002"


def test_the_strongest_supported_challenge_is_picked() -> None:
    offered = [
        'Digest realm="r", nonce="1", algorithm=MD5, qop="auth"',
        'Digest realm="r", nonce="2", algorithm=SHA-512-256, qop="auth"',
        'Digest realm="r", nonce="3", algorithm=SHA-256, qop="auth"',
        'Basic realm="r"',
    ]
    picked = pick_challenge(offered)
    assert picked is not None and picked.nonce == "3"
    assert pick_challenge(['Basic realm="r"']) is None
    assert not Challenge.parse(offered[1]).is_supported
    with pytest.raises(ValueError):
        authorization(
            Challenge.parse(offered[1]),
            method="INVITE",
            uri="sip:x",
            username="u",
            password="p",
            cnonce="c",
        )


@pytest.mark.parametrize(
    "value",
    ['Basic realm="x"', "Digest", 'Digest nonce="only"', 'Digest realm="r", nonce="unterminated'],
)
def test_unusable_challenges_raise_sip_parse_error(value: str) -> None:
    with pytest.raises(SipParseError):
        Challenge.parse(value)
