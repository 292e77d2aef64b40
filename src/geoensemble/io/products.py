"""Product presets: the file (or STAC asset) names, scaling and quality band of real products.

A preset turns a folder (or a list of URLs, or a STAC item) of one product into named layers
with the product's documented scale and offset, and its quality band applied either as a mask
(flagged pixels become NaN in every layer, so the NaN policy handles them) or as 0/1 flag
layers. Layer names stay the product's own (``SR_B4``, ``B04``), and the band roles of the
feature presets (:data:`geoensemble.features.indices.SENSORS`) point at them, so ``ndvi`` works.

Sources: USGS *Landsat 8-9 Collection 2 Level-2 Science Product Guide* (LSDS-1619) for the
scale factors and the ``QA_PIXEL`` bits; ESA *Sentinel-2 Products Specification* and the
processing-baseline 04.00 note for ``BOA_ADD_OFFSET`` and the scene classification (SCL).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from geoensemble.errors import ConfigError, LayerNotFoundError
from geoensemble.io.grid import Grid
from geoensemble.io.spec import LayerSpec
from geoensemble.io.window import Layer


@dataclass(frozen=True)
class Band:
    """One file of a product: its layer name, how to recognise it, and its scaling."""

    name: str
    pattern: str  # regular expression on the file name (case-insensitive); group 'res' ranks
    scale: float = 1.0
    offset: float = 0.0
    nodata: tuple[float, ...] = ()
    categorical: bool = False
    stac_keys: tuple[str, ...] = ()  # asset keys of the common STAC catalogs


@dataclass(frozen=True)
class Flag:
    """A quality condition: ``(qa >> bit) & (2**bits - 1)`` in ``values``."""

    bit: int
    bits: int
    values: tuple[int, ...]
    meaning: str


@dataclass(frozen=True)
class QaRule:
    """The quality layer of a product, its named flags and the ones masked by default."""

    layer: str
    flags: Mapping[str, Flag]
    default_mask: tuple[str, ...]


@dataclass(frozen=True)
class Product:
    """A product preset (see :data:`PRODUCTS`)."""

    name: str
    bands: tuple[Band, ...]
    qa: QaRule


#: Landsat 8/9 Collection 2 Level-2 ``QA_PIXEL`` bits (LSDS-1619, table 6-3).
LANDSAT_QA = QaRule(
    layer="QA_PIXEL",
    flags={
        "fill": Flag(0, 1, (1,), "fill (outside the scene)"),
        "dilated_cloud": Flag(1, 1, (1,), "dilated cloud"),
        "cirrus": Flag(2, 1, (1,), "cirrus (high confidence)"),
        "cloud": Flag(3, 1, (1,), "cloud"),
        "cloud_shadow": Flag(4, 1, (1,), "cloud shadow"),
        "snow": Flag(5, 1, (1,), "snow"),
        "clear": Flag(6, 1, (1,), "clear (no cloud, no dilated cloud)"),
        "water": Flag(7, 1, (1,), "water"),
        "cloud_confidence_high": Flag(8, 2, (3,), "cloud confidence high (bits 8-9 = 3)"),
        "cloud_shadow_confidence_high": Flag(10, 2, (3,), "cloud shadow confidence high"),
        "snow_confidence_high": Flag(12, 2, (3,), "snow/ice confidence high"),
        "cirrus_confidence_high": Flag(14, 2, (3,), "cirrus confidence high"),
    },
    default_mask=("fill", "dilated_cloud", "cirrus", "cloud", "cloud_shadow", "snow"),
)

#: Sentinel-2 L2A scene classification (SCL) classes.
SCL_CLASSES: dict[int, str] = {
    0: "no_data",
    1: "saturated_defective",
    2: "dark_area",
    3: "cloud_shadow",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium",
    9: "cloud_high",
    10: "thin_cirrus",
    11: "snow",
}

SENTINEL2_QA = QaRule(
    layer="SCL",
    flags={n: Flag(0, 8, (v,), f"SCL class {v}") for v, n in SCL_CLASSES.items()},
    default_mask=(
        "no_data",
        "saturated_defective",
        "cloud_shadow",
        "cloud_medium",
        "cloud_high",
        "thin_cirrus",
        "snow",
    ),
)

_SR_SCALE, _SR_OFFSET = 0.0000275, -0.2
_ST_SCALE, _ST_OFFSET = 0.00341802, 149.0


def _landsat(name: str, keys: tuple[str, ...], **kw: object) -> Band:
    return Band(name, rf"(^|_){name}\.tiff?$", stac_keys=keys, **kw)  # type: ignore[arg-type]


_LANDSAT_BANDS = (
    *(
        _landsat(f"SR_B{i}", keys, scale=_SR_SCALE, offset=_SR_OFFSET, nodata=(0.0,))
        for i, keys in enumerate(
            [
                ("coastal", "sr_b1"),
                ("blue", "sr_b2"),
                ("green", "sr_b3"),
                ("red", "sr_b4"),
                ("nir08", "sr_b5"),
                ("swir16", "sr_b6"),
                ("swir22", "sr_b7"),
            ],
            start=1,
        )
    ),
    _landsat("ST_B10", ("lwir11", "st_b10"), scale=_ST_SCALE, offset=_ST_OFFSET, nodata=(0.0,)),
    _landsat("QA_PIXEL", ("qa_pixel",), categorical=True),
)

# Sentinel-2 band -> asset keys (Earth Search's common names; Planetary Computer's B04...)
_S2_KEYS = {
    "B01": "coastal",
    "B02": "blue",
    "B03": "green",
    "B04": "red",
    "B05": "rededge1",
    "B06": "rededge2",
    "B07": "rededge3",
    "B08": "nir",
    "B8A": "nir08",
    "B09": "nir09",
    "B11": "swir16",
    "B12": "swir22",
}


def _s2_bands(offset: float) -> tuple[Band, ...]:
    def pattern(name: str) -> str:
        return rf"(^|_){name}(_(?P<res>10|20|60)m)?\.(tiff?|jp2)$"

    out = [
        Band(
            b,
            pattern(b),
            scale=1e-4,
            offset=offset,
            nodata=(0.0,),
            stac_keys=(key, b.lower()),
        )
        for b, key in _S2_KEYS.items()
    ]
    out.append(Band("SCL", pattern("SCL"), categorical=True, stac_keys=("scl",)))
    return tuple(out)


#: The product presets by name (``ReadSpec.product``).
PRODUCTS: dict[str, Product] = {
    "landsat_c2_l2": Product("landsat_c2_l2", _LANDSAT_BANDS, LANDSAT_QA),
    # processing baseline >= 04.00 (from 25 January 2022): BOA_ADD_OFFSET = -1000
    "sentinel2_l2a": Product("sentinel2_l2a", _s2_bands(-0.1), SENTINEL2_QA),
    # processing baselines before 04.00: no offset
    "sentinel2_l2a_pre04": Product("sentinel2_l2a_pre04", _s2_bands(0.0), SENTINEL2_QA),
}
#: ``ReadSpec.qa``: what the quality band becomes.
QA_MODES = ("mask", "features", "keep")


def get_product(name: str) -> Product | None:
    """The preset called ``name`` (``none``: no preset).

    Raises
    ------
    ConfigError
        Naming ``product`` (:attr:`ReadSpec.product <geoensemble.io.spec.ReadSpec.product>`)
        and the presets there are.
    """
    if name == "none":
        return None
    if name not in PRODUCTS:
        raise ConfigError(
            f"product={name!r} is invalid: use none or one of {list(PRODUCTS)}",
            arguments={"product": "ReadSpec.product"},
        )
    return PRODUCTS[name]


def check_qa(product: str, qa: str, flags: Sequence[str] | None) -> None:
    """Refuse an unknown ``qa`` mode or flag name, naming the allowed ones."""
    if qa not in QA_MODES:
        raise ConfigError(
            f"qa={qa!r} is invalid: use one of {list(QA_MODES)}", arguments={"qa": "ReadSpec.qa"}
        )
    prod = get_product(product)
    if prod is None or flags is None:
        return
    unknown = [f for f in flags if f not in prod.qa.flags]
    if unknown:
        raise ConfigError(
            f"qa_flags has {unknown}, unknown for {product}: use some of {list(prod.qa.flags)}",
            arguments={"qa_flags": "ReadSpec.qa_flags"},
        )


def _rank(m: re.Match[str]) -> int:
    res = m.groupdict().get("res")
    return int(res) if res else 0


def pick(band: Band, keys: Sequence[str]) -> str | None:
    """The file name (or key) among ``keys`` that holds ``band``: the finest resolution
    when a product ships it at several (Sentinel-2's ``_10m``, ``_20m``, ``_60m``)."""
    rx = re.compile(band.pattern, re.IGNORECASE)
    # a file name matching the pattern, or a key that is the band's name (STAC assets)
    found = [
        (m, k)
        for k in keys
        for m in [rx.search(k.rsplit("/", 1)[-1]) or re.fullmatch(re.escape(band.name), k)]
        if m
    ]
    if not found:
        return None
    best = min(_rank(m) for m, _ in found)
    hits = [k for m, k in found if _rank(m) == best]
    if len(hits) > 1:
        raise LayerNotFoundError(
            f"the product preset finds {len(hits)} files holding {band.name}: {hits[:6]}; keep "
            f"one scene per folder or narrow pattern",
            arguments={"pattern": "ReadSpec.pattern"},
        )
    return hits[0]


def product_specs(product: Product, keys: Sequence[str], *, qa: str) -> list[LayerSpec]:
    """Layer specs for the product's files among ``keys`` (missing bands are left out).

    Raises
    ------
    LayerNotFoundError
        When no band is found, or the quality layer is missing while ``qa`` needs it.
    """
    specs = []
    for band in product.bands:
        key = pick(band, keys)
        if key is None:
            if band.name == product.qa.layer and qa != "keep":
                raise LayerNotFoundError(
                    f"product={product.name}: no {band.name} file among {list(keys)[:8]} "
                    f"but qa={qa} needs it; add it, or set qa=keep",
                    arguments={"product": "ReadSpec.product", "qa": "ReadSpec.qa"},
                )
            continue
        specs.append(
            LayerSpec(
                band.name,
                file="^" + re.escape(key.rsplit("/", 1)[-1]) + "$",
                scale=band.scale,
                offset=band.offset,
                nodata=band.nodata,
                categorical=band.categorical,
            )
        )
    if not [s for s in specs if s.name != product.qa.layer]:
        raise LayerNotFoundError(
            f"product={product.name}: none of its bands is among {list(keys)[:8]}: "
            f"check path and pattern (names like {product.bands[3].pattern!r})",
            arguments={
                "product": "ReadSpec.product",
                "path": "ReadSpec.path",
                "pattern": "ReadSpec.pattern",
            },
        )
    return specs


def flag_hits(rule: QaRule, names: Sequence[str], qa: np.ndarray) -> np.ndarray:
    """Where any flag in ``names`` is set in the float ``qa`` values (NaN counts as set)."""
    bad = np.isnan(qa)
    codes = np.where(bad, 0, qa).astype(np.int64)
    for n in names:
        f = rule.flags[n]
        field = (codes >> f.bit) & ((1 << f.bits) - 1)
        bad |= np.isin(field, f.values)
    return bad


@dataclass(frozen=True)
class MaskedLayer:
    """A layer with NaN wherever the quality layer has one of ``flags`` set."""

    inner: Layer
    qa: Layer
    rule: QaRule
    flags: tuple[str, ...]

    @property
    def grid(self) -> Grid:
        return self.inner.grid

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        out = self.inner.read(rows, cols)
        out[flag_hits(self.rule, self.flags, self.qa.read(rows, cols))] = np.nan
        return out


@dataclass(frozen=True)
class FlagLayer:
    """One quality flag as a 0/1 float layer (NaN where the quality layer has no value)."""

    qa: Layer
    rule: QaRule
    flag: str

    @property
    def grid(self) -> Grid:
        return self.qa.grid

    def read(self, rows: slice, cols: slice) -> np.ndarray:
        q = self.qa.read(rows, cols)
        out = flag_hits(self.rule, (self.flag,), np.where(np.isnan(q), 0, q)).astype("float32")
        out[np.isnan(q)] = np.nan
        return out


def apply_qa(
    layers: Mapping[str, Layer], product: Product, *, qa: str, flags: Sequence[str] | None
) -> dict[str, Layer]:
    """The layers with the product's quality layer applied as ``qa`` says.

    ``mask``: flagged pixels NaN in every layer, the quality layer dropped; ``features``: one
    0/1 layer ``qa_<flag>`` per flag, the quality layer dropped; ``keep``: the quality layer
    left as a categorical layer.
    """
    rule = product.qa
    if qa == "keep" or rule.layer not in layers:
        return dict(layers)
    chosen = tuple(flags) if flags is not None else rule.default_mask
    q = layers[rule.layer]
    out: dict[str, Layer] = {}
    for name, lay in layers.items():
        if name != rule.layer:
            out[name] = MaskedLayer(lay, q, rule, chosen) if qa == "mask" else lay
    if qa == "features":
        for f in chosen:
            out[f"qa_{f}"] = FlagLayer(q, rule, f)
    return out
