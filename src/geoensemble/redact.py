"""Secrets and home paths kept out of what is logged to MLflow (params, configs, messages)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Key names whose values are never logged (matched per dotted segment, case-insensitive).
SECRET_KEY = re.compile(
    r"(^|[._-])(password|passwd|pwd|secret|token|credentials?|api_?key|access_?key|"
    r"secret_?key|private_?key|auth|key|sig|signature)($|[._-])",
    re.IGNORECASE,
)
# user:password@ in URIs, also as Hydra escapes them in its messages (http\://alice\:pw@)
_URI_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][\w+.-]*\\*://)(?P<user>[^/@:\s\\]*)(?P<sep>\\*:)[^/@\s]*@"
)
# name=value pairs in query strings (?token=...) and override lists (a.password=...)
_NAME_VALUE = re.compile(r"(?P<pre>^|[?&;\s])(?P<name>[\w.+~-]+)=(?P<value>[^&;#\s]*)")
REDACTED = "***"


def redact_uri(text: str) -> str:
    """``text`` with URI passwords and secret ``name=value`` pairs replaced by ``***``."""
    text = _URI_CREDENTIALS.sub(rf"\g<scheme>\g<user>\g<sep>{REDACTED}@", text)

    def pair(m: re.Match[str]) -> str:
        name = m["name"].lstrip("+~")
        if not SECRET_KEY.search(name):
            return m[0]
        if name.lower() == "key" and m["pre"] not in "?&;":  # prose: "write key=value"
            return m[0]
        return f"{m['pre']}{m['name']}={REDACTED}"

    return _NAME_VALUE.sub(pair, text)


def redact_value(key: str, value: Any) -> str:
    """A parameter value fit to log: secrets hidden, the home directory shown as ``~``.

    Values of secret-looking keys (``password``, ``token``, ``secret``, ``api_key``, ...)
    become ``***``; credentials inside URIs and secret query parameters too; the user's
    home directory prefix becomes ``~`` so runs do not record who ran them, or where.
    """
    text = str(value)
    if value is not None and text != "" and SECRET_KEY.search(key):
        return REDACTED
    text = redact_uri(text)
    home = str(Path.home()).rstrip("/")
    if home and home != "/" and home in text:
        text = re.sub(rf"{re.escape(home)}(?=/|$|[\s,;:'\"\]}})])", "~", text)
    return text


def redacted_config(tree: Any, prefix: str = "") -> Any:
    """A nested config with every value fit to log (see :func:`redact_value`); numbers,
    booleans and nulls keep their type, unless their key is a secret's."""
    key = prefix.rstrip(".")
    if isinstance(tree, Mapping):
        return {str(k): redacted_config(v, f"{prefix}{k}.") for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [redacted_config(v, prefix) for v in tree]
    if tree is None or isinstance(tree, bool):
        return tree
    if isinstance(tree, int | float) and not SECRET_KEY.search(key):
        return tree
    return redact_value(key, tree)
