"""Flat memory over months of sessions: a bound on glibc's malloc arenas.

Every session starts capture threads, and glibc gives threads their own malloc arenas
(up to 8 per core). Frames decoded in those threads warm one arena after another, so
RSS creeps up for hundreds of sessions before it levels off (measured with
bench/engine_memory.py: a few MB over 200 sessions, flat with two arenas). Two arenas
(glibc's M_ARENA_MAX) keep it flat at no measurable cost for a handful of threads.
A MALLOC_ARENA_MAX set in the environment wins; other C libraries are left alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_ARENA_MAX = -8  # glibc's <malloc.h>
ARENAS = 2


def bound_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Ask glibc for at most `arenas` malloc arenas; True when it was applied."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt arenas)
        return False
    return bool(mallopt(M_ARENA_MAX, int(arenas)))
