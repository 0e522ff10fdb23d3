"""CPU time per process group, read from ``/proc`` (Linux; empty elsewhere).

The bench snapshots it right before and after each measured window, so the
report can say where the CPU of one call goes: the bench client itself, the
gateway, the service, RabbitMQ, PostgreSQL. ``/proc/<pid>/stat`` gives user
and system time in clock ticks; a process that exits between two snapshots
is simply not counted (none should during a window).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    pgrp: int
    comm: str
    cpu_seconds: float

    def cmdline(self) -> str:
        try:
            raw = (PROC / str(self.pid) / "cmdline").read_bytes()
        except OSError:
            return ""
        return raw.replace(b"\0", b" ").decode(errors="replace")


Matcher = Callable[[ProcInfo], bool]


def parse_stat(pid: int, text: str) -> ProcInfo:
    """One ``/proc/<pid>/stat`` line (the command name may hold spaces)."""
    comm = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()
    pgrp = int(rest[2])
    utime, stime = int(rest[11]), int(rest[12])
    return ProcInfo(pid, pgrp, comm, (utime + stime) / TICKS)


def processes() -> list[ProcInfo]:
    found = []
    if not PROC.is_dir():
        return found
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
            found.append(parse_stat(int(entry.name), text))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return found


def in_group(leader: int) -> Matcher:
    """A process started with its own session (launcher) and its children."""
    return lambda info: info.pgrp == leader


def named(comm: str) -> Matcher:
    return lambda info: info.comm == comm


def postgres_of(prefix: str) -> Matcher:
    """PostgreSQL backends serving the bench's own databases."""
    return lambda info: info.comm == "postgres" and prefix in info.cmdline()


def this_process() -> Matcher:
    pid = os.getpid()
    return lambda info: info.pid == pid


class CpuMeter:
    """``snapshot()`` → CPU seconds so far of each named group of processes."""

    def __init__(self, groups: dict[str, Matcher]):
        self.groups = dict(groups)

    def snapshot(self) -> dict[str, float]:
        totals = dict.fromkeys(self.groups, 0.0)
        for info in processes():
            for name, matches in self.groups.items():
                if matches(info):
                    totals[name] += info.cpu_seconds
                    break
        return totals


def machine_busy_seconds(stat: Path = PROC / "stat") -> float | None:
    """CPU seconds every process of the machine has spent so far (all cores,
    idle and I/O wait excluded); None without ``/proc/stat``."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    return busy_ticks(first) / TICKS


def busy_ticks(fields: list[str]) -> int:
    """The busy ticks of the ``cpu`` line of ``/proc/stat``: user, nice,
    system, irq, softirq, steal (not idle, iowait, nor guest, already in user)."""
    values = [int(v) for v in fields[1:9]] + [0] * max(0, 9 - len(fields))
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return user + nice + system + irq + softirq + steal


def per_call_ms(before: dict[str, float], after: dict[str, float], calls: int) -> dict:
    """CPU milliseconds per call of each group between two snapshots."""
    if calls <= 0:
        return {}
    return {
        name: round((after.get(name, 0.0) - before.get(name, 0.0)) * 1000 / calls, 3)
        for name in after
    }
