"""Seconds from launching ``python -m station`` to its first window and to its first prediction on screen.

Starts the station as a user would (``--data-dir`` a fresh temporary folder, the default source: camera 0,
or the demo images when there is no camera), reads its log on stderr and notes when "start-up window shown"
and "first prediction" appear, then ends it. Needs a display: run it under Xvfb (``xvfb-run``) or with
``QT_QPA_PLATFORM=offscreen``.

    python bench/startup.py [--runs 3] [--source 0] [--timeout 120]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import ROOT

MARKS = {"window": "start-up window shown", "prediction": "first prediction"}


def one_launch(source: str | None, timeout: float) -> dict[str, float]:
    """Launch, wait for both marks (or the timeout), stop the station; seconds since launch per mark."""
    seen: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as data_dir:
        command = [sys.executable, "-m", "station", "--data-dir", data_dir]
        if source is not None:
            command += ["--source", source]
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            assert process.stderr is not None
            for line in process.stderr:
                for name, mark in MARKS.items():
                    if mark in line and name not in seen:
                        seen[name] = time.monotonic() - started
                if len(seen) == len(MARKS) or time.monotonic() - started > timeout:
                    break
        finally:
            process.terminate()  # the station started here, on a throw-away data folder
            process.wait(30)
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="launches to time")
    parser.add_argument("--source", help="the station's --source (default: its setting, camera 0)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait per launch")
    args = parser.parse_args()
    if not os.environ.get("DISPLAY") and not os.environ.get("QT_QPA_PLATFORM"):
        print("no display: run under xvfb-run or set QT_QPA_PLATFORM=offscreen", file=sys.stderr)
        return 1
    runs = []
    for i in range(args.runs):
        seen = one_launch(args.source, args.timeout)
        runs.append(seen)
        shown = ", ".join(f"{name} {seen[name]:.1f} s" if name in seen else f"{name} not seen" for name in MARKS)
        print(f"launch {i + 1}: {shown}", flush=True)
    for name in MARKS:
        times = [r[name] for r in runs if name in r]
        if times:
            print(f"launch to first {name}: median {statistics.median(times):.1f} s "
                  f"(min {min(times):.1f}, max {max(times):.1f}, {len(times)} of {len(runs)} launches)")
    return 0 if all(len(r) == len(MARKS) for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
