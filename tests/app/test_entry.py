"""The stage scripts' entry point: a normal exit, with the heap frozen for it, and an
interrupted exit bounded in time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import atexit, gc, sys, weakref

    out = sys.argv[1]

    class Held:
        pass

    held = Held()
    held.cycle = held  # only a collection could free it

    def report():
        with open(out, "a") as f:
            f.write(f"atexit frozen={gc.get_freeze_count() > 0}\\n")

    atexit.register(report)
    weakref.finalize(held, lambda: open(out, "a").write("finalize\\n"))
    sys.argv = ["geoensemble", *sys.argv[2:]]
    from geoensemble.app import entry

    entry.main()
    """
)


def run_command(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_command_that_succeeds_exits_normally_after_freezing_the_heap(tmp_path: Path) -> None:
    out = tmp_path / "exit.txt"
    proc = run_command(out, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "geoensemble" in proc.stdout  # the help ran
    # atexit handlers and weakref.finalize callbacks still run, after the freeze
    lines = out.read_text().splitlines()
    assert sorted(lines) == ["atexit frozen=True", "finalize"]


def test_a_command_that_fails_exits_2_and_leaves_the_heap_to_the_collector(
    tmp_path: Path,
) -> None:
    """A failed or interrupted stage may leave garbage whose collection releases something
    its exit waits for: no freeze then."""
    out = tmp_path / "exit.txt"
    proc = run_command(out, "nostage")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no stage 'nostage'" in proc.stderr
    assert sorted(out.read_text().splitlines()) == ["atexit frozen=False", "finalize"]


STUCK = textwrap.dedent(
    """
    import sys, threading

    from geoensemble.app import entry

    entry.EXIT_BOUND = float(sys.argv[1])
    stuck = threading.Event()
    # a thread nobody will wake, as one a pool started and lost track of when interrupted
    threading.Thread(target=stuck.wait, name="lost-worker").start()

    def interrupted_stage():
        raise SystemExit(143)  # what run_stage raises after SIGTERM, its runs closed

    with entry._settled_exit():
        interrupted_stage()
    """
)


def test_an_interrupted_exit_that_would_wait_forever_ends_within_the_bound() -> None:
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", STUCK, "1"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 143
    assert time.monotonic() - t0 < 30
    [line] = proc.stderr.splitlines()
    assert "exit still waited after 1 s for thread(s) lost-worker" in line


def test_an_interrupted_exit_is_not_cut_short_while_it_is_under_the_bound() -> None:
    """A stage whose exit is quick exits normally: the bound's thread is a daemon."""
    script = STUCK.replace('threading.Thread(target=stuck.wait, name="lost-worker").start()', "")
    proc = subprocess.run(
        [sys.executable, "-c", script, "30"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 143 and proc.stderr == ""
