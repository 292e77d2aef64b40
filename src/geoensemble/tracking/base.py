"""What the :class:`~geoensemble.tracking.Tracker` mixins (closing, sweeps, registry) use of
the Tracker itself, declared once for type checkers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geoensemble.errors import TrackingError


class TrackerBase:
    """The attributes and methods of :class:`~geoensemble.tracking.Tracker` its mixins call
    (nothing at run time: the Tracker defines them)."""

    if TYPE_CHECKING:
        uri: str
        timeout: float
        client: Any
        down: TrackingError | None

        def fault(self, exc: BaseException) -> TrackingError | None: ...

        def experiment_of(self, run_id: str) -> str: ...
