"""Building the simulator's address space in about half the time.

asyncua instantiates an ObjectType (each alarm condition: ~30 nodes) by browsing the type tree,
and every browse asks, reference by reference, whether a reference type is a subtype of another;
asyncua answers that by walking the reference-type hierarchy each time (more than half a million
calls for the simulator's 12 conditions, over a second of CPU at every start, and the test suite
starts the simulator some hundred times). While our nodes are added the hierarchy of *reference
types* does not change (we add objects, variables, data and object types, never a reference
type), so the answers can be kept for the duration of the build and dropped after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from asyncua import Server


@contextmanager
def reference_subtypes_remembered(server: Server) -> Iterator[None]:
    """Within the block, ``server``'s browse service remembers which reference types are subtypes
    of which; outside it, asyncua's own check runs again (a later change to the hierarchy, e.g. a
    server that adds reference types at run time, is then seen). Does nothing if the asyncua in
    use has no such check (its internals changed): correct, only slower."""
    browser: Any = server.iserver.view_service  # where asyncua answers browse requests
    original = getattr(browser, "_suitable_reftype", None)
    if original is None:
        yield
        return
    answers: dict[tuple[Any, Any, bool], bool] = {}

    def remembered(ref1: Any, ref2: Any, subtypes: bool) -> bool:
        key = (ref1, ref2, subtypes)
        answer = answers.get(key)
        if answer is None:
            answer = answers[key] = original(ref1, ref2, subtypes)
        return answer

    browser._suitable_reftype = remembered
    try:
        yield
    finally:
        del browser._suitable_reftype  # the class's method again
