"""Layer specs: which file (or variable, or band) becomes which named layer."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from geoensemble.config import DataConfig, LayerSpecConfig
from geoensemble.errors import InputFileError, LayerNotFoundError


@dataclass(frozen=True)
class LayerSource:
    """Where one named layer comes from, once its spec has been matched."""

    name: str
    path: Path
    band: int = 1
    variable: str | None = None
    nodata: tuple[float, ...] = field(default_factory=tuple)
    scale: float = 1.0
    offset: float = 0.0
    categorical: bool = False


def find_files(folder: Path, pattern: str) -> list[Path]:
    """Files under ``folder`` (recursively) whose name matches the glob ``pattern``."""
    if not folder.exists():
        raise InputFileError(
            f"input folder {folder} does not exist: set data.path to the "
            f"folder holding your rasters"
        )
    if not folder.is_dir():
        raise InputFileError(f"data.path {folder} is a file, but data.format expects a folder")
    files = sorted(p for p in folder.rglob(pattern) if p.is_file() and not p.name.startswith("."))
    if not files:
        raise LayerNotFoundError(
            f"no file in {folder} matches data.pattern={pattern!r}: "
            f"check the pattern (it is case-sensitive)"
        )
    return files


def match_specs(files: list[Path], specs: list[LayerSpecConfig]) -> list[LayerSource]:
    """Pair each spec with exactly one file by its ``file`` regular expression.

    Without specs every file becomes a layer named after its stem.
    """
    if not specs:
        names = [p.stem for p in files]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise LayerNotFoundError(
                f"several files share the layer name(s) {dupes}: name "
                f"layers explicitly with data.layers"
            )
        return [LayerSource(name=p.stem, path=p) for p in files]
    out = []
    for spec in specs:
        rx = re.compile(spec.file or re.escape(spec.name))
        hits = [p for p in files if rx.search(p.name)]
        if not hits:
            raise LayerNotFoundError(
                f"layer '{spec.name}': no file matches {rx.pattern!r} among "
                f"{[p.name for p in files][:10]}: fix data.layers[].file"
            )
        if len(hits) > 1:
            raise LayerNotFoundError(
                f"layer '{spec.name}': {len(hits)} files match {rx.pattern!r} "
                f"({[p.name for p in hits][:5]}): make the expression match one file"
            )
        out.append(
            LayerSource(
                name=spec.name,
                path=hits[0],
                band=spec.band,
                variable=spec.variable,
                nodata=tuple(spec.nodata),
                scale=spec.scale,
                offset=spec.offset,
                categorical=spec.categorical,
            )
        )
    return out


def resolve_sources(data: DataConfig) -> list[LayerSource]:
    """The layer sources named by a ``data`` config (GeoTiff folder or single file)."""
    path = Path(data.path)
    fmt = data.format
    if fmt == "auto":
        fmt = "geotiff_dir" if path.is_dir() else "geotiff"
    if fmt == "geotiff_dir":
        return match_specs(find_files(path, data.pattern), list(data.layers))
    if fmt == "geotiff":
        if not path.is_file():
            raise InputFileError(f"input file {path} does not exist: set data.path")
        if not data.layers:
            return [
                LayerSource(name=f"band_{i}", path=path, band=i)
                for i in range(1, _band_count(path) + 1)
            ]
        return [
            LayerSource(
                name=s.name,
                path=path,
                band=s.band,
                nodata=tuple(s.nodata),
                scale=s.scale,
                offset=s.offset,
                categorical=s.categorical,
            )
            for s in data.layers
        ]
    raise LayerNotFoundError(
        f"data.format={data.format!r} is not supported here: use auto, geotiff_dir or geotiff"
    )


def _band_count(path: Path) -> int:
    import rasterio

    try:
        with rasterio.open(path) as src:
            return int(src.count)
    except rasterio.errors.RasterioIOError as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from None
