"""The embedded default scene: a seeded, Landsat-8-like scene with known land cover.

The scene is written like a Landsat product unpacked into a folder: one single-band GeoTiff per
band, ``B1.TIF`` ... ``B7.TIF`` (OLI bands 1-7: coastal, blue, green, red, NIR, SWIR1, SWIR2),
surface reflectance scaled by 10 000 as uint16, nodata 0 outside a tilted footprint as in a real
scene, on a UTM grid with 30 m pixels. Beside it, in ``labels/``, the ground-truth class raster
and labelled sample points (GeoJSON) for supervised use.

Land cover comes from smoothed random fields, so classes form coherent patches: snow on the
high ground of a synthetic elevation model, a meandering river and lakes in the lows, towns,
forest, cropland and bare soil in between. Reflectance spectra follow the typical shapes of each
cover type, so NDVI, NDWI, NDSI and NBR separate them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from scipy import ndimage

from geoensemble.classes import SCENE_CLASSES
from geoensemble.errors import OutputError
from geoensemble.io.arguments import outside
from geoensemble.io.atomic import atomic_path
from geoensemble.io.geotiff import write_geotiff
from geoensemble.io.owned import OUTPUT_TAG, refuse_unless_ours_tif

BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7"]
BAND_NAMES = ["coastal", "blue", "green", "red", "nir", "swir1", "swir2"]
SCALE = 10_000  # reflectance -> DN
NODATA = 0

# Typical surface reflectance per class for OLI bands 1-7.
SPECTRA = np.array(
    [
        [0.070, 0.065, 0.060, 0.040, 0.020, 0.010, 0.006],  # water: falls off into the infrared
        [0.028, 0.032, 0.058, 0.035, 0.350, 0.180, 0.080],  # forest: red edge, dark SWIR
        [0.040, 0.045, 0.080, 0.060, 0.320, 0.210, 0.110],  # cropland: green, brighter SWIR
        [0.090, 0.100, 0.135, 0.170, 0.240, 0.300, 0.260],  # bare soil: rises to SWIR
        [0.100, 0.110, 0.130, 0.150, 0.210, 0.250, 0.220],  # built-up: flat and bright
        [0.880, 0.870, 0.850, 0.820, 0.700, 0.070, 0.050],  # snow: bright VNIR, dark SWIR
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class Scene:
    """An in-memory scene: reflectance bands, truth and geo-referencing."""

    bands: np.ndarray  # (7, height, width) uint16 DN, NODATA outside the footprint
    truth: np.ndarray  # (height, width) uint8 class codes, 255 outside the footprint
    valid: np.ndarray  # (height, width) bool footprint
    crs: str
    transform: Affine


def _field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smoothed white noise scaled to [0, 1]: the source of coherent patches."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return (f - f.min()) / (np.ptp(f) + 1e-12)


def footprint(
    height: int, width: int, *, angle_deg: float = 12.0, fill: float = 0.80
) -> np.ndarray:
    """A tilted rectangle like a Landsat scene's footprint inside its north-up grid."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    x = xx - (width - 1) / 2
    y = yy - (height - 1) / 2
    t = np.deg2rad(angle_deg)
    u = x * np.cos(t) + y * np.sin(t)
    v = -x * np.sin(t) + y * np.cos(t)
    return (np.abs(u) < fill * width / 2) & (np.abs(v) < fill * height / 2)


