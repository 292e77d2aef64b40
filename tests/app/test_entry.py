"""The stage scripts' entry point: a normal exit, with the heap frozen for it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
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
