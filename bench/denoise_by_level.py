"""How much of the noise at each level a trained SR3 network removes, on patches of a photograph it never saw: for
runs made by `bench/tiny_holdout.py`, noise the held-out photograph's patches (the scaled residual y0 of chapter 12)
to sigma = sqrt((1 - gamma) / gamma), ask the network for y0_hat in one step, and print the error left as a fraction
of the noise put in, E|y0_hat - y0|^2 / sigma^2 (1: nothing removed; 0: all of it), for the patches with the least,
middling and most detail.

    python bench/denoise_by_level.py /tmp/holdout/astronaut /tmp/holdout/astronaut-lognormal-low

The noise is drawn once (seed 0) and shared by every run, so runs compare paired. Saved as `denoise.json` in each run.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sr3lit import inference
from sr3lit.forward import q_sample
from sr3lit.regression import target_of
from tiny_holdout import holdout_patches        # bench/ is on the path when this script runs

SIGMAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def removed(run, hr, x_up, sigmas=SIGMAS, seed=0) -> dict:
    "Per sigma: the error left / sigma^2 for the third of the patches with the least, middling and most residual energy."
    target = target_of(run.config)
    y0 = target.encode(hr, x_up)
    order = y0.pow(2).mean(dim=(1, 2, 3)).argsort()
    groups = dict(zip(('least detail', 'middling', 'most detail'), order.tensor_split(3)))
    g = torch.Generator().manual_seed(seed)
    out = {}
    for sigma in sigmas:
        gamma = 1 / (1 + sigma ** 2)
        z = torch.randn(y0.shape, generator=g)
        y_t = q_sample(y0, gamma, z)
        with torch.no_grad():
            eps = run.model(torch.cat([x_up, y_t], dim=1), torch.full((len(y0),), gamma ** 0.5))
        y0_hat = (y_t - (1 - gamma) ** 0.5 * eps) / gamma ** 0.5      # eq. 6 solved for y0, with the network's noise
        err = (y0_hat - y0).pow(2).mean(dim=(1, 2, 3)) / sigma ** 2
        out[sigma] = {name: round(float(err[idx].mean()), 3) for name, idx in groups.items()}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('runs', nargs='+', type=Path, help='run folders made by bench/tiny_holdout.py')
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    for folder in args.runs:
        info = json.loads((folder / 'holdout.json').read_text())
        run = inference.load_run(folder)
        hr, x_up = holdout_patches(info['holdout'], info['n'], run.config.lr_size, run.config.hr_size)
        result = removed(run, hr, x_up)
        (folder / 'denoise.json').write_text(json.dumps({'holdout': info['holdout'], 'settings': info.get('settings', []),
                                                         'error_left': result}, indent=1) + '\n')
        print(f"{folder} ({info['holdout']}; {' '.join(info.get('settings', [])) or 'the study settings'})")
        for sigma, row in result.items():
            print(f"  sigma {sigma:5.2f}: error left / sigma^2  " + '  '.join(f"{k} {v:.3f}" for k, v in row.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
