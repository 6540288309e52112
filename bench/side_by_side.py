"""Two training runs on two CPU cores: side by side with one thread each, or one after the other with both threads.
Chapter 16's `train_both` trains the study's regression baseline beside SR3 for this reason.

    python bench/side_by_side.py                # the study's SR3 and regression configurations, 600 steps each
    python bench/side_by_side.py --steps 200    # a first look

Each run trains in a fresh process (`sr3lit.training.train` with the `tiny` study's configurations, no validation
images, no loader process), the four runs in one invocation so that the ratio compares like with like on a noisy
machine: first both side by side (two processes of `--threads 1`), then each alone with all of torch's threads.
Printed: ms per step of each run (wall time over its steps, start-up included) and the pair's time either way.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

CHILD = '''
import json, sys, time, torch
from sr3lit import experiments, training
method, steps, threads, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
cfg = experiments.train_configs(experiments.EXPERIMENT_PRESETS['tiny'], device='cpu', progress=False)[method]
cfg = cfg._replace({'max_steps': steps, 'val_every': 0, 'num_workers': 0, 'checkpoint_every': steps})
t0 = time.perf_counter(); training.train(cfg, out)
print(json.dumps({'method': method, 'threads': threads, 'seconds': time.perf_counter() - t0}))
'''


def start(method: str, steps: int, threads: int, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, '-c', CHILD, method, str(steps), str(threads), str(out)], stdout=subprocess.PIPE, text=True)


def finish(p: subprocess.Popen) -> dict:
    out, _ = p.communicate()
    if p.returncode: raise SystemExit(f"a training process failed (exit code {p.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=600, help='training steps of each run (default 600)')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(), help="all threads (default: torch's, here %(default)s)")
    args = parser.parse_args(argv)
    half = max(1, args.threads // 2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        together = [finish(p) for p in [start(m, args.steps, half, tmp / f'together-{m}') for m in ('sr3', 'regression')]]
        pair_together = time.perf_counter() - t0
        apart = [finish(start(m, args.steps, args.threads, tmp / f'apart-{m}')) for m in ('sr3', 'regression')]
    pair_apart = sum(r['seconds'] for r in apart)
    for how, rows in (('side by side', together), ('one after the other', apart)):
        for r in rows: print(f"{how:20s} {r['method']:10s} {r['threads']} thread(s): {r['seconds'] / args.steps * 1000:6.1f} ms/step")
    print(f"the pair of {args.steps}-step runs: {pair_together:.1f} s side by side, {pair_apart:.1f} s one after the other "
          f"(ratio {pair_together / pair_apart:.2f})")
    return 0


if __name__ == '__main__':
    sys.exit(main())
