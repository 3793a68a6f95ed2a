"""Small performance helpers shared by the client and the server."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a large tree of JSON objects.

    Parsing a page of thousands of documents allocates hundreds of thousands of dicts and lists, which
    triggers collections that re-scan them all and double the parsing time; they can hold no reference
    cycles, so nothing is lost by collecting after. Safe with threads: whichever block exits first
    re-enables the collector if it was enabled when that block began.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
