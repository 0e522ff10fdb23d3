"""The verdict of the timing tests (no account enumeration by timing): do the
answers for known and unknown addresses come from two distributions?"""

from __future__ import annotations

import statistics


def verdict(known_ms: list[float], unknown_ms: list[float]) -> tuple[bool, str]:
    """(leaks, summary). A leak needs both a median gap beyond a margin (2 ms
    or 15 %) and one side clearly slower in pairwise comparisons (the
    probability that a known answer is slower than an unknown one away from
    0.5 by more than 0.2), so noise in one figure alone never fails."""
    med_k, med_u = statistics.median(known_ms), statistics.median(unknown_ms)
    margin = max(2.0, 0.15 * min(med_k, med_u))
    slower = sum(1.0 if k > u else 0.5 if k == u else 0.0 for k in known_ms for u in unknown_ms) / (
        len(known_ms) * len(unknown_ms)
    )
    leaks = abs(med_k - med_u) > margin and abs(slower - 0.5) > 0.2
    summary = (
        f"median known {med_k:.1f} ms, unknown {med_u:.1f} ms (margin {margin:.1f} ms); "
        f"P(known slower) = {slower:.2f}"
    )
    return leaks, summary
