"""Run the real broker (`python -m tests.fakes.fault_launcher -m broker ARGS`) with one step of
a refresh armed to fail or to kill the process.

`BROKER_TEST_FAULT="STEP=raise"` or `"STEP=kill"` (STEP one of `broker.common.fault_points.STEPS`):
the first time the broker reaches STEP, it raises `InjectedFault` there, or the process sends
itself SIGKILL. The product only calls `fault_points.reached(step)`; this module, which only
tests run, is the one place a hook is installed.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading

from broker.common import fault_points

ENV = "BROKER_TEST_FAULT"


class InjectedFault(RuntimeError):
    pass


def hook_for(spec: str):
    step, _, action = spec.rpartition("=")
    if step not in fault_points.STEPS or action not in ("raise", "kill"):
        raise SystemExit(f"{ENV}={spec!r}: want STEP=raise|kill with STEP one of {fault_points.STEPS}")
    fired = threading.Event()

    def hook(reached: str) -> None:
        if reached != step or fired.is_set():
            return
        fired.set()
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise InjectedFault(f"injected at {step}")

    return hook


def main() -> None:
    spec = os.environ.get(ENV)
    if spec:
        fault_points.arm(hook_for(spec))
    args = sys.argv[1:]
    if args[:2] != ["-m", "broker"]:
        raise SystemExit("usage: python -m tests.fakes.fault_launcher -m broker ARGS")
    sys.argv = ["broker", *args[2:]]
    runpy.run_module("broker", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
