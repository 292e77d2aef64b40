"""Rasters by URL: HTTP(S) and S3 through GDAL's ``/vsicurl/`` and ``/vsis3/``.

Reads stay window by window (a COG's tiles are fetched with range requests) inside a scoped
:class:`rasterio.Env` holding settings that suit cloud reads; nothing process-wide changes.
Credentials come from the environment only (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_S3_ENDPOINT``, ``GDAL_HTTP_USERPWD``...), which
GDAL reads itself; labels that reach messages, stores and reports are redacted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from geoensemble.errors import InputFileError
from geoensemble.redact import redact_uri

URL_SCHEMES = ("http://", "https://", "s3://")
_VSI_NETWORK = ("/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/", "/vsiadls/", "/vsioss/", "/vsiswift/")

#: GDAL settings for reading COGs over the network (a variable set in the environment wins).
CLOUD_OPTIONS: dict[str, str] = {
    # opening a file must not list its "directory" (HTTP has none; S3 listings are slow)
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    # never probe for side-car files (.aux.xml, .msk, .ovr) that a COG does not need
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF,.jp2,.JP2,.json",
    "GDAL_HTTP_MAX_RETRY": "4",  # 429/5xx and dropped connections, with back-off
    "GDAL_HTTP_RETRY_DELAY": "1",  # seconds, doubled each retry
    "GDAL_HTTP_TIMEOUT": "60",  # every network call is bounded
    "GDAL_HTTP_CONNECTTIMEOUT": "15",
    "GDAL_HTTP_MULTIRANGE": "YES",  # a window's tiles in one multi-range request
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "VSI_CACHE": "TRUE",  # a per-file block cache: headers and tiles are fetched once
    "VSI_CACHE_SIZE": "26214400",  # 25 MB per open file
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",  # the COG header in the first request
}


def is_url(text: str) -> bool:
    """Whether ``text`` is an http(s)/s3 URL or a GDAL network path (``/vsicurl/...``)."""
    return text.startswith(URL_SCHEMES) or text.startswith(_VSI_NETWORK)


def vsi_path(url: str) -> str:
    """The GDAL path of ``url``: ``/vsicurl/https://...`` or ``/vsis3/bucket/key``."""
    if url.startswith(_VSI_NETWORK):
        return url
    if url.startswith("s3://"):
        return "/vsis3/" + url.removeprefix("s3://")
    if url.startswith(("http://", "https://")):
        return "/vsicurl/" + url
    raise InputFileError(f"{redact_uri(url)} is not an http(s):// or s3:// URL")


def url_name(url: str) -> str:
    """The file name at the end of ``url`` (without query string)."""
    tail = url
    for prefix in _VSI_NETWORK:
        tail = tail.removeprefix(prefix)
    return urlsplit(tail).path.rstrip("/").rsplit("/", 1)[-1]


def cloud_env(path: str) -> contextlib.AbstractContextManager[Any]:
    """A scoped :class:`rasterio.Env` with :data:`CLOUD_OPTIONS` for a network ``path``
    (options the user set in the environment are left to GDAL), else a no-op."""
    if not path.startswith(_VSI_NETWORK):
        return contextlib.nullcontext()
    import rasterio

    return rasterio.Env(**{k: v for k, v in CLOUD_OPTIONS.items() if k not in os.environ})


def read_listing(path: Path) -> list[str]:
    """The URLs (or paths) of a listing file: one a line, ``#`` comments and blanks skipped.

    Raises
    ------
    InputFileError
        If the listing is empty.
    """
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    urls = [ln for ln in lines if ln and not ln.startswith("#")]
    if not urls:
        raise InputFileError(
            f"path {path} lists no URL: write one COG URL a line (http(s):// or s3://)",
            arguments={"path": "ReadSpec.path"},
        )
    return urls


LISTING_SUFFIXES = (".txt", ".urls", ".list")


def input_urls(path: str, extra: Sequence[str] = ()) -> list[str]:
    """The URLs ``path`` stands for: itself (a URL), the lines of a listing file, or
    ``extra`` (the API's list); empty for local inputs."""
    if extra:
        return list(extra)
    if is_url(path):
        return [path]
    p = Path(path)
    if p.suffix.lower() in LISTING_SUFFIXES and p.is_file():
        return read_listing(p)
    return []
