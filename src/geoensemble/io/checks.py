"""Checks of read settings and names, shared by the stages' config validation
(:func:`geoensemble.app.validate.validate`) and the public API, so both refuse the same
inputs with the same messages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError

from geoensemble.errors import ConfigError
from geoensemble.io.spec import LayerSpec, ReadSpec

FORMATS = ("auto", "geotiff_dir", "geotiff", "netcdf", "hdf5", "hdf4", "gdal", "stac", "stac_api")
RESAMPLING = tuple(
    m.name
    for m in Resampling
    if m.name not in {"gauss"}  # GDAL's warper has no gauss kernel
)
# how layers get onto one grid (the config schema's Align enum has the same values)
ALIGN = ("strict", "reproject")

# A name that becomes (part of) a file or folder name: no separator, no "..", no hidden file.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
NAME_FORM = (
    "1-100 letters, digits, '_', '-' or '.', starting with a letter or digit (no '/', no spaces)"
)


def check_name(name: str, value: Any, *, parameter: str | None = None) -> None:
    """Refuse a value that would escape its folder (or hide) as a file name part.

    Parameters
    ----------
    name
        The argument that gave ``value``, as the message names it.
    value
        The value to check.
    parameter
        The library parameter ``name`` stands for (``"<function or class>.<parameter>"``),
        declared in the error's ``arguments``.

    Raises
    ------
    ConfigError
        Naming the argument, the value and the allowed form.
    """
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise ConfigError(
            f"{name}={value!r} becomes part of a file name and is not a safe name: use {NAME_FORM}",
            arguments={name: parameter} if parameter else None,
        )


# names a layer cannot take: the store's coordinates and its sidecar
_RESERVED = {"x", "y", "spatial_ref", "geoensemble.json"}


def unsafe_name(name: str) -> str | None:
    """Why ``name`` cannot name a layer (it becomes a folder of the Zarr store), or None."""
    if not name.strip():
        return "is empty"
    bad = next((c for c in name if c in "/\\" or ord(c) < 32 or c == "\x7f"), None)
    if bad is not None:
        return f"contains {bad!r}, which cannot be part of a file name"
    if name.startswith("."):
        return "starts with '.', which makes it a hidden (or parent) folder"
    if name in _RESERVED:
        return "is reserved for the store's own coordinates or files"
    if len(name.encode()) > 200:
        return "is longer than 200 bytes"
    return None


# the parameters the checks of a ReadSpec name, by the argument name their messages use
READ_ARGUMENTS = {
    "path": "ReadSpec.path",
    "format": "ReadSpec.format",
    "layers": "ReadSpec.layers",
    "reference": "ReadSpec.reference",
    "resampling": "ReadSpec.resampling",
    "crs": "ReadSpec.crs",
    "geotransform": "ReadSpec.geotransform",
    "target.crs": "TargetGrid.crs",
    "target.resolution": "TargetGrid.resolution",
    "target.bounds": "TargetGrid.bounds",
    "stac.limit": "StacSearch.limit",
    "stac.max_cloud": "StacSearch.max_cloud",
    "stac.bbox": "StacSearch.bbox",
}


def _fail(name: str, value: Any, allowed: str) -> ConfigError:
    """``name=value is invalid: use allowed``; ``name`` is one of :data:`READ_ARGUMENTS`,
    or ``layers[i].field``."""
    root = name.split("[")[0]
    return ConfigError(
        f"{name}={value!r} is invalid: use {allowed}", arguments={root: READ_ARGUMENTS[root]}
    )


def _positive(name: str, values: Sequence[Any] | None, lengths: tuple[int, ...], what: str) -> None:
    if values is None:
        return
    if len(values) not in lengths or any(v <= 0 for v in values):
        raise _fail(name, list(values), what)


def _bounds(name: str, b: Sequence[float] | None) -> None:
    if b is None:
        return
    if len(b) != 4 or not (b[0] < b[2] and b[1] < b[3]):
        raise _fail(name, list(b), "[xmin, ymin, xmax, ymax] with xmin < xmax and ymin < ymax")


def _crs(name: str, text: str | None) -> None:
    if text is None:
        return
    try:
        CRS.from_user_input(text)
    except CRSError:
        raise _fail(name, text, "an EPSG code such as EPSG:32613, a WKT or a PROJ string") from None


def _resampling(name: str, method: str | None) -> None:
    if method is not None and method not in RESAMPLING:
        raise _fail(name, method, f"one of {', '.join(RESAMPLING)}")


def _check_stac(d: ReadSpec) -> None:
    from geoensemble.io.remote import is_url

    if d.format == "stac_api" and not is_url(d.path):
        raise _fail("path", d.path, "the STAC API root URL (https://...) with stac_api")
    st = d.stac
    if st.limit < 1:
        raise _fail("stac.limit", st.limit, "a number of items >= 1")
    if st.max_cloud is not None and not 0 <= st.max_cloud <= 100:
        raise _fail("stac.max_cloud", st.max_cloud, "a cloud cover in percent, 0-100")
    _bounds("stac.bbox", st.bbox)


def check_data_config(d: ReadSpec) -> None:
    """Check every setting of ``d`` that its types cannot check alone.

    Raises
    ------
    ConfigError
        Naming the field (``format``, ``layers[0].band``...), the value and what to use.
    """
    if d.format not in FORMATS:
        raise _fail("format", d.format, f"one of {', '.join(FORMATS)}")
    from geoensemble.io.products import check_qa

    check_qa(d.product, d.qa, d.qa_flags)
    _check_stac(d)
    _resampling("resampling", d.resampling)
    _crs("crs", d.crs)
    _crs("target.crs", d.target.crs)
    _positive("target.resolution", d.target.resolution, (1, 2), "[xres, yres] or [res] > 0")
    _bounds("target.bounds", d.target.bounds)
    if d.geotransform is not None and (
        len(d.geotransform) != 6 or d.geotransform[1] == 0 or d.geotransform[5] == 0
    ):
        raise _fail(
            "geotransform",
            list(d.geotransform),
            "6 numbers in GDAL order [x_min, pixel_width, 0, y_max, 0, -pixel_height]",
        )
    names = [s.name for s in d.layers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _fail("layers", dupes, "a different name for every layer")
    if d.reference is not None and d.layers and d.reference not in names:
        raise _fail("reference", d.reference, f"one of the layer names {names}")
    for i, s in enumerate(d.layers):
        _check_layer(f"layers[{i}]", s)


def _check_layer(key: str, s: LayerSpec) -> None:
    """The checks of one layer spec, named ``key`` (``layers[i]``)."""
    why = unsafe_name(s.name)
    if why:
        raise _fail(
            f"{key}.name", s.name, f"a name of letters, digits, '_', '-' and '.' (it {why})"
        )
    if s.band < 1:
        raise _fail(f"{key}.band", s.band, "a band number >= 1")
    if s.meta_value is not None and s.meta_key is None:
        raise _fail(f"{key}.meta_key", None, "the metadata key that meta_value matches")
    if s.window is not None and (
        len(s.window) != 4 or min(s.window[:2]) < 0 or min(s.window[2:]) < 1
    ):
        raise _fail(f"{key}.window", list(s.window), "[row_off, col_off, height, width]")
    if s.window is not None and s.bbox is not None:
        raise _fail(f"{key}.bbox", list(s.bbox), "either window or bbox, not both")
    _bounds(f"{key}.bbox", s.bbox)
    _positive(f"{key}.out_shape", s.out_shape, (2,), "[rows, cols] > 0")
    _positive(f"{key}.resolution", s.resolution, (1, 2), "[xres, yres] or [res] > 0")
    if s.out_shape is not None and s.resolution is not None:
        raise _fail(f"{key}.resolution", list(s.resolution), "either out_shape or resolution")
    _resampling(f"{key}.resampling", s.resampling)
