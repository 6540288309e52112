"""Run every sr3lit benchmark in turn and print their numbers (`make bench`).

    python bench/run_all.py            # training throughput and utilisation, the loader process, two runs side by side,
                                       # the memory layout, then sampling time
    python bench/run_all.py --quick    # fewer timed steps

Each benchmark runs in its own process, so the memory one reports is not inflated by another.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [('train_bench.py', ['--quick']), ('loader_bench.py', ['--steps', '60']), ('side_by_side.py', ['--steps', '200']),
              ('layout_bench.py', ['--rounds', '2']), ('sample_bench.py', ['--configs', 'tiny'])]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='fewer timed steps (for a first look)')
    args = parser.parse_args(argv)
    failed = []
    for script, quick_args in BENCHMARKS:
        print(f'\n=== {script} ===', flush=True)
        cmd = [sys.executable, str(HERE / script), *(quick_args if args.quick else [])]
        if subprocess.run(cmd).returncode != 0: failed.append(script)
    if failed: print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
