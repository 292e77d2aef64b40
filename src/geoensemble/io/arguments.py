"""The argument names an io error declares (:class:`geoensemble.errors.GeoEnsembleError`
``arguments``), when its message quotes another library's."""

from __future__ import annotations

import re
from collections.abc import Mapping


def outside(text: str, arguments: Mapping[str, str]) -> dict[str, str]:
    """``arguments`` without the names that ``text`` (another library's message, quoted in
    ours) uses as words of its own: rendered as config keys, they would garble it (GDAL's
    "not a supported file format")."""
    return {
        name: parameter
        for name, parameter in arguments.items()
        if not re.search(rf"(?<![\w./\-]){re.escape(name)}(?![\w(])", text)
    }
