"""Where 10-step samplers land against the 2000-step chain, measured without the test photographs: for runs made by
`bench/tiny_holdout.py` (each trained without one photograph, with its 2000-step chain on patches of that photograph
saved as `holdout_chain.pt`), sample the same patches with N network evaluations on a grid of level placements and
noise amounts, and print each sampler's PSNR, SSIM and high-frequency ratio minus the chain's.

    python bench/tiny_holdout.py --out /tmp/holdout/astronaut --holdout astronaut \
        --photos coffee,rocket,motorcycle,china,flower,camera
    python bench/tiny_holdout.py --out /tmp/holdout/motorcycle --holdout motorcycle \
        --photos astronaut,coffee,rocket,china,flower,camera
    python bench/few_step_frontier.py /tmp/holdout/astronaut /tmp/holdout/motorcycle --steps 10

The grid: the DPM-Solver++(2M) SDE step (chapter 09) and Algorithm 2's step on N levels between sigma_min and
sigma_max (sigma = sqrt((1 - gamma) / gamma)), spaced evenly in log sigma (rho = 0, the 'log_snr_window' spacing)
or in sigma^(1/rho) (Karras et al.'s rho); and the SDE step with a fraction eta of its posterior noise (eta = 0 is
the ODE solver 'dpmpp2m', 1 the SDE), on 'log_snr_window' and 'karras' levels.

One 2000-step chain is one sample per patch, and its scores are noisy: `--chains K` runs K - 1 more chains (noise seeds
1.., saved beside the first as `holdout_chain_seed<k>.pt`, ~2 min each for 32 patches on 2 cores), prints how far
each lies from the first (what a sampler identical to the chain would score), and compares every sampler with the
chains' average. Each grid cell averages `--seeds` samples per patch. A sampler matches the chain when its PSNR is
within 0.2 dB, its SSIM within 0.01 and its high-frequency ratio within 0.1 of the chains' average (the tiny study's
criteria); the last column says whether a row does on every run. Saved as `frontier.json` in the first run folder.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from sr3lit import experiments, inference, metrics, sampling
from sr3lit.regression import target_of
from sr3lit.schedules import NoiseSchedule
from tiny_choices import paired                  # bench/ is on the path when this script runs
from tiny_holdout import holdout_patches


def levels(n: int, sigma_min: float, sigma_max: float, rho: float) -> NoiseSchedule:
    "n levels from sigma_min to sigma_max, even in log sigma (rho = 0) or in sigma^(1/rho)."
    if rho == 0: sigma = np.exp(np.linspace(np.log(sigma_min), np.log(sigma_max), n))
    else: sigma = np.linspace(sigma_min ** (1 / rho), sigma_max ** (1 / rho), n) ** rho
    return NoiseSchedule.from_gammas(1 / (1 + sigma ** 2))


COEFFICIENTS = sampling.reverse_step_coefficients


def with_eta(schedule: NoiseSchedule, eta: float) -> dict:
    "DDIM's step with noise eta^2 times the posterior variance, and DPM-Solver++(2M)'s extrapolation (chapter 09)."
    return {**COEFFICIENTS(schedule, 'ddim', eta), 'extrapolation': COEFFICIENTS(schedule, 'dpmpp2m')['extrapolation']}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('runs', nargs='+', type=Path, help='run folders made by bench/tiny_holdout.py')
    parser.add_argument('--steps', type=int, default=10, help='network evaluations per image (default 10)')
    parser.add_argument('--seeds', type=int, default=4, help='samples per patch and grid cell (default 4)')
    parser.add_argument('--chains', type=int, default=1, help='2000-step chains per patch to compare with (default 1)')
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    runs = []
    for folder in args.runs:
        info = json.loads((folder / 'holdout.json').read_text())
        run = inference.load_run(folder)
        hr, x_up = holdout_patches(info['holdout'], info['n'], run.config.lr_size, run.config.hr_size)
        scale = run.config.hr_size // run.config.lr_size
        chains = [torch.load(folder / 'holdout_chain.pt')]
        for k in range(1, args.chains):
            path = folder / f'holdout_chain_seed{k}.pt'
            if not path.is_file():
                chain, _ = experiments.sr3_outputs(run, x_up, [f'h{i}' for i in range(len(hr))], steps=run.config.n_timestep,
                                                   schedule='respace', batch_size=32, seed=k)
                torch.save(chain, path)
            chains.append(torch.load(path))
        scores = [(metrics.psnr(c, hr), metrics.ssim(c, hr), metrics.high_frequency_ratio(c, hr, scale)) for c in chains]
        for k, (p, s_, h) in enumerate(scores[1:], 1):
            print(f"{info['holdout']}: chain seed {k} minus seed 0: PSNR {paired(p, scores[0][0])}, "
                  f"SSIM {float((s_ - scores[0][1]).mean()):+.4f}, high-frequency ratio {h:.3f} against {scores[0][2]:.3f}")
        runs.append(dict(name=info['holdout'], run=run, hr=hr, x_up=x_up, scale=scale,
                         psnr=torch.stack([p for p, _, _ in scores]).mean(0), ssim=torch.stack([s_ for _, s_, _ in scores]).mean(0),
                         hf=float(np.mean([h for _, _, h in scores])), hf_chains=[round(h, 3) for _, _, h in scores]))

    def score(schedule, sampler, eta=None):
        cells = []
        if eta is not None:
            sampling.reverse_step_coefficients = lambda s, *a, **k: with_eta(s, eta)
        try:
            for r in runs:
                target = target_of(r['run'].config)
                d = np.zeros(3)
                for seed in range(args.seeds):
                    z = sampling.sample(r['run'].model, r['x_up'], schedule, sampler=sampler, seed=1000 + seed,
                                        clip_bounds=target.bounds(r['x_up']), progress=False)
                    out = target.decode(z, r['x_up'])
                    d += [float((metrics.psnr(out, r['hr']) - r['psnr']).mean()), float((metrics.ssim(out, r['hr']) - r['ssim']).mean()),
                          metrics.high_frequency_ratio(out, r['hr'], r['scale']) - r['hf']]
                cells.append((d / args.seeds).round(4).tolist())
        finally: sampling.reverse_step_coefficients = COEFFICIENTS
        return cells

    rows, n = [], args.steps
    train = runs[0]['run'].config.noise_schedule()
    grid = [(s, lo, hi, rho) for s in ('dpmpp2m_sde', 'ddpm') for lo, hi, rho in itertools.product((0.03, 0.01, 0.003), (20, 80), (0, 3, 7))]
    grid += [('dpmpp2m_sde', 0.002, 80, rho) for rho in (5, 7)]           # Karras et al.'s published ends (sigma_data 0.5)
    grid += [('eta', eta, method) for method in ('log_snr_window', 'karras') for eta in (0.0, 0.25, 0.5, 0.75, 1.0)]
    print(f"{n} evaluations against the average of {args.chains} chain(s): " + ', '.join(
        f"{r['name']} {float(r['psnr'].mean()):.2f} dB, HF {r['hf']:.3f} {r['hf_chains']}" for r in runs))
    for cell in grid:
        if cell[0] == 'eta':
            label = f"dpmpp2m_sde eta {cell[1]:.2f} on {cell[2]} levels"
            cells = score(sampling.sampling_schedule(train, n, cell[2]), 'dpmpp2m_sde', cell[1])
        else:
            label = f"{cell[0]} sigma {cell[1]}..{cell[2]}, rho {cell[3]}"
            cells = score(levels(n, cell[1], cell[2], cell[3]), cell[0])
        match = all(abs(p) <= 0.2 and abs(s) <= 0.01 and abs(h) <= 0.1 for p, s, h in cells)
        rows.append({'sampler': label, 'minus_chain': dict(zip([r['name'] for r in runs], cells)), 'matches': match})
        print(f"{label:52s} " + ' | '.join(f"dPSNR {p:+.2f} dSSIM {s:+.4f} dHF {h:+.3f}" for p, s, h in cells)
              + ('   matches' if match else ''), flush=True)
    chains = {r['name']: {'psnr': round(float(r['psnr'].mean()), 3), 'hf_ratio_each': r['hf_chains']} for r in runs}
    (args.runs[0] / 'frontier.json').write_text(json.dumps({'steps': n, 'seeds': args.seeds, 'chains': chains, 'rows': rows}, indent=1) + '\n')
    print(f"{sum(r['matches'] for r in rows)} of {len(rows)} samplers match the chain on every run")
    return 0


if __name__ == '__main__':
    sys.exit(main())
