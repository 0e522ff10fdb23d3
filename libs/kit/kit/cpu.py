"""CPU-heavy work (password hashing, spreadsheets, PDF) off the eventlet hub.

Under a nameko worker the hub must keep turning or the AMQP heartbeat starves
and the broker re-runs the job (STACK.md #10): such work goes to eventlet's
thread pool. Outside eventlet (tests, scripts) it simply runs.
"""

from __future__ import annotations


def offload(fn, *args, **kwargs):
    try:
        from eventlet import tpool
        from eventlet.patcher import is_monkey_patched
    except ImportError:  # pragma: no cover
        return fn(*args, **kwargs)
    if is_monkey_patched("thread"):
        return tpool.execute(fn, *args, **kwargs)
    return fn(*args, **kwargs)
