"""Deterministic zip archives: the same files in the same order give the same bytes, so the same
SHA-256 and version id, whichever surface built the bundle (`podium deploy`, Covalent, DigitalHub)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable

#: Every member's timestamp (zip's earliest): a file's mtime must not change a version's id.
EPOCH = (1980, 1, 1, 0, 0, 0)


def deterministic_zip(files: Iterable[tuple[str, bytes]]) -> bytes:
    """A deflated zip of `(name, data)` in the order given, each member mode 644 at EPOCH."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()
