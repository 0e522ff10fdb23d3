"""Size limits shared by the gateway and the services, each defined here once.

``MAX_UPLOAD_BYTES``: the cap on one uploaded file (10 MiB), everywhere a
file comes in: the gateway's multipart reader, the files service's default
(``FILES_MAX_BYTES`` and ``FILES_XLSX_MAX_BYTES`` override it there), the
survey service's « Pièces à fournir » check. The environment variable
``MAX_UPLOAD_BYTES`` (a positive number of bytes) overrides it; it is read
once, when this module is first imported, so every process of a deployment
must be given the same value.

The ``XLSX_*`` limits bound a spreadsheet's zip package: the files service
checks every upload against them (``files.xlsx_safety.XlsxLimits`` defaults;
its ``FILES_XLSX_*`` settings may lower them) and the survey service's reader
(``survey.xlsx``) checks them again on the forms files has already accepted.
Both read the same values, so the reader never refuses what files let
through. They are the stricter of the values each module once had.
"""

from __future__ import annotations

import os

MiB = 1024 * 1024

DEFAULT_MAX_UPLOAD_BYTES = 10 * MiB


def _positive_bytes(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RuntimeError(f"{name} must be a positive number of bytes, not {raw!r}") from None
    if value <= 0:
        raise RuntimeError(f"{name} must be a positive number of bytes, not {raw!r}")
    return value


# one uploaded file, in bytes (environment variable MAX_UPLOAD_BYTES)
MAX_UPLOAD_BYTES = _positive_bytes("MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)

# a spreadsheet's zip package
XLSX_MAX_ENTRIES = 500  # entries in the zip
XLSX_MAX_UNCOMPRESSED_BYTES = 60 * MiB  # all entries, uncompressed
XLSX_MAX_RATIO = 100  # uncompressed / compressed size of one entry…
XLSX_RATIO_FLOOR = 1 * MiB  # …judged only for entries larger than this


def format_size(size: int) -> str:
    """``10 Mo``, ``1,5 Ko``, ``12 octets``: sizes as French users read them."""
    unit, factor = next(
        ((u, f) for u, f in (("Mo", MiB), ("Ko", 1024)) if size >= f), ("octets", 1)
    )
    shown = f"{size / factor:.1f}".removesuffix(".0").replace(".", ",")
    return f"{shown} {unit}"
