"""SciPy's docstring notes skipped in a stage script (:mod:`geoensemble.app.docnotes`):
the functions compute the same values, their docstrings keep their own text, and a process
that never imports SciPy does not import it for the hook."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.conftest import tool_env

PROBE = textwrap.dedent(
    """
    import json, sys
    hook = sys.argv[1] == "hook"
    if hook:
        from geoensemble import docnotes
        docnotes.install()
    import numpy as np
    import scipy._lib._array_api as aa
    import scipy.stats
    from geoensemble import docnotes
    print(json.dumps({
        "plain": aa.FunctionDoc is docnotes.PlainDoc,
        "hooked": docnotes._finder in sys.meta_path,
        "zscore": scipy.stats.zscore(np.array([1.0, 2.0, 3.0])).round(4).tolist(),
        "doc": scipy.stats.zscore.__doc__.strip().splitlines()[0],
        "note": "Array API Standard Support" in scipy.stats.zscore.__doc__,
        "decorated": len(aa.xp_capabilities_table),
    }))
    """
)


def probe(mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=120,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_hook_keeps_values_and_docstrings_without_the_notes() -> None:
    plain, hooked = probe("plain"), probe("hook")
    assert plain["plain"] is False and hooked["plain"] is True
    assert hooked["hooked"] is False  # it removed itself once it had acted
    assert hooked["zscore"] == plain["zscore"] == [-1.2247, 0.0, 1.2247]
    assert hooked["doc"] == plain["doc"] == "Compute the z score."
    assert plain["note"] is True and hooked["note"] is False
    # every decorated function is still registered with its capabilities
    assert hooked["decorated"] == plain["decorated"] > 100


def test_hook_imports_nothing_by_itself() -> None:
    code = (
        "import sys; from geoensemble import docnotes; docnotes.install(); "
        "print(sorted(m for m in sys.modules if m.startswith('scipy')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "[]"
