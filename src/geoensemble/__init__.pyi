"""Types of the lazily imported public API (see ``__init__.py``)."""

from geoensemble.api import (
    Ensemble as Ensemble,
)
from geoensemble.api import (
    EnsembleSearch as EnsembleSearch,
)
from geoensemble.api import (
    LayerSpec as LayerSpec,
)
from geoensemble.api import (
    SpatialBlockCV as SpatialBlockCV,
)
from geoensemble.api import (
    draw_validation_sample as draw_validation_sample,
)
from geoensemble.api import (
    featurize as featurize,
)
from geoensemble.api import (
    fit_ensemble as fit_ensemble,
)
from geoensemble.api import (
    load_array as load_array,
)
from geoensemble.api import (
    predict_many as predict_many,
)
from geoensemble.api import (
    rasterize_labels as rasterize_labels,
)
from geoensemble.api import (
    regularise_map as regularise_map,
)
from geoensemble.api import (
    write_map as write_map,
)

__version__: str
__all__: list[str]
