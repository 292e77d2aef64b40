"""Layer specs: which file, variable, dataset or band becomes which named layer.

The format comes from the path (a folder, the extension, the file's first bytes) unless
the read settings' ``format`` names it. Each format lists *candidates* (files, variables, datasets
or bands, each with its metadata); each spec in ``layers`` must match exactly one candidate by its
regular expressions (``file``, ``variable``, ``meta_key``/``meta_value``). Without specs every
candidate becomes a layer.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from geoensemble.errors import InputFileError, LayerNotFoundError
from geoensemble.io import georef
from geoensemble.io.checks import FORMATS, unsafe_name
from geoensemble.io.products import get_product, product_specs
from geoensemble.io.remote import input_urls, is_url, url_name, vsi_path
from geoensemble.io.sources import GdalBand, RasterSource, gdal_bands, subdatasets
from geoensemble.io.spec import LayerSpec, ReadSpec
from geoensemble.redact import redact_uri

_EXTENSIONS = {
    ".tif": "geotiff",
    ".tiff": "geotiff",
    ".gtif": "geotiff",
    ".nc": "netcdf",
    ".nc4": "netcdf",
    ".cdf": "netcdf",
    ".netcdf": "netcdf",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".he5": "hdf5",
    ".hdf": "hdf4",
    ".hdf4": "hdf4",
    ".h4": "hdf4",
}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_HDF4_MAGIC = b"\x0e\x03\x13\x01"


@dataclass(frozen=True)
class Candidate:
    """A readable array before matching: its key (matched by specs), metadata and bands."""

    key: str
    name: str  # the layer name when no spec names it
    meta: dict[str, str]
    sources: list[RasterSource]


@dataclass(frozen=True)
class LayerSource:
    """One named layer once its spec has been matched: the source and what to do with it."""

    name: str
    source: RasterSource
    nodata: tuple[float, ...] = ()
    scale: float = 1.0
    offset: float = 0.0
    categorical: bool = False
    window: tuple[int, ...] | None = None
    bbox: tuple[float, ...] | None = None
    out_shape: tuple[int, ...] | None = None
    resolution: tuple[float, ...] | None = None
    resampling: str | None = None

    @property
    def label(self) -> str:
        return self.source.label


def detect_format(path: Path, fmt: str = "auto") -> str:
    """The reader for ``path``: ``fmt`` unless it is ``auto``, else from the path itself."""
    if not path.exists():
        raise InputFileError(
            f"input {path} does not exist: set path to your folder of rasters or to "
            f"your NetCDF/HDF/GeoTiff file (relative paths start at the project root)",
            arguments={"path": "ReadSpec.path"},
        )
    if fmt != "auto":
        return fmt
    if path.is_dir():
        return "geotiff_dir"
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(_HDF4_MAGIC):
        return "hdf4"
    ext = _EXTENSIONS.get(path.suffix.lower())
    if head.startswith(_HDF5_MAGIC):
        # netCDF-4 files are HDF5 inside: the extension tells which reader the user means.
        return "netcdf" if ext == "netcdf" else "hdf5"
    if head[:3] == b"CDF":
        return "netcdf"
    return ext or "gdal"


def find_files(folder: Path, pattern: str) -> list[Path]:
    """Files under ``folder`` (recursively) whose name matches the glob ``pattern``."""
    if not folder.exists():
        raise InputFileError(
            f"input folder {folder} does not exist: set path to the folder holding your rasters",
            arguments={"path": "ReadSpec.path"},
        )
    if not folder.is_dir():
        raise InputFileError(
            f"path {folder} is a file, but format=geotiff_dir expects a folder: set format=auto",
            arguments={"path": "ReadSpec.path", "format": "ReadSpec.format"},
        )
    files = sorted(p for p in folder.rglob(pattern) if p.is_file() and not p.name.startswith("."))
    if not files:
        raise LayerNotFoundError(
            f"no file in {folder} matches pattern={pattern!r}: "
            f"check the glob (it is case-sensitive, e.g. '*.TIF')",
            arguments={"pattern": "ReadSpec.pattern"},
        )
    return files


def _url_candidates(urls: list[str], data: ReadSpec) -> tuple[str, list[Candidate]]:
    """COGs by URL: one file's bands (format ``geotiff``), or one candidate per URL named
    after its file (as a folder's files are), read through GDAL's network file systems."""
    paths = [(vsi_path(u) if is_url(u) else u, redact_uri(u)) for u in urls]
    if len(paths) == 1 and data.format in ("auto", "geotiff") and data.product == "none":
        bands = gdal_bands(paths[0][0], label=paths[0][1])
        return "geotiff", _band_candidates(bands)
    out = []
    for path, label in paths:
        bands = gdal_bands(path, label=label)
        name = url_name(path) if is_url(path) else Path(path).name
        out.append(Candidate(name, Path(name).stem, dict(bands[0].meta), list(bands)))
    return "geotiff_dir", out


def source_format(data: ReadSpec) -> str:
    """What ``data``'s path is, for reports: ``url`` (URLs or a listing of them) or its format."""
    if is_stac(data):
        return "stac_api" if data.format == "stac_api" else "stac"
    if input_urls(data.path, getattr(data, "urls", ())):
        return "url"
    return detect_format(Path(data.path), data.format)


def is_stac(data: ReadSpec) -> bool:
    """Whether ``data`` names a STAC input (an item/collection JSON, or an API search)."""
    if data.format in ("stac", "stac_api"):
        return True
    return data.format == "auto" and data.path.split("?")[0].lower().endswith(".json")


def _stac_candidates(data: ReadSpec) -> tuple[str, list[Candidate]]:
    from geoensemble.io.stac import item_sources, load_items, search_items

    if data.format == "stac_api":
        items = search_items(data.path, data.stac)
    else:
        items = load_items(data.path)
    found = item_sources(items, data.product)
    return "stac", [Candidate(k, k, dict(s[0].meta), list(s)) for k, s in found]


def candidates(data: ReadSpec) -> tuple[str, list[Candidate]]:
    """The format of ``data``'s path and every array it offers."""
    if is_stac(data):
        return _stac_candidates(data)
    urls = input_urls(data.path, getattr(data, "urls", ()))
    if urls:
        return _url_candidates(urls, data)
    path = Path(data.path)
    fmt = detect_format(path, data.format)
    if fmt != "geotiff_dir" and path.is_dir():
        raise InputFileError(
            f"path {path} is a folder, but format={fmt} expects a file: point "
            f"path at the file, or set format=geotiff_dir",
            arguments={"path": "ReadSpec.path", "format": "ReadSpec.format"},
        )
    if fmt == "geotiff_dir":
        out = []
        for p in find_files(path, data.pattern):
            bands = gdal_bands(str(p), label=str(p))
            out.append(Candidate(p.name, p.stem, dict(bands[0].meta), list(bands)))
        return fmt, out
    if fmt in ("geotiff", "gdal"):
        return fmt, _gdal_candidates(path, fmt)
    return fmt, _scientific_candidates(path, fmt, data)


def _gdal_candidates(path: Path, fmt: str) -> list[Candidate]:
    """The subdatasets of a GDAL file (format ``gdal``) that has some, else its bands."""
    subs = subdatasets(str(path), label=str(path))
    if fmt == "gdal" and subs:
        return [
            Candidate(
                _sub_name(s),
                _sub_name(s).rsplit("/", 1)[-1],
                dict(bands[0].meta),
                list(bands),
            )
            for s in subs
            for bands in [gdal_bands(s, label=f"{path} subdataset {_sub_name(s)}", locked=True)]
        ]
    return _band_candidates(gdal_bands(str(path), label=str(path)))


def _band_candidates(bands: list[GdalBand]) -> list[Candidate]:
    return [
        Candidate(
            b.meta.get("description") or f"band_{i}",
            b.meta.get("description") or f"band_{i}",
            dict(b.meta),
            [b],
        )
        for i, b in enumerate(bands, start=1)
    ]


def _scientific_candidates(path: Path, fmt: str, data: ReadSpec) -> list[Candidate]:
    """The arrays of a NetCDF, HDF5 or HDF4 file."""
    if fmt == "netcdf":
        from geoensemble.io.netcdf import netcdf_candidates

        found = netcdf_candidates(
            str(path), label=str(path), crs=data.crs, geotransform=data.geotransform
        )
    elif fmt == "hdf5":
        from geoensemble.io.hdf5 import hdf5_candidates

        found = hdf5_candidates(
            str(path), label=str(path), crs=data.crs, geotransform=data.geotransform
        )
    elif fmt == "hdf4":
        from geoensemble.io.hdf4 import hdf4_candidates

        found = hdf4_candidates(
            str(path), label=str(path), crs=data.crs, geotransform=data.geotransform
        )
    else:
        raise LayerNotFoundError(
            f"format={data.format!r} is not supported: use one of {list(FORMATS)}",
            arguments={"format": "ReadSpec.format"},
        )
    return [Candidate(k, k.rsplit("/", 1)[-1], m, s) for k, m, s in found]


def _check_name(src: LayerSource) -> None:
    why = unsafe_name(src.name)
    if why:
        raise LayerNotFoundError(
            f"the layer name {src.name!r} taken from {src.label} (its band description or "
            f"variable name) {why}: give each layer a name of your own with layers, e.g. "
            f"layers=[{{name: red, band: 1}}, ...]",
            arguments={"layers": "ReadSpec.layers"},
        )


def _sub_name(uri: str) -> str:
    # 'HDF5:"f.h5"://grp/red' -> '/grp/red';  'netcdf:f.nc:red' -> 'red'
    tail = uri.rsplit(":", 1)[-1]
    return tail[1:] if tail.startswith("//") else tail


def _compile(text: str, *, key: str) -> re.Pattern[str]:
    """``text`` compiled; ``key`` names it in the error (``layers[i] (layer 'red').file``)."""
    try:
        return re.compile(text)
    except re.error as exc:
        raise LayerNotFoundError(
            f"{key}={text!r} is not a valid regular expression: {exc}",
            arguments={"layers": "ReadSpec.layers"},
        ) from None


def _match(spec: LayerSpec, fmt: str, cands: list[Candidate], i: int) -> Candidate:
    """The one candidate that ``spec`` names, or an error listing what there is."""
    field = "file" if fmt in ("geotiff_dir", "stac") else "variable"
    text = getattr(spec, field)
    if fmt == "geotiff" and text is None and spec.meta_key is None:
        return cands[0]  # a multi-band file: the spec's band picks the band
    where = f"layers[{i}] (layer '{spec.name}')"
    if text is None and spec.meta_key is None:
        text = re.escape(spec.name)
    hits = list(cands)
    rx = None
    if text is not None:
        rx = _compile(text, key=f"{where}.{field}")
        hits = [c for c in hits if rx.search(c.key)]
    if spec.meta_key is not None:
        mv = _compile(spec.meta_value or ".*", key=f"{where}.meta_value")
        hits = [c for c in hits if spec.meta_key in c.meta and mv.search(c.meta[spec.meta_key])]
    if len(hits) > 1 and rx is not None:
        # 'B1' searched finds B1, B10 and B11: an exact match of the name settles it.
        exact = [c for c in hits if rx.fullmatch(c.key) or rx.fullmatch(c.name)]
        hits = exact if len(exact) == 1 else hits
    how = " and ".join(
        s
        for s in (
            f"{field} {text!r}" if text is not None else "",
            f"metadata {spec.meta_key}~{spec.meta_value!r}" if spec.meta_key else "",
        )
        if s
    )
    if not hits:
        keys = [c.key for c in cands]
        raise LayerNotFoundError(
            f"{where}: nothing matches {how}; there are {len(keys)} {_kind(fmt)}: "
            f"{keys[:12]}{' ...' if len(keys) > 12 else ''}. Fix layers[{i}].{field}",
            arguments={"layers": "ReadSpec.layers"},
        )
    if len(hits) > 1:
        raise LayerNotFoundError(
            f"{where}: {len(hits)} {_kind(fmt)} match {how}: {[c.key for c in hits][:8]}; "
            f"make the expression match exactly one (anchor it, e.g. '^red\\.tif$')",
            arguments={"layers": "ReadSpec.layers"},
        )
    return hits[0]


def _kind(fmt: str) -> str:
    return {
        "geotiff_dir": "files",
        "stac": "assets",
        "geotiff": "bands",
        "netcdf": "variables",
        "hdf5": "datasets",
        "hdf4": "datasets",
    }.get(fmt, "subdatasets")


def _fill_georef(src: RasterSource, data: ReadSpec) -> RasterSource:
    """Give a source without CRS or geotransform the ones ``data`` names."""
    changes: dict[str, object] = {}
    if src.crs is None and data.crs:
        changes["crs"] = georef.parse_crs(data.crs, where="crs", parameter="ReadSpec.crs")
    if src.transform.is_identity and data.geotransform:
        changes["transform"] = georef.from_gdal(data.geotransform)
    return dataclasses.replace(src, **changes) if changes else src  # type: ignore[arg-type]


def resolve_sources(data: ReadSpec) -> list[LayerSource]:
    """The layers ``data`` names, each matched to exactly one 2-D source."""
    fmt, cands = candidates(data)
    if not cands:
        raise LayerNotFoundError(
            f"{data.path} holds no raster {_kind(fmt)} (2-D numeric arrays) that "
            f"format={fmt} can read",
            arguments={"format": "ReadSpec.format"},
        )
    specs: Sequence[LayerSpec] = data.layers
    product = get_product(data.product)
    if product is not None and not specs:
        if fmt not in ("geotiff_dir", "stac"):
            raise LayerNotFoundError(
                f"product={data.product} reads the files of a preset (a folder, URLs or a "
                f"STAC item), but {data.path} is one {fmt} file: point path at the "
                f"folder, or set product=none",
                arguments={"product": "ReadSpec.product", "path": "ReadSpec.path"},
            )
        specs = product_specs(product, [c.key for c in cands], qa=data.qa)
    if not specs:
        out = []
        for c in cands:
            names = (
                [c.name]
                if len(c.sources) == 1
                else [f"{c.name}_{b}" for b in range(1, len(c.sources) + 1)]
            )
            out += [
                LayerSource(name=n, source=_fill_georef(s, data))
                for n, s in zip(names, c.sources, strict=True)
            ]
        dupes = sorted({s.name for s in out if [o.name for o in out].count(s.name) > 1})
        if dupes:
            raise LayerNotFoundError(
                f"several {_kind(fmt)} share the layer name(s) {dupes}: name each layer "
                f"explicitly with layers",
                arguments={"layers": "ReadSpec.layers"},
            )
        for src in out:
            _check_name(src)
        return out
    out = []
    for i, spec in enumerate(specs):
        cand = _match(spec, fmt, cands, i)
        if fmt == "geotiff" and spec.variable is None and spec.meta_key is None:
            pool = [s for c in cands for s in c.sources]
        else:
            pool = cand.sources
        if not 1 <= spec.band <= len(pool):
            raise LayerNotFoundError(
                f"layers[{i}] (layer '{spec.name}'): band={spec.band} was asked for, but "
                f"{cand.sources[0].label} has {len(pool)} band(s)/plane(s)",
                arguments={"layers": "ReadSpec.layers"},
            )
        out.append(
            LayerSource(
                name=spec.name,
                source=_fill_georef(pool[spec.band - 1], data),
                nodata=tuple(float(v) for v in spec.nodata),
                scale=spec.scale,
                offset=spec.offset,
                categorical=spec.categorical,
                window=tuple(spec.window) if spec.window else None,
                bbox=tuple(spec.bbox) if spec.bbox else None,
                out_shape=tuple(spec.out_shape) if spec.out_shape else None,
                resolution=tuple(spec.resolution) if spec.resolution else None,
                resampling=spec.resampling,
            )
        )
    return out
