"""Bencode, the dictionary encoding of rtpengine's ng control protocol.

Follows the bencoding of BEP 3 (https://www.bittorrent.org/beps/bep_0003.html): byte
strings ``<length>:<bytes>``, integers ``i<digits>e``, lists ``l...e``, dictionaries
``d...e``. ``encode`` writes dictionary keys sorted by their raw bytes, as BEP 3 requires.
``decode`` accepts keys in any order, because rtpengine does not sort the keys of its
replies (its ng protocol document says so) and a strict decoder rejects every real reply.

Type mapping, decided for the ng protocol where every value we read is text (SDP, tags,
reasons) and nothing is binary:

- ``str`` is encoded as its UTF-8 bytes; ``bytes`` as they are. Decoding returns ``str``
  for every byte string that is valid UTF-8 and ``bytes`` only for one that is not, so a
  round trip turns UTF-8-valid ``bytes`` into ``str``.
- Dictionary keys are ``str`` on both sides; a key that is not UTF-8 is an error.
- ``int`` within the signed 64-bit range (rtpengine parses into ``long long``); ``bool`` is
  refused rather than silently sent as ``i1e``.
- ``list`` and ``tuple`` encode as lists and decode as ``list``; any ``Mapping`` encodes as
  a dictionary and decodes as ``dict``.

Everything that is not well-formed raises ``BencodeError`` (a ``ValueError``), never
another exception: trailing bytes, lengths or integers with leading zeros or ``-0``,
lengths beyond the data, duplicate keys, nesting deeper than ``max_depth`` and input larger
than ``max_size``.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["MAX_DEPTH", "MAX_SIZE", "BencodeError", "BencodeValue", "decode", "encode"]

BencodeValue = str | bytes | int | list["BencodeValue"] | dict[str, "BencodeValue"]

# A UDP datagram carries at most 65,507 bytes of payload (65,535 minus IP and UDP headers),
# so no ng message can be larger; anything bigger is not a message we sent or expect.
MAX_SIZE = 65_535
# ng messages nest four or five levels (query reply: tags -> medias -> streams -> stats);
# 64 leaves ample room while keeping recursion far below Python's limit.
MAX_DEPTH = 64

_INT_MIN = -(2**63)
_INT_MAX = 2**63 - 1
# "-9223372036854775808" is 20 characters: no valid integer is longer.
_INT_MAX_DIGITS = 20
# A length prefix never needs more digits than MAX_SIZE has; longer ones are garbage.
_LENGTH_MAX_DIGITS = 10

_DIGITS = frozenset(b"0123456789")


class BencodeError(ValueError):
    """Input that cannot be encoded, or bytes that are not one well-formed bencoded value."""


def encode(value: object) -> bytes:
    """Encode ``value`` (str, bytes, int, list/tuple, Mapping with str keys) as bencode."""
    out: list[bytes] = []
    _encode_into(value, out, 0)
    return b"".join(out)


def _encode_into(value: object, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BencodeError(f"nesting deeper than {MAX_DEPTH}")
    # bool is a subclass of int: check it first so True never becomes i1e by accident.
    if isinstance(value, bool):
        raise BencodeError("bool has no bencode form; send an int or a string")
    if isinstance(value, str):
        raw = _utf8(value)
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise BencodeError(f"integer {value} outside the signed 64-bit range")
        out.append(b"i%de" % value)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode_into(item, out, depth + 1)
        out.append(b"e")
    elif isinstance(value, Mapping):
        keyed: list[tuple[bytes, object]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise BencodeError(f"dictionary key {key!r} is not a str")
            keyed.append((_utf8(key), item))
        # BEP 3: keys sorted as raw byte strings, not as Unicode code points.
        keyed.sort(key=lambda pair: pair[0])
        out.append(b"d")
        for raw_key, item in keyed:
            out.append(b"%d:" % len(raw_key))
            out.append(raw_key)
            _encode_into(item, out, depth + 1)
        out.append(b"e")
    else:
        raise BencodeError(f"cannot bencode a {type(value).__name__}")


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8", "strict")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise BencodeError(f"string is not encodable as UTF-8: {exc.reason}") from exc


def decode(data: bytes, *, max_size: int = MAX_SIZE, max_depth: int = MAX_DEPTH) -> BencodeValue:
    """Decode exactly one bencoded value filling all of ``data``.

    Dictionary keys may come in any order (rtpengine does not sort them); a key that
    appears twice is an error because its meaning would be ambiguous.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BencodeError(f"cannot decode a {type(data).__name__}; bytes expected")
    raw = bytes(data)
    if len(raw) > max_size:
        raise BencodeError(f"input of {len(raw)} bytes exceeds the limit of {max_size}")
    if not raw:
        raise BencodeError("empty input")
    value, end = _value(raw, 0, 0, max_depth)
    if end != len(raw):
        raise BencodeError(f"{len(raw) - end} trailing bytes after the value")
    return value


