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
import gc
import os
import sys

M_ARENA_MAX = -8  # glibc's <malloc.h>
ARENAS = 2


def _glibc_function(name: str):
    """A function of glibc's malloc, or None where the C library is another."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def bound_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Ask glibc for at most `arenas` malloc arenas; True when it was applied."""
    mallopt = _glibc_function("mallopt")
    if mallopt is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(mallopt(M_ARENA_MAX, int(arenas)))


def release_memory() -> None:
    """Hand freed memory back to the system between sessions: collect cycles, then ask
    glibc to trim its arenas (a no-op elsewhere). Call it when nothing waits on it (the
    kiosk does, once the result is on screen)."""
    gc.collect()
    trim = _glibc_function("malloc_trim")
    if trim is not None:
        trim(0)
