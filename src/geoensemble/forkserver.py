"""The first module the LocalCluster workers' fork server imports (:func:`geoensemble.compute.
_forkserver`).

The server imports what every worker needs (distributed, numpy, scikit-learn and the stage's
task modules) once, and forks each worker from itself. While it imports, the cyclic garbage
collector stays off, as in a stage script (:mod:`geoensemble.app.heap`), and SciPy keeps its
docstrings as they are (:mod:`geoensemble.docnotes`): measured on MLflow's imports, the
collector alone costs 0.7 of 1.7 s of CPU, on the cores the stage and its workers share.
Each worker freezes what it inherited (never walked by a collection) and turns the collector
back on as it starts (:func:`geoensemble.workers.dask_setup`), as Python's documentation of
:func:`gc.freeze` advises for processes forked from a server.
"""

from __future__ import annotations

import gc

from geoensemble import docnotes

gc.disable()
docnotes.install()
