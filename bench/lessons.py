"""Each guided lesson from a cold store: seconds to its last reveal (budget: 5 minutes on this
2-core CPU). Runs ``python -m core lesson NAME`` in a fresh process against a fresh store file,
three times per lesson, and prints the median.

    .venv/bin/python bench/lessons.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LESSONS = ("probing", "attribution", "patching")
BUDGET_S = 300


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for name in LESSONS:
        times = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "core", "lesson", name, "--out",
                                str(Path(folder) / "out"), "--store",
                                str(Path(folder) / "cold.duckdb")],
                               check=True, capture_output=True, text=True)
                times.append(time.perf_counter() - started)
        median = statistics.median(times)
        print(f"{name}: {', '.join(f'{t:.0f}' for t in times)} s (median {median:.0f} s)")
        print(f"RESULT lesson_{name}_cold_s={median:.1f}")
        print(f"RESULT lesson_{name}_budget_ratio={median / BUDGET_S:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