def land_cover(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Class codes 0-5 (see :data:`geoensemble.classes.SCENE_CLASSES`) in coherent patches."""
    scale = max(height, width) / 100.0
    elev = _field(rng, (height, width), 9 * scale)
    cover = (
        np.argmax(
            np.stack(
                [
                    _field(rng, (height, width), 4 * scale)
                    + 0.12 * elev,  # forest, likes high ground
                    _field(rng, (height, width), 4 * scale)
                    + 0.08 * (1 - elev),  # cropland, valleys
                    _field(rng, (height, width), 3 * scale),  # bare soil
                ]
            ),
            axis=0,
        ).astype(np.uint8)
        + 1
    )
    towns = _field(rng, (height, width), 2.5 * scale)
    cover[(towns > np.quantile(towns, 0.90)) & (elev < 0.7)] = 4
    # A meandering river across the scene plus lakes in the lowest ground.
    yy, xx = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 2 * np.pi)
    centre = height * (0.5 + 0.18 * np.sin(2 * np.pi * xx / width * 1.5 + phase))
    cover[np.abs(yy - centre) < max(3.0, 0.012 * height)] = 0
    cover[elev < np.quantile(elev, 0.06)] = 0
    cover[elev > np.quantile(elev, 0.92)] = 5
    return cover


def make_scene(
    width: int = 800,
    height: int = 800,
    *,
    seed: int = 42,
    pixel_size: float = 30.0,
    crs: str = "EPSG:32613",
    origin: tuple[float, float] = (440_010.0, 4_480_020.0),
    noise: float = 0.01,
    variability: float = 0.3,
    blur: float = 0.5,
    mixing: float = 0.45,
) -> Scene:
    """Build the scene in memory; the same arguments always give the same arrays.

    ``mixing`` is the largest share of a pixel covered by a second land cover;
    ``variability`` is the within-class spread of each band (a smooth field per band, so
    a class's spectral shape drifts across the scene, as with moisture, phenology or soil
    type); ``blur`` is the sensor's point-spread (Gaussian sigma in pixels), which mixes
    the spectra of neighbouring classes at their borders; ``noise`` is white sensor noise
    in reflectance units. Together they keep classes separable but not trivially so.
    """
    rng = np.random.default_rng(seed)
    cover = land_cover(rng, height, width)
    valid = footprint(height, width)
    # Brightness varies smoothly (terrain, illumination); each band drifts on its own too.
    bright = 0.85 + 0.3 * _field(rng, (height, width), 3.0)
    drift = np.stack(
        [1 + variability * (_field(rng, (height, width), 2.0) - 0.5) for _ in SPECTRA[0]]
    ).astype(np.float32)
    # Sub-pixel mixing: every pixel holds up to `mixing` of another land cover (fallow in
    # fields, trees in towns, soil between shrubs); the truth is the dominant cover.
    other = rng.integers(1, 5, size=(height, width))
    other = ndimage.median_filter(other, size=5).astype(np.intp)
    frac = (mixing * _field(rng, (height, width), 1.5) ** 2).astype(np.float32)
    frac[(cover == 0) | (cover == 5)] = 0.0  # open water and snow are pure but at their edges
    spectra = (1 - frac)[..., None] * SPECTRA[cover] + frac[..., None] * SPECTRA[other]
    refl = spectra.transpose(2, 0, 1) * bright.astype(np.float32) * drift
    if blur > 0:
        refl = ndimage.gaussian_filter(refl, sigma=(0, blur, blur), mode="nearest")
    refl += rng.normal(0.0, noise, size=refl.shape).astype(np.float32)
    dn = np.clip(np.rint(refl * SCALE), 1, 65535).astype(np.uint16)
    dn[:, ~valid] = NODATA
    truth = np.where(valid, cover, 255).astype(np.uint8)
    transform = Affine(pixel_size, 0.0, origin[0], 0.0, -pixel_size, origin[1])
    return Scene(bands=dn, truth=truth, valid=valid, crs=crs, transform=transform)


def sample_points(scene: Scene, n_points: int, *, seed: int = 42) -> list[dict[str, object]]:
    """Class-stratified labelled points inside the footprint (pixel centres)."""
    rng = np.random.default_rng(seed + 1)
    per_class = max(1, n_points // len(SCENE_CLASSES))
    points = []
    for code, (name, _) in SCENE_CLASSES.items():
        rows, cols = np.nonzero(scene.truth == code)
        if rows.size == 0:
            continue
        pick = rng.choice(rows.size, size=min(per_class, rows.size), replace=False)
        for r, c in zip(rows[pick], cols[pick], strict=True):
            x, y = scene.transform @ (c + 0.5, r + 0.5)
            points.append({"x": float(x), "y": float(y), "class": code, "class_name": name})
    return points


def _earlier_truth(p: Path) -> bool:
    """A ``truth.tif`` of a geoensemble version before the output tag: the scene's classes."""
    import rasterio

    try:
        with rasterio.open(p) as src:
            tags = src.tags()
    except (OSError, rasterio.errors.RasterioError):
        return False
    return all(tags.get(f"CLASS_{k}") == v[0] for k, v in SCENE_CLASSES.items())


_replaceable = refuse_unless_ours_tif(_earlier_truth)


def write_scene(
    out_dir: str | os.PathLike[str],
    *,
    width: int = 800,
    height: int = 800,
    seed: int = 42,
    pixel_size: float = 30.0,
    crs: str = "EPSG:32613",
    n_points: int = 600,
) -> dict[str, Path]:
    """Write ``B1.TIF``..``B7.TIF`` to ``out_dir/scene`` and truth + points to ``out_dir/labels``.

    Returns
    -------
    dict
        Paths of what was written: ``scene`` (folder), ``truth`` and ``points``.
    """
    out = Path(out_dir)
    scene_dir, labels_dir = out / "scene", out / "labels"
    _check_replaceable(
        [scene_dir / f"{b}.TIF" for b in BANDS] + [labels_dir / "truth.tif"], out_dir
    )
    scene = make_scene(width, height, seed=seed, pixel_size=pixel_size, crs=crs)
    _write_bands(scene, scene_dir, seed)
    truth_path = _write_truth(scene, labels_dir / "truth.tif")
    points_path = labels_dir / "points.geojson"
    fc = _points_geojson(sample_points(scene, n_points, seed=seed), crs)
    with atomic_path(points_path) as tmp:
        tmp.write_text(json.dumps(fc))
    return {"scene": scene_dir, "truth": truth_path, "points": points_path}


def _check_replaceable(tifs: list[Path], out_dir: str | os.PathLike[str]) -> None:
    """Raise an OutputError if one of ``tifs`` exists and is not ours to replace."""
    # all checked before the first is written: no half-replaced scene
    for p in tifs:
        why = _replaceable(p) if p.exists() or p.is_symlink() else None
        if why:
            raise OutputError(
                f"refusing to replace {p} (out_dir={out_dir}): {why}; set out_dir to a "
                f"folder of its own, or move that file away",
                arguments=outside(why, {"out_dir": "write_scene.out_dir"}),
            )


def _write_bands(scene: Scene, scene_dir: Path, seed: int) -> None:
    """Write each band of ``scene`` as ``<band>.TIF`` in ``scene_dir``."""
    for band, name, arr in zip(BANDS, BAND_NAMES, scene.bands, strict=True):
        write_geotiff(
            scene_dir / f"{band}.TIF",
            arr,
            crs=scene.crs,
            transform=scene.transform,
            nodata=NODATA,
            band_names=[name],
            tags={
                "BAND": band,
                "NAME": name,
                "SCALE": 1 / SCALE,
                "SOURCE": "geoensemble.synthetic",
                "SEED": seed,
                OUTPUT_TAG: "scene",
            },
            replace_if=_replaceable,
        )


def _write_truth(scene: Scene, path: Path) -> Path:
    """Write the scene's truth raster with its class names and colours; its path."""
    class_tags = {f"CLASS_{k}": v[0] for k, v in SCENE_CLASSES.items()}
    return write_geotiff(
        path,
        scene.truth,
        crs=scene.crs,
        transform=scene.transform,
        nodata=255,
        tags={**class_tags, OUTPUT_TAG: "truth"},
        colormap={k: v[1] for k, v in SCENE_CLASSES.items()},
        replace_if=_replaceable,
    )


def _points_geojson(points: list[dict[str, object]], crs: str) -> dict[str, object]:
    """The labelled points as a GeoJSON FeatureCollection in ``crs`` (``EPSG:<code>``)."""
    epsg = crs.split(":")[-1]
    return {
        "type": "FeatureCollection",
        # Legacy named CRS member: GDAL/OGR and QGIS honour it for projected coordinates.
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}},
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [p["x"], p["y"]]},
                "properties": {"class": p["class"], "class_name": p["class_name"]},
            }
            for p in points
        ],
    }
