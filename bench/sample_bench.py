"""Sampling speed of sr3lit: images per second and network evaluations (NFE) per image for the reference-style
2000-step chain (Algorithm 2, every step of the training schedule), Algorithm 2 respaced to 50 steps, and
DPM-Solver++(2M) with 10 steps on Karras' levels and its SDE version with 10 steps on Karras' spacing inside a window
(chapter 09),
with each one's images/s against the 2000-step chain.

    python bench/sample_bench.py              # CPU (about a minute on 2 idle cores, estimated), and the GPU variants when CUDA is available
    python bench/sample_bench.py --threads 2  # the CPU thread count (default: torch's)

Configurations: `tiny` (chapter 05's `unet_from_preset('tiny')`, 8->32, batch 64) and `16->128` (the reference
network, `unet_from_preset('sr3-16-128')`, batch 2). Every sampler calls the network once per step, so NFE = steps.
Each sampler's chain is run for real for at most `--max-timed` steps (tiny: 50, 16->128: 3) after a warm-up; a longer
chain is EXTRAPOLATED linearly from the time per step of that timed chain of the same sampler (the per-step cost is
constant: one network evaluation and a few elementwise operations on fixed-size tensors), so the 2000-step and the
50-step Algorithm 2 rows share one timing. The output says which rows are extrapolated. The CPU line gives the model
name and a 2048x2048 float32 matmul rate measured in the same run, and the load average before and after: another
busy process on the same cores slows every row (an OpenMP pool that shares its cores loses far more than its share).
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time

import torch

from sr3lit.sampling import sample, sampling_schedule
from sr3lit.schedules import NoiseSchedule
from sr3lit.unet import unet_from_preset

T = 2000                                                   # the report's schedule: linear 1e-6..1e-2, T = 2000
CHAINS = [('ddpm 2000 (reference-style)', 'ddpm', 'full', 2000),
          ('ddpm respaced 50', 'ddpm', 'respace', 50),
          ('dpmpp2m 10 (karras)', 'dpmpp2m', 'karras', 10),
          ('dpmpp2m_sde 10 (karras_window)', 'dpmpp2m_sde', 'karras_window', 10)]
CONFIGS = {'tiny': dict(preset='tiny', size=32, batch=64, max_timed=50),
           '16->128': dict(preset='sr3-16-128', size=128, batch=2, max_timed=3)}


def cpu_name() -> str:
    try:
        out = subprocess.run(['lscpu'], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(':', 1)[1].strip() for line in out.splitlines() if line.startswith('Model name'))
    except Exception:
        return platform.processor() or 'unknown CPU'


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    "Float32 GFLOP/s of an n x n torch.mm (2 n^3 FLOPs), best of `repeats`."
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    best = float('inf')
    for _ in range(repeats):
        if device.type == 'cuda': torch.cuda.synchronize()
        t0 = time.perf_counter(); torch.mm(a, b)
        if device.type == 'cuda': torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def chain_schedule(train: NoiseSchedule, method: str, steps: int) -> NoiseSchedule:
    return train if method == 'full' else sampling_schedule(train, steps, method)


def time_chain(model, x_up, train, sampler, method, steps, max_timed, device, amp) -> tuple[float, int]:
    """Seconds for one chain of `steps` steps over the batch, and how many steps were actually run (the rest is
    extrapolated from them). The timed chain is the same sampler on `min(steps, max_timed)` levels."""
    timed = min(steps, max_timed)
    schedule = chain_schedule(train, method, steps) if timed == steps else sampling_schedule(train, timed, 'respace' if method == 'full' else method)
    run = lambda sch: sample(model, x_up, sch, sampler=sampler, seed=0, progress=False)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        run(sampling_schedule(train, 2, 'respace'))                                          # warm-up
        if device.type == 'cuda': torch.cuda.synchronize()
        t0 = time.perf_counter(); run(schedule)
        if device.type == 'cuda': torch.cuda.synchronize()
    return (time.perf_counter() - t0) * steps / timed, timed


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--threads', type=int, help='CPU threads (default: torch.get_num_threads())')
    parser.add_argument('--configs', default='tiny,16->128', help='comma-separated: tiny, 16->128')
    parser.add_argument('--batch-128', type=int, default=CONFIGS['16->128']['batch'], help='batch at 16->128 (default 2)')
    parser.add_argument('--max-timed', type=int, help='steps actually run per chain (default: tiny 50, 16->128 3)')
    args = parser.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cpu = torch.device('cpu')
    print(f"torch {torch.__version__}; CPU: {cpu_name()}, {torch.get_num_threads()} threads, "
          f"2048x2048 float32 matmul {matmul_gflops(cpu):.0f} GFLOP/s (measured now); load average {os.getloadavg()[0]:.2f}")
    variants = [(cpu, False)]
    if torch.cuda.is_available(): variants += [(torch.device('cuda'), False), (torch.device('cuda'), True)]
    train = NoiseSchedule.make('linear', T)
    print(f"\n{'config':<8} {'device':<6} {'prec':<5} {'batch':>5} {'chain':<28} {'NFE/img':>7} {'s/chain':>9} {'img/s':>9} "
          f"{'x vs 2000':>9}  timing")
    for name in args.configs.split(','):
        c = dict(CONFIGS[name])
        if name == '16->128': c['batch'] = args.batch_128
        max_timed = args.max_timed or c['max_timed']
        for device, amp in variants:
            model = unet_from_preset(c['preset']).to(device).eval()
            x_up = torch.rand(c['batch'], 3, c['size'], c['size'], device=device) * 2 - 1
            base, per_step = None, {}                   # sampler -> (seconds per step, steps timed)
            for label, sampler, method, steps in CHAINS:
                if sampler not in per_step:
                    seconds, timed = time_chain(model, x_up, train, sampler, method, steps, max_timed, device, amp)
                    per_step[sampler] = (seconds / steps, timed)
                seconds, timed = per_step[sampler][0] * steps, min(per_step[sampler][1], steps)
                ips = c['batch'] / seconds
                base = base or ips
                how = 'run in full' if timed == steps else f'EXTRAPOLATED from {timed} timed steps'
                print(f"{name:<8} {device.type:<6} {'bf16' if amp else 'fp32':<5} {c['batch']:>5} {label:<28} {steps:>7} "
                      f"{seconds:>9.2f} {ips:>9.3f} {ips / base:>8.1f}x  {how}", flush=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == '__main__':
    main()
