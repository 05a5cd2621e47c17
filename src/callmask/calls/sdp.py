"""SDP as it leaves callmask: nothing in it may identify the other party.

rtpengine replaces the connection and origin addresses with its own, but passes the
origin's user name and the session name and information lines through unchanged
(checked against rtpengine 10.5: its ``username``/``session-name`` options only keep
them stable, and ``origin-full`` is refused). Phones and carriers put numbers and
names there, so every SDP callmask sends is masked here (RFC 4566 5.2-5.6): the origin
user becomes ``-``, the session name ``callmask``, and the i=, u=, e= and p= lines go.
"""

from __future__ import annotations

from callmask.calls.ports import MediaRelay

# Session-level lines that carry free text about the sender (RFC 4566 5.4-5.6).
_IDENTIFYING = ("i=", "u=", "e=", "p=")


def mask(sdp: str) -> str:
    lines = sdp.replace("\r\n", "\n").split("\n")
    masked: list[str] = []
    for line in lines:
        if line.startswith("o="):
            fields = line[2:].split(" ")
            if len(fields) == 6:
                fields[0] = "-"
                line = "o=" + " ".join(fields)
        elif line.startswith("s="):
            line = "s=callmask"
        elif line.startswith(_IDENTIFYING):
            continue
        masked.append(line)
    return "\r\n".join(masked)


def audio_endpoint(sdp: str) -> tuple[str, int] | None:
    """The connection address and port of the first audio stream (for comparisons)."""
    address = ""
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("c=") and not address:
            address = line.rsplit(" ", 1)[-1]
        elif line.startswith("m=audio "):
            parts = line.split(" ")
            if len(parts) > 1 and parts[1].isdigit():
                return address, int(parts[1])
    return None


class MaskedMedia:
    """The media relay with every SDP it hands out masked."""

    def __init__(self, relay: MediaRelay) -> None:
        self.relay = relay

    async def offer(self, call_id: str, from_tag: str, sdp: str) -> str:
        return mask(await self.relay.offer(call_id, from_tag, sdp))

    async def answer(self, call_id: str, from_tag: str, to_tag: str, sdp: str) -> str:
        return mask(await self.relay.answer(call_id, from_tag, to_tag, sdp))

    async def delete(self, call_id: str, from_tag: str | None = None) -> dict[str, object]:
        return await self.relay.delete(call_id, from_tag)

    async def play_media(self, call_id: str, from_tag: str, file: str) -> int:
        return await self.relay.play_media(call_id, from_tag, file)

    async def start_recording(self, call_id: str) -> None:
        await self.relay.start_recording(call_id)

    async def block_media(self, call_id: str) -> None:
        await self.relay.block_media(call_id)

    async def unblock_media(self, call_id: str) -> None:
        await self.relay.unblock_media(call_id)
