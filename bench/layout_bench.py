"""Which memory layout the `tiny` U-Net should train and sample in on this CPU: NCHW (channel by channel) or NHWC
(`channels_last`, pixel by pixel). It depends on the CPU, so this prints both, measured in one run.

    python bench/layout_bench.py            # about a minute on 2 cores
    python bench/layout_bench.py --rounds 5

One training step is what `fit` does at the study's settings: the SR3 objective on a batch of 16 crops 8->32,
backward, gradient clipping, Adam and the EMA update, on 1 thread (as each of the study's two trainings runs while the
other one trains) and on 2. One sampling step is a forward pass over the study's 48 test patches on 2 threads. The
layouts alternate round by round and each keeps its best time, so a slow moment of the machine hits both alike.
"""
from __future__ import annotations

import argparse
import time

import torch

from sr3lit.config import make_config
from sr3lit.training import EMA, METHODS, SampleRNG, build_model, make_optimizer
from sample_bench import cpu_name, matmul_gflops     # bench/ is on the path when this script runs

CPU = torch.device('cpu')


def train_step(channels_last: bool, batch_size: int = 16):
    "A function doing one training step of the `tiny` SR3 run in the given layout."
    cfg = make_config('tiny')
    model = build_model(cfg).train()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimizer, ema, objective = make_optimizer(model, cfg), EMA(model, cfg.ema_decay), METHODS['sr3'].make_objective(cfg)
    g = torch.Generator().manual_seed(0)
    batch = {k: (torch.rand(batch_size, 3, cfg.hr_size, cfg.hr_size, generator=g) * 2 - 1).contiguous(memory_format=layout)
             for k in ('HR', 'x_up')}
    seeds = list(range(batch_size))

    def step():
        objective(model, batch, SampleRNG(seeds)).mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step(); optimizer.zero_grad(set_to_none=True)
        ema.update(model, 10 ** 6)
    return step


def sample_step(channels_last: bool, n_images: int = 48):
    "A function doing one sampling step's forward pass of the `tiny` U-Net over `n_images` patches in the given layout."
    cfg = make_config('tiny')
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(cfg).eval().to(memory_format=layout)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_images, cfg.in_channel, cfg.hr_size, cfg.hr_size, generator=g).contiguous(memory_format=layout)
    level = torch.rand(n_images, generator=g)

    def step():
        with torch.inference_mode(): model(x, level)
    return step


def compare(make, threads: int, rounds: int, repeats: int) -> dict[str, float]:
    "Best seconds per call of NCHW and NHWC, alternating layouts round by round."
    torch.set_num_threads(threads)
    fns = {'NCHW': make(False), 'NHWC': make(True)}
    for fn in fns.values(): fn(); fn()                       # warm-up: oneDNN picks and caches its kernels
    best = {k: float('inf') for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(repeats): fn()
            best[k] = min(best[k], (time.perf_counter() - t) / repeats)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--rounds', type=int, default=4, help='alternating rounds per measurement (default 4)')
    parser.add_argument('--repeats', type=int, default=5, help='calls timed together in a round (default 5)')
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, ATen kernels {torch.backends.cpu.get_cpu_capability()}, "
          f"torch {torch.__version__}; 2048x2048 float32 matmul {matmul_gflops(CPU):.0f} GFLOP/s")
    rows = [('training step, batch 16', train_step, 1), ('training step, batch 16', train_step, 2),
            ('sampling step, 48 patches', sample_step, 2)]
    print(f"\n{'what':<26} {'threads':>7} {'NCHW ms':>8} {'NHWC ms':>8} {'NHWC / NCHW':>12}")
    for what, make, threads in rows:
        best = compare(make, threads, args.rounds, args.repeats)
        print(f"{what:<26} {threads:>7} {best['NCHW'] * 1e3:>8.1f} {best['NHWC'] * 1e3:>8.1f} {best['NHWC'] / best['NCHW']:>12.2f}",
              flush=True)
    print(f"\nmatmul after: {matmul_gflops(CPU):.0f} GFLOP/s. A ratio below 1: NHWC is faster. TrainConfig's `channels_last` "
          "sets the layout of training and of sampling (`load_run`).")


if __name__ == '__main__':
    main()
