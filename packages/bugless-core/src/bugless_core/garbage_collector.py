"""How a serving process tunes CPython's cyclic garbage collector, once it listens.

Every bugless service is a long-lived process whose start-up builds a great
deal that lives as long as the process (modules, classes, descriptor pools,
settings, compiled templates, clients, caches), and whose requests allocate
many short-lived container objects (gRPC streams, futures, frames; a web page's
50 issues with their fields and the template's contexts). The gRPC services
(:mod:`bugless_core.grpc`) and the web tier (``bugless_web.server``) call
:func:`settle_garbage_collector` where they start serving; it lives here, in a
module of its own that imports nothing but :mod:`gc`, so a frontend can call
it without importing the gRPC server side.
"""

from __future__ import annotations

import gc

#: Allocations (less deallocations) between two collections of the youngest
#: generation once serving; CPython's default is 700.
GC_YOUNG_THRESHOLD = 5000


def settle_garbage_collector() -> None:
    """Keep the cyclic collector off what startup built; collect the young less often.

    Call it where a service process starts serving, in that process only (not
    where tests start servers inside their own process, whose objects must stay
    collectable). Everything alive then lives as long as the process, yet each
    older-generation collection walked all of it again; ``gc.freeze()`` moves
    it to the permanent generation, which no collection visits. At CPython's
    threshold of 700 the youngest generation was collected several times per
    gRPC call or page, each time walking every in-flight request's objects; at
    :data:`GC_YOUNG_THRESHOLD` that happens a few times less often. perf put the
    collector at ~4.5 % of the API's CPU under GetIssue load, and at ~6 % of the
    web tier's CPU on a list page before (``gc_collect_main`` 4.2 %,
    ``visit_decref`` 1.3 %) and ~2 % after (bench/JOURNAL.md); py-spy cannot see
    it and charges it to whatever allocated at that moment. Nothing is freed
    later than before except cycles that outlive five thousand allocations
    instead of seven hundred.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


__all__ = ["GC_YOUNG_THRESHOLD", "settle_garbage_collector"]
