"""What a process costs, read from /proc: CPU seconds, resident memory, wake-ups; and pinning.

Linux only (the benchmark's machine); elsewhere the readers return NaN so a run still
reports its latencies. CPU comes from utime + stime in /proc/PID/stat, which counts every
thread, live or exited, in clock ticks (usually 10 ms): enough over thousands of requests.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds the process has used so far, all threads included."""
    if pid is None:
        return math.nan
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_kib(pid: int | None) -> float:
    """Resident set size in KiB (VmRSS)."""
    if pid is None:
        return math.nan
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1])
    except OSError:
        pass
    return math.nan


def wakeups(pid: int | None) -> tuple[float, float]:
    """(voluntary, involuntary) context switches summed over the process's live threads.

    A voluntary switch is a thread going to sleep (and so, later, waking up): the count that
    costs a laptop battery. Involuntary ones are preemptions, mostly other load on the machine.
    """
    if pid is None:
        return math.nan, math.nan
    vol = invol = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return math.nan, math.nan
    for task in tasks:
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                vol += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                invol += int(line.split()[1])
    return float(vol), float(invol)


def threads(pid: int | None) -> int:
    try:
        return len(list(Path(f"/proc/{pid}/task").iterdir()))
    except (OSError, TypeError):
        return 0


def cores(proxy_cpu: int | None = None, load_cpu: int | None = None) -> tuple[int | None, int | None]:
    """The core for proxies under test and the one for the load generator (None: don't pin).

    With two or more usable cores the proxy gets the last one and the load generator (client
    and fake upstream) the first, so the two sides never compete for one core.
    """
    try:
        usable = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(usable) < 2:
        return None, None
    proxy = usable[-1] if proxy_cpu is None else proxy_cpu
    load = usable[0] if load_cpu is None else load_cpu
    return proxy, load


def pin(pid: int, cpu: int | None) -> None:
    """Pin a running process, every thread it has, to one core (threads it starts inherit)."""
    if cpu is None:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), {cpu})
        except OSError:
            pass  # the thread ended meanwhile


def pinned(cpu: int | None) -> Callable[[], None] | None:
    """A `preexec_fn` that pins a child (and every thread it will start) to one core."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})
