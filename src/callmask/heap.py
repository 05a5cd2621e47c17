"""The garbage collector, set for a process that relays calls.

CPython's cyclic collector stops the whole process while it runs, and a full
(generation 2) collection walks every object that survived earlier ones. Everything
alive once the node has started (modules, classes, the app, the ORM's mappers) is
never garbage, so ``gc.freeze()`` moves it out of the collector's sight: no
collection has to walk it again.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect what startup left behind, then freeze the rest (see the module's
    docstring)."""
    gc.collect()
    gc.freeze()
