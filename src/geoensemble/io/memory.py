"""Refuse, before reading, an array that cannot fit in the memory this machine has free.

A whole raster read at once (a truth or label raster) or one block of a scene that is too
large otherwise ends in a ``MemoryError`` (or the kernel's OOM killer) deep inside numpy.
"""

from __future__ import annotations

from geoensemble.errors import InputFileError


def free_bytes() -> int:
    """Memory available to this process now (``psutil``; distributed depends on it)."""
    import psutil

    return int(psutil.virtual_memory().available)


def ensure_fits(nbytes: int, *, what: str, fix: str) -> None:
    """Raise if ``nbytes`` (what a step will hold at once) exceeds the free memory.

    Raises
    ------
    InputFileError
        ``"<what> needs ~N GB of memory, but M GB are free: <fix>"``.
    """
    free = free_bytes()
    if nbytes > free:
        raise InputFileError(
            f"{what} needs ~{nbytes / 1e9:.3g} GB of memory, but {free / 1e9:.3g} GB are "
            f"free: {fix}"
        )
