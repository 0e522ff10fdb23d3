"""The upload cap and the spreadsheet zip limits are defined once, in
``kit.limits``: the gateway, files and survey all use those values, and the
``MAX_UPLOAD_BYTES`` environment variable moves them all at once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kit import limits

ROOT = Path(__file__).resolve().parents[3]
PATHS = ("libs/kit", "services/files", "services/survey", "gateway")

# every module's view of the limits, printed as JSON by a fresh interpreter
PROBE = """
import json
from files import corpus, xlsx_safety
from files.domain import meta
from gateway import uploads
from kit import limits
from survey import xlsx
from survey.domain import attachments

defaults = xlsx_safety.XlsxLimits()
print(json.dumps({
    "kit": limits.MAX_UPLOAD_BYTES,
    "gateway": uploads.MAX_UPLOAD_BYTES,
    "files_meta": meta.DEFAULT_MAX_BYTES,
    "files_corpus": corpus.MAX_BYTES,
    "files_xlsx": defaults.max_bytes,
    "survey_attachments": attachments.MAX_BYTES,
    "gateway_message": uploads.TOO_LARGE,
}))
"""


def run_probe(**env) -> dict:
    environ = {key: value for key, value in os.environ.items() if key != "MAX_UPLOAD_BYTES"}
    environ.update(PYTHONPATH=os.pathsep.join(str(ROOT / p) for p in PATHS), **env)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=environ, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_module_uses_the_one_upload_cap():
    from files import corpus, xlsx_safety
    from files.domain import meta
    from gateway import uploads
    from survey.domain import attachments

    assert limits.DEFAULT_MAX_UPLOAD_BYTES == 10 * 1024 * 1024
    for value in (
        uploads.MAX_UPLOAD_BYTES,
        meta.DEFAULT_MAX_BYTES,
        corpus.MAX_BYTES,
        xlsx_safety.XlsxLimits().max_bytes,
        attachments.MAX_BYTES,
    ):
        assert value is limits.MAX_UPLOAD_BYTES


def test_files_and_the_survey_reader_share_the_zip_limits():
    from files import xlsx_safety
    from survey import xlsx

    defaults = xlsx_safety.XlsxLimits()
    assert defaults.max_entries == xlsx.MAX_ENTRIES == limits.XLSX_MAX_ENTRIES
    assert defaults.max_uncompressed == xlsx.MAX_UNCOMPRESSED == limits.XLSX_MAX_UNCOMPRESSED_BYTES
    assert defaults.max_ratio == xlsx.MAX_RATIO == limits.XLSX_MAX_RATIO
    assert xlsx_safety.RATIO_FLOOR == xlsx.RATIO_FLOOR == limits.XLSX_RATIO_FLOOR
    # a single part the reader takes in is bounded by the whole package files allows
    assert xlsx.MAX_XML_PART <= defaults.max_uncompressed


def test_the_environment_variable_moves_every_module_at_once():
    assert run_probe() == {
        **dict.fromkeys(
            ("kit", "gateway", "files_meta", "files_corpus", "files_xlsx", "survey_attachments"),
            10 * 1024 * 1024,
        ),
        "gateway_message": "Le fichier dépasse la taille maximale de 10 Mo.",
    }
    moved = run_probe(MAX_UPLOAD_BYTES="3145728")
    assert moved.pop("gateway_message") == "Le fichier dépasse la taille maximale de 3 Mo."
    assert set(moved.values()) == {3 * 1024 * 1024}


@pytest.mark.parametrize("raw", ["0", "-1", "dix"])
def test_a_bad_value_is_refused_at_start(raw):
    environ = dict(os.environ, PYTHONPATH=str(ROOT / "libs/kit"), MAX_UPLOAD_BYTES=raw)
    result = subprocess.run(
        [sys.executable, "-c", "import kit.limits"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "MAX_UPLOAD_BYTES" in result.stderr


def test_no_other_module_defines_a_10_mib_cap():
    cap = re.compile(r"\b10 \* (?:1024 \* 1024|MiB)\b")
    sources = [ROOT / "gateway" / "gateway", ROOT / "libs" / "kit" / "kit"]
    sources += [path for path in (ROOT / "services").glob("*/*") if (path / "__init__.py").exists()]
    found = [
        str(path.relative_to(ROOT))
        for folder in sources
        for path in folder.rglob("*.py")
        if cap.search(path.read_text(encoding="utf-8"))
    ]
    assert found == ["libs/kit/kit/limits.py"]


def test_sizes_read_as_french_users_read_them():
    assert limits.format_size(10 * 1024 * 1024) == "10 Mo"
    assert limits.format_size(1536) == "1,5 Ko"
    assert limits.format_size(12) == "12 octets"
