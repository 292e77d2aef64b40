"""How long this process has run: the ``startup`` phase of the predict stage and of the
benchmarks' own scripts, measured the same way (a module of its own so that a benchmark's
minimal script can import it without the rest of geoensemble)."""

from __future__ import annotations

import os
import time


def process_age() -> float:
    """Seconds since this process started (interpreter start-up, imports and config
    included); 0.0 if the platform cannot tell.

    On Linux from the kernel's own start time of the process (clock ticks since boot, 10 ms)
    against the boot-time clock: psutil's ``create_time`` adds the boot time, which the
    kernel gives in whole seconds, so it could be off by up to a second.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            # the fields after the command name (which may hold spaces) start at its ")"
            fields = f.read().rsplit(b")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:  # psutil missing or no /proc: the phase is optional
        return 0.0
