"""Digest authentication for requests to an upstream trunk (RFC 3261 22, RFC 2617, RFC 7616).

When a trunk answers 401 (WWW-Authenticate) or 407 (Proxy-Authenticate), the UAC parses the
challenge with :meth:`Challenge.parse` (or picks the strongest of several with
:func:`pick_challenge`, RFC 8760) and resends the request with an Authorization /
Proxy-Authorization value from :func:`authorization`. MD5 and SHA-256 are supported, each also in
its ``-sess`` form, with ``qop=auth``, ``qop=auth-int`` or no qop (RFC 2069 compatibility).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from callmask.sip._grammar import SipParseError, is_token, quote, split_list, unquote

__all__ = ["Challenge", "authorization", "pick_challenge"]

_HASHES: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "MD5": hashlib.md5,
    "MD5-SESS": hashlib.md5,
    "SHA-256": hashlib.sha256,
    "SHA-256-SESS": hashlib.sha256,
}
# RFC 8760 / RFC 7616 3.7: prefer the strongest algorithm a server offers.
_PREFERENCE = ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS")


def _auth_params(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in split_list(text, ","):
        eq = item.find("=")
        if eq <= 0:
            raise SipParseError("Bad auth parameter")
        name = item[:eq].strip().lower()
        value = item[eq + 1 :].strip()
        if not is_token(name):
            raise SipParseError("Bad auth parameter")
        if value.startswith('"'):
            if len(value) < 2 or not value.endswith('"'):
                raise SipParseError("Bad quoted auth parameter")
            value = unquote(value)
        params.setdefault(name, value)
    return params


@dataclass(frozen=True, slots=True)
class Challenge:
    """One Digest challenge from WWW-Authenticate or Proxy-Authenticate."""

    realm: str
    nonce: str
    algorithm: str
    qop: tuple[str, ...]
    opaque: str | None
    stale: bool

    @classmethod
    def parse(cls, header_value: str) -> Challenge:
        """Parse ``Digest realm="...", nonce="...", ...``; SipParseError for anything else."""
        text = header_value.strip()
        fields = text.split(None, 1)
        if len(fields) != 2 or fields[0].lower() != "digest":
            raise SipParseError("Not a Digest challenge")
        params = _auth_params(fields[1])
        realm = params.get("realm")
        nonce = params.get("nonce")
        if realm is None or nonce is None:
            raise SipParseError("Digest challenge without realm or nonce")
        qop = tuple(part.strip() for part in params.get("qop", "").split(",") if part.strip())
        return cls(
            realm=realm,
            nonce=nonce,
            algorithm=params.get("algorithm", "MD5"),
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
        )

    @property
    def is_supported(self) -> bool:
        """True when :func:`authorization` can answer this challenge."""
        if self.algorithm.upper() not in _HASHES:
            return False
        return not self.qop or "auth" in self.qop or "auth-int" in self.qop


def pick_challenge(header_values: Iterable[str]) -> Challenge | None:
    """The strongest supported Digest challenge among several header values, or None."""
    usable: list[Challenge] = []
    for value in header_values:
        try:
            challenge = Challenge.parse(value)
        except SipParseError:
            continue
        if challenge.is_supported:
            usable.append(challenge)
    if not usable:
        return None
    return min(usable, key=lambda c: _PREFERENCE.index(c.algorithm.upper()))


def authorization(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The Authorization (or Proxy-Authorization) header value answering ``challenge``.

    ``uri`` is the Request-URI as sent; ``body`` only matters for ``qop=auth-int``. Raises
    ValueError for an algorithm or qop we do not implement (see :attr:`Challenge.is_supported`).
    """
    algorithm = challenge.algorithm.upper()
    hash_function = _HASHES.get(algorithm)
    if hash_function is None:
        raise ValueError(f"unsupported digest algorithm {challenge.algorithm!r}")

    def digest(text: str) -> str:
        return hash_function(text.encode()).hexdigest()

    if not challenge.qop:
        qop: str | None = None
    elif "auth" in challenge.qop:
        qop = "auth"
    elif "auth-int" in challenge.qop:
        qop = "auth-int"
    else:
        raise ValueError(f"unsupported qop {challenge.qop!r}")

    realm = challenge.realm
    nonce = challenge.nonce
    ha1 = digest(f"{username}:{realm}:{password}")
    if algorithm.endswith("-SESS"):
        ha1 = digest(f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = digest(f"{method}:{uri}:{hash_function(body).hexdigest()}")
    else:
        ha2 = digest(f"{method}:{uri}")
    nc_text = f"{nc:08x}"
    if qop is None:
        response = digest(f"{ha1}:{nonce}:{ha2}")
    else:
        response = digest(f"{ha1}:{nonce}:{nc_text}:{cnonce}:{qop}:{ha2}")

    parts = [
        f"username={quote(username)}",
        f"realm={quote(realm)}",
        f"nonce={quote(nonce)}",
        f"uri={quote(uri)}",
        f'response="{response}"',
        f"algorithm={challenge.algorithm}",
    ]
    if qop is not None:
        parts += [f"cnonce={quote(cnonce)}", f"qop={qop}", f"nc={nc_text}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)
