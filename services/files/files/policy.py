"""One upload policy for every slot, applied before anything is stored.

The order, the same for every slot (a files ``kind``), so that the same
hostile file gets the same code wherever it is sent:

1. the envelope (``domain.meta.decode_content``): ``files.empty``,
   ``files.too_large``;
2. the malware scan of the bytes (``files.scanner``), started at once and
   run beside the content checks (clamd works in its own process): a
   detection is 422 ``files.malware_detected`` whatever else is wrong;
   a configured scanner that gives no verdict is 503
   ``files.scanner_unavailable`` with ``Retry-After`` (fail closed);
3. the type from the magic numbers (``domain.policy``), then that type's own
   checks, whatever the slot: office packages through ``xlsx_safety`` (the
   survey form's zip, macro, external-link, embedded-object and DTD checks,
   ``files.xlsx.*``), PDFs through ``pdf_safety`` (``files.pdf.*``);
4. the slot's allow-list: ``files.type_not_allowed``;
5. for a workbook, its text (shared and inline strings) is scanned too: an
   EICAR string in a cell is a known way past whole-file scans.

A large document kept for people to open later (``may_defer``: a
registration document, an annex, an attachment; never a workbook another
service parses) does not wait for the scan when the checks are done before
it: it is stored quarantined (``scan_status = pending``, served to nobody)
and its verdict is recorded when it comes (``files.scanning``). clamd takes
20-40 ms per MB of a PDF on this hardware, as long as the whole store
otherwise takes; files up to ``wait_bytes`` always wait (their scan costs a
few milliseconds), so a small infected file is still refused at once.

The type decided here is the one stored and served back, never the
client's. ``check_content`` is CPU work with no I/O: the service runs it in
a worker process (``kit.cpu.heavy``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from prometheus_client import Counter, Histogram

from files import pdf_safety, problems, xlsx_safety
from files.domain import policy
from files.domain.meta import Rejected
from files.scanner import Scanner, ScannerUnavailable
from kit.errors import InvalidInput, ServiceError

log = logging.getLogger(__name__)

MALWARE = Counter("files_malware_detected_total", "Uploads refused by the malware scan.", ["kind"])
SCAN_SECONDS = Histogram(
    "files_scan_seconds",
    "Time clamd took to scan one upload (or its extracted text).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UNAVAILABLE = Counter(
    "files_scanner_unavailable_total", "Uploads refused because clamd gave no verdict."
)
RETRY_AFTER = 30


@dataclass(frozen=True)
class Decision:
    type: str
    content_type: str
    sheets: tuple[str, ...] = ()
    text: str = ""
    # the scan still running when the answer was allowed not to wait for it
    pending: Any = field(default=None, compare=False)


def _invalid(exc: Rejected) -> ServiceError:
    if exc.field:
        return problems.error(exc.code, fields={exc.field: [exc.message]}, **exc.params)
    return problems.error(exc.code, **exc.params)


def check_content(
    data: bytes,
    kind: str,
    limits: xlsx_safety.XlsxLimits,
    only: frozenset[str] | None = None,
    collect_text: bool = True,
) -> Decision:
    """Steps 3 and 4: the decided type, or ``InvalidInput``. ``only``
    narrows the slot's list (``store_xlsx`` takes workbooks only);
    ``collect_text``: gather a workbook's cell text for the scanner (not
    worth its cost when no scanner runs)."""
    magic = policy.magic_of(data)
    sheets: tuple[str, ...] = ()
    text = ""
    if magic == "zip":
        key, verdict = xlsx_safety.inspect_zip(data, limits, collect_text=collect_text)
        if verdict is not None:
            sheets, text = verdict.sheets, verdict.text
    elif magic == "pdf":
        pdf_safety.check(data)
        key = "pdf"
    elif magic == "text":
        key = "csv"
    else:
        key = magic  # an image, or None: nothing we know
    try:
        if key is None:
            raise policy.not_allowed(kind)
        file_type = policy.allowed(kind, key, only)
    except Rejected as exc:
        raise _invalid(exc) from None
    return Decision(file_type.key, file_type.content_type, sheets, text)


def malware_detected(signature: str | None) -> ServiceError:
    details = {"signature": signature} if signature else {}
    return problems.error("files.malware_detected", **details)


def scanner_unavailable() -> ServiceError:
    return problems.error("files.scanner_unavailable", retry_after=RETRY_AFTER)


class _Done:
    """What ``run_now`` gives: the outcome of a call already made."""

    def __init__(self, fn: Callable[..., Any], *args: Any):
        try:
            self.value, self.error = fn(*args), None
        except Exception as exc:  # noqa: BLE001 - re-raised by wait()
            self.value, self.error = None, exc

    def wait(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def run_now(fn: Callable[..., Any], *args: Any) -> _Done:
    """The default ``spawn``: call now (the service uses ``eventlet.spawn``)."""
    return _Done(fn, *args)


def _scan(scanner: Scanner, data: bytes):
    start = time.perf_counter()
    try:
        return scanner.scan(data)
    finally:
        SCAN_SECONDS.observe(time.perf_counter() - start)


def finished(job) -> bool:
    """An eventlet GreenThread is ``dead`` once it returned; ``run_now``'s
    outcome is always there."""
    return bool(getattr(job, "dead", True))


def _verdict_of(job, kind: str, size: int) -> None:
    try:
        result = job.wait()
    except ScannerUnavailable as exc:
        UNAVAILABLE.inc()
        log.error("upload refused, no malware verdict: %s", exc)
        raise scanner_unavailable() from None
    if result.infected:
        MALWARE.labels(kind).inc()
        log.warning(
            "upload refused: malware detected",
            extra={"kind": kind, "signature": result.signature, "size": size},
        )
        raise malware_detected(result.signature)


def inspect(
    data: bytes,
    kind: str,
    *,
    limits: xlsx_safety.XlsxLimits,
    scanner: Scanner,
    offload: Callable[..., Any],
    spawn: Callable[..., Any] = run_now,
    only: frozenset[str] | None = None,
    may_defer: bool = False,
    wait_bytes: int = 0,
) -> Decision:
    """Steps 2 to 5 on decoded bytes: the decision, or the refusal.

    With ``may_defer``, a file over ``wait_bytes`` whose scan is still
    running once the content checks passed comes back with the running scan
    in ``Decision.pending``: the caller stores it quarantined and records the
    verdict later. A refused file always waits for its verdict (a detection
    is the code that wins)."""
    job = spawn(_scan, scanner, data) if scanner.enabled else None
    refusal: InvalidInput | None = None
    decision: Decision | None = None
    try:
        decision = offload(check_content, data, kind, limits, only, scanner.enabled)
    except InvalidInput as exc:
        refusal = exc
    pending = None
    if job is not None:
        if refusal is None and may_defer and len(data) > wait_bytes and not finished(job):
            pending = job
        else:
            _verdict_of(job, kind, len(data))
    if refusal is not None:
        raise refusal
    assert decision is not None
    if decision.text and scanner.enabled:
        _verdict_of(run_now(_scan, scanner, decision.text.encode("utf-8")), kind, len(data))
    return replace(decision, pending=pending) if pending is not None else decision
