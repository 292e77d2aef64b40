"""The first module the LocalCluster workers' fork server imports (:func:`geoensemble.compute.
_forkserver`).

The server imports what every worker needs (distributed, numpy, scikit-learn and the stage's
task modules) once, and forks each worker from itself. While it imports, the cyclic garbage
collector stays off, as in a stage script (:mod:`geoensemble.heap`), and SciPy keeps its
docstrings as they are (:mod:`geoensemble.docnotes`): measured on MLflow's imports, the
collector alone costs 0.7 of 1.7 s of CPU, on the cores the stage and its workers share.
Every process forked from the server freezes what it inherited (never walked by a
collection) and turns the collector back on at once, in the fork itself
(:func:`os.register_at_fork`), as Python's documentation of :func:`gc.freeze` advises for
processes forked from a server; so does a worker of any other cluster forked from it.
"""

from __future__ import annotations

import os

from geoensemble import docnotes
from geoensemble.heap import script_mode, settle

script_mode()
docnotes.install()
os.register_at_fork(after_in_child=settle)
