"""Training throughput of sr3lit: images/s and peak memory of one training step (Algorithm 1's loss, backward,
gradient clipping, Adam, EMA), and how close the U-Net gets to this machine's float32 matmul speed.

    python bench/train_bench.py            # CPU, and every GPU variant when CUDA is available
    python bench/train_bench.py --quick    # fewer timed steps

Configurations (batch 4): `tiny` (8->32, 2.9 M parameters) and `16->128` (the reference network, 97.8 M).
On a GPU each is measured in float32 and with bf16 autocast + channels_last, each with and without torch.compile.
Each CPU measurement runs in a fresh process, so its peak resident memory is its own.

Utilisation: FLOPs of one forward pass (and of one training step: forward + backward) are counted with
torch.utils.flop_counter.FlopCounterMode (convolutions, matmuls, attention; elementwise work is not counted),
divided by the measured time, and compared with a large float32 torch.mm on the same device. Targets: 0.8 of the
matmul rate for the forward pass and 0.6 for a training step at 16->128.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from sr3lit.config import make_config
from sr3lit.training import EMA, DiffusionObjective, SampleRNG, build_model, make_optimizer

BATCH = 4
CONFIGS = {'tiny': dict(preset='tiny'), '16->128': dict(preset='faces-16-128')}


def _sync(device):
    if device.type == 'cuda': torch.cuda.synchronize(device)


def _best_time(fn, device, repeats):
    times = []
    for _ in range(repeats):
        _sync(device); t0 = time.perf_counter(); fn(); _sync(device); times.append(time.perf_counter() - t0)
    return min(times)


def matmul_gflops(device, n=None, repeats=5) -> float:
    "Float32 GFLOP/s of a large square torch.mm (2n^3 FLOPs), TF32 off."
    n = n or (8192 if device.type == 'cuda' else 2048)
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)
    return 2 * n ** 3 / _best_time(lambda: torch.mm(a, b), device, repeats) / 1e9


def _setup(name, device, amp, channels_last, compile_):
    cfg = make_config(CONFIGS[name]['preset'], overrides=dict(dropout=0.0))
    model = build_model(cfg).to(device)
    if channels_last: model = model.to(memory_format=torch.channels_last)
    s = cfg.hr_size
    g = torch.Generator().manual_seed(0)
    batch = {k: (torch.rand(BATCH, 3, s, s, generator=g) * 2 - 1).to(device) for k in ('HR', 'x_up')}
    if channels_last: batch = {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()}
    net = torch.compile(model) if compile_ else model
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    return cfg, model, net, batch, autocast


def train_step_run(name, device, amp=False, channels_last=False, compile_=False, steps=3) -> dict:
    cfg, model, net, batch, autocast = _setup(name, device, amp, channels_last, compile_)
    optimizer, ema = make_optimizer(model, cfg), EMA(model, 0.9999)
    objective = DiffusionObjective(cfg.noise_schedule(), cfg.loss_p)
    seeds = list(range(BATCH))

    def step():
        with autocast(): loss = objective(net, batch, SampleRNG(seeds, device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step(); optimizer.zero_grad(set_to_none=True)
        ema.update(model, 10**9)

    warm = 3 if compile_ else 1
    for _ in range(warm): step()
    if device.type == 'cuda': torch.cuda.reset_peak_memory_stats(device)
    seconds = _best_time(step, device, steps)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == 'cuda'
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return dict(config=name, device=device.type, amp='bf16' if amp else 'fp32', channels_last=channels_last,
                compile=compile_, seconds_per_step=seconds, images_per_s=BATCH / seconds, peak_memory_gib=peak / 2**30)


def utilisation(device, steps=3) -> dict:
    "Achieved GFLOP/s of the 16->128 U-Net (forward; forward + backward) against the float32 matmul rate."
    from torch.utils.flop_counter import FlopCounterMode
    cfg, model, net, batch, _ = _setup('16->128', device, False, False, False)
    x = torch.cat([batch['x_up'], batch['HR']], 1)
    level = torch.rand(BATCH, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter: model(x, level)
    forward_flops = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter: model(x, level).abs().mean().backward()
    train_flops = counter.get_total_flops()
    model.zero_grad(set_to_none=True)

    def forward():
        with torch.no_grad(): model(x, level)

    def forward_backward():
        model(x, level).abs().mean().backward(); model.zero_grad(set_to_none=True)

    forward(); forward_backward()
    f_rate = forward_flops / _best_time(forward, device, steps) / 1e9
    t_rate = train_flops / _best_time(forward_backward, device, steps) / 1e9
    mm = matmul_gflops(device)
    return dict(device=device.type, matmul_gflops=mm, forward_gflop=forward_flops / 1e9, forward_gflops=f_rate,
                forward_fraction=f_rate / mm, train_gflop=train_flops / 1e9, train_gflops=t_rate, train_fraction=t_rate / mm)


def _in_subprocess(kind: str, **kwargs) -> dict:
    r = subprocess.run([sys.executable, __file__, '--worker', json.dumps(dict(kind=kind, **kwargs))],
                       capture_output=True, text=True)
    if r.returncode: raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='1 timed step instead of 3')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        job = json.loads(args.worker)
        device = torch.device(job.pop('device'))
        kind, steps = job.pop('kind'), job.pop('steps')
        out = train_step_run(device=device, steps=steps, **job) if kind == 'train' else utilisation(device, steps)
        print(json.dumps(out)); return
    steps = 1 if args.quick else 3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, CUDA: "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'no'}; batch {BATCH}; best of {steps} timed steps")
    rows = []
    for name in CONFIGS:
        rows.append(_in_subprocess('train', name=name, device='cpu', steps=steps))
    if torch.cuda.is_available():
        for name in CONFIGS:
            for amp, cl in ((False, False), (True, True)):
                for comp in (False, True):
                    rows.append(train_step_run(name, torch.device('cuda'), amp, cl, comp, steps))
    print(f"\n{'config':<8} {'device':<6} {'precision':<9} {'NHWC':<5} {'compile':<7} {'s/step':>8} {'images/s':>9} {'peak GiB':>9}")
    for r in rows:
        print(f"{r['config']:<8} {r['device']:<6} {r['amp']:<9} {str(r['channels_last']):<5} {str(r['compile']):<7} "
              f"{r['seconds_per_step']:>8.3f} {r['images_per_s']:>9.2f} {r['peak_memory_gib']:>9.2f}")
    print("(CPU peak memory: the measuring process's peak resident set; GPU: torch.cuda.max_memory_allocated)")
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    print(f"\nU-Net 16->128, batch {BATCH}: achieved GFLOP/s against a float32 torch.mm on the same device")
    for d in devices:
        u = _in_subprocess('util', device=d, steps=steps) if d == 'cpu' else utilisation(torch.device(d), steps)
        print(f"{d}: matmul {u['matmul_gflops']:.1f} GFLOP/s | forward {u['forward_gflop']:.1f} GFLOP at "
              f"{u['forward_gflops']:.1f} GFLOP/s = {u['forward_fraction']:.2f} of matmul (target 0.8) | training step "
              f"{u['train_gflop']:.1f} GFLOP at {u['train_gflops']:.1f} GFLOP/s = {u['train_fraction']:.2f} (target 0.6)")


if __name__ == '__main__':
    main()
