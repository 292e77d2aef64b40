"""STAC inputs: an item, an item collection (a file or a URL) or a STAC API search.

Each raster asset becomes a candidate layer read lazily, window by window, through the same
GDAL sources as a folder's files (so layer specs, alignment, product presets and the QA
mask apply unchanged). Naming rule: with a product preset (``product``), an asset becomes
the preset's band when its key is one of the band's STAC keys (``red``, ``nir08``,
``qa_pixel``; ``B04``, ``SCL``) or its file name matches the band's file pattern; without one,
the asset key is the layer name. Several items give each layer the item's date as a suffix
(``red_20230715``), or the item id when two items share a date.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urljoin
from urllib.request import urlopen

from geoensemble.errors import InputFileError, LayerNotFoundError
from geoensemble.io.arguments import outside
from geoensemble.io.products import Product, get_product
from geoensemble.io.remote import is_url, vsi_path
from geoensemble.io.sources import GdalBand, gdal_bands
from geoensemble.redact import redact_uri

#: Seconds any STAC request may take (the item JSON, an API page).
TIMEOUT = 30
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")
_SKIP_ROLES = {"thumbnail", "overview", "metadata", "visual"}


def _load_json(source: str) -> dict[str, Any]:
    try:
        if is_url(source):
            with urlopen(source, timeout=TIMEOUT) as resp:
                return dict(json.loads(resp.read()))
        return dict(json.loads(Path(source).read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise InputFileError(
            f"cannot read the STAC document {redact_uri(source)}: {exc}. Give a STAC item or "
            f"item collection JSON (a file or an http(s) URL)"
        ) from None


def load_items(source: str) -> list[Any]:
    """The STAC items of an item or item collection JSON (pystac objects), each with its
    self href set so relative asset hrefs resolve."""
    import pystac

    doc = _load_json(source)
    base = source if is_url(source) else str(Path(source).resolve())
    kind = doc.get("type")
    if kind == "Feature":
        return [pystac.Item.from_dict(doc, href=_self_href(doc, base))]
    if kind == "FeatureCollection":
        return [pystac.Item.from_dict(f, href=_self_href(f, base)) for f in doc["features"]]
    raise InputFileError(
        f"{redact_uri(source)} is not a STAC item or item collection (its type is {kind!r}, "
        f"expected 'Feature' or 'FeatureCollection')"
    )


def _self_href(d: dict[str, Any], base: str) -> str:
    for link in d.get("links", []):
        if link.get("rel") == "self" and link.get("href"):
            return str(urljoin(base, link["href"]))
    return base


def search_items(api: str, search: Any) -> list[Any]:
    """Items of a STAC API search (a :class:`~geoensemble.io.spec.StacSearch`: collections,
    bbox, datetime, max_cloud, limit), through pystac-client with bounded requests."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    query = {"eo:cloud_cover": {"lte": search.max_cloud}} if search.max_cloud is not None else None
    try:
        client = Client.open(api, timeout=TIMEOUT)
        found = client.search(
            collections=list(search.collections) or None,
            bbox=list(search.bbox) if search.bbox else None,
            datetime=search.datetime,
            query=query,
            max_items=search.limit,
        )
        items = list(found.items())
    except (APIError, OSError, ValueError) as exc:
        raise InputFileError(
            f"the STAC API search at {redact_uri(api)} failed: {exc}. Check path (the "
            f"API root) and stac",
            arguments=outside(str(exc), {"path": "ReadSpec.path", "stac": "ReadSpec.stac"}),
        ) from None
    if not items:
        raise LayerNotFoundError(
            f"the STAC API search at {redact_uri(api)} found no item: widen stac "
            f"(collections, bbox, datetime, max_cloud)",
            arguments={"stac": "ReadSpec.stac"},
        )
    return items


def _raster_assets(item: Any) -> dict[str, str]:
    """Asset key -> absolute href of the item's raster assets (no thumbnails, no metadata)."""
    out = {}
    for key, asset in item.assets.items():
        href = asset.get_absolute_href() or asset.href
        roles = set(asset.roles or [])
        media = (asset.media_type or "").lower()
        is_raster = (
            "tiff" in media
            or "jp2" in media
            or href.split("?")[0].lower().endswith(_RASTER_SUFFIXES)
        )
        if is_raster and not (roles & _SKIP_ROLES and "data" not in roles):
            out[key] = href
    return out


def _layer_of(product: Product | None, key: str, href: str) -> str | None:
    if product is None:
        return key
    import re

    name = href.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    for band in product.bands:
        if key.lower() in band.stac_keys or key.upper() == band.name:
            return band.name
        if re.search(band.pattern, name, re.IGNORECASE):
            return band.name
    return None


def item_sources(items: Sequence[Any], product_name: str) -> list[tuple[str, list[GdalBand]]]:
    """(layer key, sources) per raster asset of ``items``, by the naming rule above."""
    product = get_product(product_name)
    if product is not None and len(items) > 1:
        raise LayerNotFoundError(
            f"product={product_name} maps one item's assets, but the STAC input has "
            f"{len(items)} items ({[i.id for i in items][:4]}): narrow the search "
            f"(stac.limit=1) or give one item",
            arguments={"product": "ReadSpec.product", "stac.limit": "StacSearch.limit"},
        )
    dates = [i.datetime.strftime("%Y%m%d") if i.datetime else i.id for i in items]
    tags = dates if len(set(dates)) == len(dates) else [i.id for i in items]
    out = []
    for item, tag in zip(items, tags, strict=True):
        for key, href in _raster_assets(item).items():
            name = _layer_of(product, key, href)
            if name is None:
                continue
            path = vsi_path(href) if is_url(href) else href.removeprefix("file://")
            label = f"{redact_uri(href)} (STAC item {item.id}, asset {key})"
            layer = name if len(items) == 1 else f"{name}_{tag}"
            out.append((layer, gdal_bands(path, label=label)))
    if not out:
        raise LayerNotFoundError(
            "the STAC input has no raster asset"
            + (f" that product={product_name} knows" if product else "")
            + ": check the item's assets (GeoTiff/COG or JPEG2000 hrefs)",
            arguments={"product": "ReadSpec.product"},
        )
    return out
