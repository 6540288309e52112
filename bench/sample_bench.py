"""Sampling speed of sr3lit: seconds per image for 2000, 200, 50 and 10 reverse steps (Algorithm 2, respaced) at
16->128 with the reference network, and at the tiny preset's 8->32.

    python bench/sample_bench.py           # CPU, and bf16 autocast on the GPU when CUDA is available

A full 2000-step chain takes many minutes on a CPU, so every figure is EXTRAPOLATED: a chain of `--timed` steps
is run and timed (after a warm-up), giving the time per step, which is multiplied by the number of steps. Each
step is one network evaluation plus a few elementwise operations, so the time is linear in the number of steps.
"""
from __future__ import annotations

import argparse
import time

import torch

from sr3lit.sampling import sample, sampling_schedule
from sr3lit.config import make_config
from sr3lit.training import build_model

STEPS = (2000, 200, 50, 10)


def seconds_per_step(preset: str, device: torch.device, batch: int, timed: int, amp: bool) -> float:
    cfg = make_config(preset)
    model = build_model(cfg).to(device).eval()
    s = cfg.hr_size
    x_up = torch.rand(batch, 3, s, s, device=device) * 2 - 1
    schedule = sampling_schedule(cfg.noise_schedule(), timed, 'respace')
    run = lambda: sample(model, x_up, schedule, seed=0, progress=False)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        sample(model, x_up, sampling_schedule(cfg.noise_schedule(), 1, 'respace'), seed=0, progress=False)   # warm-up
        if device.type == 'cuda': torch.cuda.synchronize()
        t0 = time.perf_counter(); run()
        if device.type == 'cuda': torch.cuda.synchronize()
    return (time.perf_counter() - t0) / timed / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--timed', type=int, default=4, help='reverse steps actually run and timed (default 4)')
    parser.add_argument('--batch', type=int, default=1, help='images per chain (default 1)')
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; batch {args.batch}; "
          f"times EXTRAPOLATED from a timed chain of {args.timed} steps")
    variants = [(torch.device('cpu'), False)]
    if torch.cuda.is_available(): variants += [(torch.device('cuda'), False), (torch.device('cuda'), True)]
    print(f"\n{'config':<8} {'device':<6} {'precision':<9} {'s/step':>8} " + ' '.join(f'{f"{n} steps":>11}' for n in STEPS)
          + '   (seconds per image)')
    for preset, label in (('tiny', '8->32'), ('faces-16-128', '16->128')):
        for device, amp in variants:
            per_step = seconds_per_step(preset, device, args.batch, args.timed, amp)
            print(f"{label:<8} {device.type:<6} {'bf16' if amp else 'fp32':<9} {per_step:>8.4f} "
                  + ' '.join(f'{n * per_step:>11.1f}' for n in STEPS))


if __name__ == '__main__':
    main()
