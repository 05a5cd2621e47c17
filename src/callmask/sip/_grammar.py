"""Lexical helpers shared by the SIP message, URI and auth parsers (RFC 3261 section 25.1).

Everything here works on already-decoded ``str`` and knows the few rules that make SIP text
awkward to split: quoted strings with backslash escapes (25.1 ``quoted-string``/``quoted-pair``),
``<...>`` around URIs that may themselves contain ``,`` ``;`` and ``?``, and parameters of the form
``;name[=value]``. The single error type of the SIP core, :class:`SipParseError`, lives here so
that every parser can raise it without import cycles; ``callmask.sip.message`` re-exports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callmask.sip.message import Headers

Params = tuple[tuple[str, str | None], ...]

# RFC 3261 25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


class SipParseError(ValueError):
    """Input is not a SIP message (or URI, header value...) we can act on.

    ``headers``/``is_request``/``method`` carry what was understood before the problem so a
    transport can still answer a broken request with ``status`` (400, 505, 513) when it is
    addressable (RFC 3261 21.4.1: the reason phrase should name the syntax problem).
    """

    reason: str
    headers: Headers | None
    is_request: bool | None
    method: str | None
    status: int

    def __init__(
        self,
        reason: str,
        *,
        headers: Headers | None = None,
        is_request: bool | None = None,
        method: str | None = None,
        status: int = 400,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.headers = headers
        self.is_request = is_request
        self.method = method
        self.status = status


def is_token(text: str) -> bool:
    return bool(text) and TOKEN_CHARS.issuperset(text)


def skip_quoted(text: str, start: int) -> int:
    """Index just past the quoted string opening at ``text[start] == '"'``.

    Raises SipParseError when the closing quote is missing; ``\\x`` escapes any character
    (RFC 3261 25.1 quoted-pair).
    """
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    raise SipParseError("Unterminated quoted string")


def unquote(text: str) -> str:
    """Contents of a quoted-string, escapes resolved; ``text`` must start and end with quotes."""
    inner = text[1:-1]
    if "\\" not in inner:
        return inner
    out: list[str] = []
    i = 0
    n = len(inner)
    while i < n:
        ch = inner[i]
        if ch == "\\" and i + 1 < n:
            out.append(inner[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def quote(text: str) -> str:
    """A quoted-string holding ``text`` (backslash and double quote escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_list(value: str, separator: str = ",") -> list[str]:
    """Split a header value at ``separator`` outside quoted strings and ``<...>``.

    Empty elements are dropped (tolerating ``a, , b``); elements are stripped of whitespace.
    Raises SipParseError for an unterminated quoted string.
    """
    if separator not in value:
        stripped = value.strip()
        return [stripped] if stripped else []
    if '"' not in value and "<" not in value:
        return [part for part in (p.strip() for p in value.split(separator)) if part]
    parts: list[str] = []
    start = 0
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == '"':
            i = skip_quoted(value, i)
            continue
        if ch == "<":
            close = value.find(">", i + 1)
            if close < 0:
                raise SipParseError("Unterminated <")
            i = close + 1
            continue
        if ch == separator:
            part = value[start:i].strip()
            if part:
                parts.append(part)
            start = i + 1
        i += 1
    part = value[start:].strip()
    if part:
        parts.append(part)
    return parts


def parse_params(text: str) -> Params:
    """Parse ``;name[=value]`` pairs (the leading ``;`` optional).

    Names and values are stripped of surrounding whitespace; a quoted value keeps its quotes so
    the text round-trips (``+sip.instance="<urn:uuid:...>"``). Raises SipParseError on a name that
    is not a token.
    """
    out: list[tuple[str, str | None]] = []
    for item in split_list(text, ";"):
        eq = item.find("=")
        if eq < 0:
            name = item
            value: str | None = None
        else:
            name = item[:eq].rstrip()
            value = item[eq + 1 :].lstrip()
        if not is_token(name):
            raise SipParseError("Bad parameter name")
        if value is not None and value.startswith('"') and skip_quoted(value, 0) != len(value):
            raise SipParseError("Bad quoted parameter value")
        out.append((name, value))
    return tuple(out)


def format_params(params: Params) -> str:
    return "".join(f";{name}" if value is None else f";{name}={value}" for name, value in params)


def find_param(params: Params, name: str) -> str | None:
    """Value of the first parameter called ``name`` (case-insensitive); ``""`` for a bare flag."""
    lowered = name.lower()
    for key, value in params:
        if key.lower() == lowered:
            return "" if value is None else value
    return None


def has_param(params: Params, name: str) -> bool:
    lowered = name.lower()
    return any(key.lower() == lowered for key, _ in params)


def replace_param(params: Params, name: str, value: str | None) -> Params:
    """``params`` with ``name`` set to ``value`` (replacing the first occurrence, else appended)."""
    lowered = name.lower()
    out: list[tuple[str, str | None]] = []
    done = False
    for key, old in params:
        if key.lower() == lowered:
            if not done:
                out.append((key, value))
                done = True
            continue
        out.append((key, old))
    if not done:
        out.append((name, value))
    return tuple(out)


def remove_param(params: Params, name: str) -> Params:
    lowered = name.lower()
    return tuple((key, value) for key, value in params if key.lower() != lowered)


def addr_params_start(value: str) -> int:
    """Index where the header parameters of a name-addr / addr-spec value begin (or len).

    ``"A, B" <sip:a@b;uri-param>;tag=1`` -> index of ``;tag``; for a bare addr-spec the first
    ``;`` ends the URI (RFC 3261 20.10: a URI with ``;`` must be in angle brackets).
    Raises SipParseError on unbalanced quotes or brackets.
    """
    i = 0
    n = len(value)
    while i < n and value[i] in " \t":
        i += 1
    if i < n and value[i] == '"':
        i = skip_quoted(value, i)
    lt = value.find("<", i)
    semi = value.find(";", i)
    # A display name cannot hold ";" unquoted, so a "<" after the first ";" belongs to a
    # parameter of a bare addr-spec (e.g. +sip.instance="<urn:...>"), not to a name-addr.
    if lt >= 0 and (semi < 0 or lt < semi):
        gt = value.find(">", lt + 1)
        if gt < 0:
            raise SipParseError("Unterminated <")
        return gt + 1
    return n if semi < 0 else semi
