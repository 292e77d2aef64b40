"""The application layer: the command line, the Hydra config schema and the stages.

Only this package knows Hydra, DVC and the application config (:mod:`.config`); each stage
(:mod:`.stages`) is a thin adapter from the validated config to the library below it
(:mod:`geoensemble.io`, :mod:`~geoensemble.features`, :mod:`~geoensemble.ensemble`,
:mod:`~geoensemble.predict`, :mod:`~geoensemble.tracking`).
"""
