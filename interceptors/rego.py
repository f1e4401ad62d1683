"""regopy (rego-cpp), loaded so that its allocations are freed by the allocator that made them.

`librego_shared.so` carries its own allocator (snmalloc) and exports its
`operator new` / `operator delete`. Whichever C++ library loads first decides
how libstdc++'s own calls to them bind: when gRPC, NumPy or igraph have
loaded libstdc++ before regopy (as they do in the server), libstdc++ keeps
the system allocator while rego-cpp's code uses snmalloc, memory crosses from
one to the other, and every policy evaluation strands what it allocated (up to
1.2 MB per access-request decision, for good).

Making libstdc++ global before regopy loads settles it whatever came first:
rego-cpp's calls to `operator new` then resolve, like everyone else's, to
libstdc++'s, so one allocator serves every C++ library in the process. This
module is the only place that imports regopy (a lint rule says so), and it
does the promotion before the import. `bench/memory_soak.py` and
`tests/test_policy.py` measure the process's memory over thousands of
decisions to keep it that way.
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

#: Whether regopy was imported before this module could settle the allocator.
LOADED_TOO_EARLY = "regopy" in sys.modules


def _share_libstdcxx() -> bool:
    """Put libstdc++ in the process's global symbol scope; False where there is none."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return False
    return True


SHARED_LIBSTDCXX = _share_libstdcxx()
if LOADED_TOO_EARLY:
    logger.warning(
        "regopy was imported before interceptors.rego: policy evaluations may leak memory"
    )

from regopy import Input, Interpreter, RegoError  # noqa: E402 - after the promotion, on purpose

__all__ = ["LOADED_TOO_EARLY", "SHARED_LIBSTDCXX", "Input", "Interpreter", "RegoError"]
