"""The cyclic garbage collector kept off what a stage script has loaded.

Each full collection walks every object alive. A stage imports millions of them
(scikit-learn, SciPy, pandas, then MLflow and its SQL store) and Python runs several full
collections during those imports, each walking all that came before. In a stage script the
collector is off until the config is loaded and the stage starts, and the objects alive after
each batch of imports are frozen (:func:`gc.freeze`: never walked again). Measured on the
predict stage (K-Means, 2 cores, whole process): 21 Mpx 4.9 s to 4.2-4.4 s with the freezes,
4 Mpx 3.3 s to 3.0 s more with the collector off during the start-up.

Frozen objects are never collected. That is only right in a process that ends with its task:
a stage script (:func:`geoensemble.app.cli.run_then_exit`), the predict run's MLflow helper
(:mod:`geoensemble.tracking.runbook`: MLflow's imports took 1.7 s of CPU with the collector
on, 1.0 s off) and the LocalCluster workers' fork server (:mod:`geoensemble.forkserver`,
whose children settle as they are forked). In a notebook or the tests nothing changes.
"""

from __future__ import annotations

import gc

_script = False


def script_mode() -> None:
    """This process ends with its task: no collection until :func:`settle`, which may freeze
    the heap."""
    global _script
    _script = True
    gc.disable()  # the imports and the config make little garbage; settle() turns it back on


def settle() -> None:
    """Keep the objects alive now (imports, config, loaded models) out of every later
    collection, in a stage script only; the collector runs again for what follows."""
    if _script:
        gc.freeze()
        gc.enable()