# The decoder is plain functions passing (value, next offset) along: every ng reply
# (offer, answer, the statistics of a delete) goes through it on the event loop, and
# attribute lookups on a decoder object cost a third of the time.


def _value(data: bytes, pos: int, depth: int, max_depth: int) -> tuple[BencodeValue, int]:
    if depth > max_depth:
        raise BencodeError(f"nesting deeper than {max_depth}")
    if pos >= len(data):
        raise BencodeError("input ends where a value was expected")
    lead = data[pos]
    if lead == 0x64:  # b"d"
        pos += 1
        mapping: dict[str, BencodeValue] = {}
        while True:
            if pos >= len(data):
                raise BencodeError("input ends inside a list or dictionary")
            lead = data[pos]
            if lead == 0x65:  # b"e"
                return mapping, pos + 1
            if lead not in _DIGITS:
                raise BencodeError(f"dictionary key at offset {pos} is not a string")
            key_start = pos
            key, pos = _string(data, pos)
            if not isinstance(key, str):
                raise BencodeError(f"dictionary key at offset {key_start} is not UTF-8")
            if key in mapping:
                raise BencodeError(f"dictionary key {key!r} appears twice")
            mapping[key], pos = _value(data, pos, depth + 1, max_depth)
    if lead in _DIGITS:
        return _string(data, pos)
    if lead == 0x69:  # b"i"
        return _integer(data, pos)
    if lead == 0x6C:  # b"l"
        pos += 1
        items: list[BencodeValue] = []
        while True:
            if pos >= len(data):
                raise BencodeError("input ends inside a list or dictionary")
            if data[pos] == 0x65:
                return items, pos + 1
            item, pos = _value(data, pos, depth + 1, max_depth)
            items.append(item)
    raise BencodeError(f"unexpected byte {bytes([lead])!r} at offset {pos}")


def _integer(data: bytes, pos: int) -> tuple[int, int]:
    start = pos + 1
    end = data.find(b"e", start, start + _INT_MAX_DIGITS + 1)
    if end < 0:
        raise BencodeError(f"unterminated or overlong integer at offset {pos}")
    digits = data[start:end]
    unsigned = digits[1:] if digits.startswith(b"-") else digits
    # bytes.isdigit: ASCII digits only, and False for b"".
    if not unsigned.isdigit():
        raise BencodeError(f"malformed integer {digits!r} at offset {pos}")
    # BEP 3: "i-0e" is invalid, and so is any leading zero except in "i0e" itself.
    if unsigned[0] == 0x30 and (len(unsigned) > 1 or digits.startswith(b"-")):
        raise BencodeError(f"integer {digits!r} has a leading zero")
    number = int(digits)
    if not _INT_MIN <= number <= _INT_MAX:
        raise BencodeError(f"integer {digits!r} outside the signed 64-bit range")
    return number, end + 1


def _string(data: bytes, pos: int) -> tuple[str | bytes, int]:
    colon = data.find(b":", pos, pos + _LENGTH_MAX_DIGITS + 1)
    if colon < 0:
        raise BencodeError(f"string length at offset {pos} has no ':'")
    digits = data[pos:colon]
    if not digits.isdigit():
        raise BencodeError(f"malformed string length {digits!r} at offset {pos}")
    if digits[0] == 0x30 and len(digits) > 1:
        raise BencodeError(f"string length {digits!r} has a leading zero")
    start = colon + 1
    end = start + int(digits)
    if end > len(data):
        raise BencodeError(
            f"string at offset {pos} claims {int(digits)} bytes, {len(data) - start} remain"
        )
    raw = data[start:end]
    try:
        return raw.decode("utf-8", "strict"), end
    except UnicodeDecodeError:
        return raw, end
