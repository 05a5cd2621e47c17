"""callmask's sans-IO SIP core (RFC 3261 and friends): bytes in, bytes out, time as an argument.

``message`` parses and builds messages, ``uri`` URIs / name-addr / Via values, ``transaction``
runs the section 17 state machines with their timers, ``dialog`` keeps section 12 dialog state,
``auth`` answers digest challenges. Nothing here does I/O, reads a clock or imports the rest of
callmask; the asyncio transports and the B2BUA drive it.
"""
