"""Training throughput of the `tiny` preset with the batches prepared in the training process or in one loader
process (`num_workers` 0 or 1), at batch 16 and 32, as a whole training run sees it (data, loss, backward, Adam, EMA).

    python bench/loader_bench.py              # 200 steps per configuration
    python bench/loader_bench.py --steps 60   # a first look

Each configuration trains in a fresh process (`sr3lit train`, no validation images), one after another in the same
run, so that the ratios compare like with like on a noisy machine. Images/s is the mean of metrics.csv's column after
the first logged row (which holds the start-up).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from sr3lit.training import read_csv_log


def images_per_second(out: Path, batch: int, workers: int, steps: int) -> float:
    cmd = [sys.executable, '-m', 'sr3lit.cli', 'train', '--preset', 'tiny', '--out', str(out), '--max-steps', str(steps),
           '--batch-size', str(batch), '--quiet', '--set', 'val_every=0', '--set', f'num_workers={workers}',
           '--set', f'checkpoint_every={steps}']
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    rows = read_csv_log(out / 'metrics.csv')[1:]
    return sum(r['images_per_s'] for r in rows) / len(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=200, help='training steps per configuration (default 200)')
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; tiny preset, {args.steps} steps each")
    with tempfile.TemporaryDirectory() as tmp:
        for batch in (16, 32):
            rates = {w: images_per_second(Path(tmp) / f'b{batch}w{w}', batch, w, args.steps) for w in (0, 1)}
            print(f"batch {batch:2d}: in-process {rates[0]:6.1f} img/s, one loader process {rates[1]:6.1f} img/s, "
                  f"ratio {rates[1] / rates[0]:.2f}", flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
