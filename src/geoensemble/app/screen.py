"""What a stage prints goes through the same redaction as files and tags.

MLflow prints its own ``View run ... at: <tracking URI>`` lines, Hydra echoes overrides in its
errors, and any library may log a URI: with a tracking URI that carries ``user:password@``,
each of those would show the password. The command line owns its process, so for the life of
a stage it writes ``sys.stdout`` and ``sys.stderr`` through :class:`RedactedStream` and builds
every log record with its message redacted (the log file included); both are restored after.
A notebook calling the library keeps its own streams and logging untouched.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from geoensemble.redact import redact_uri


class RedactedStream:
    """A text stream that writes whole lines (or ``\\r`` progress updates) redacted.

    A line is held until its end so that a URI written in pieces is still recognised.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        cut = max(self._pending.rfind("\n"), self._pending.rfind("\r"))
        if cut >= 0:
            done, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
            self._stream.write(redact_uri(done))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(redact_uri(self._pending))
            self._pending = ""
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding...
        return getattr(self._stream, name)


@contextlib.contextmanager
def redacted_screen() -> Iterator[None]:
    """Redact ``sys.stdout``, ``sys.stderr`` and every log record until the block ends."""
    old_out, old_err = sys.stdout, sys.stderr
    old_factory = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = old_factory(*args, **kwargs)
        with contextlib.suppress(Exception):  # a bad format string stays logging's to report
            record.msg, record.args = redact_uri(record.getMessage()), None
        return record

    sys.stdout, sys.stderr = RedactedStream(old_out), RedactedStream(old_err)
    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        sys.stdout, sys.stderr = old_out, old_err
        logging.setLogRecordFactory(old_factory)
