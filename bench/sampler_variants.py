"""Three ways to clean up the `tiny` study's SR3 samples without training again, measured on its test patches:

- a colder chain: every step's noise scaled by a temperature below 1 (`sample(..., temperature=)`, chapter 09), as
  Glow and SRFlow sample their flows colder for cleaner images;
- a symmetrised network (chapter 09's `Symmetrised`): at every step the noise prediction averaged over the square's
  eight symmetries, eps(y) = mean_g g^-1 eps(g y), at eight network evaluations per step;
- a consistent chain (chapter 09's `Consistent`): at every step the estimate of y0 moved by the least change that
  makes it shrink to the low-resolution input (DDNM's range-null space split), its detail left as the network drew it.

A diagnostic of a finished study, not one of its methods.

    make reproduce                                         # runs/tiny: the study, its test set, SR3 and the regression
    python bench/sampler_variants.py                       # the default variants below (about 12 min on 2 cores)
    python bench/sampler_variants.py --variant 500,1,1 --variant 500,0.9,1 --variant 500,1,1,1
    python bench/sampler_variants.py --sr3 /tmp/choices/l1 --variant 500,1,1 --out /tmp/choices/l1/variants

`--variant STEPS,TEMPERATURE,SYMMETRIES[,CONSISTENT]` (respaced DDPM steps; temperature; 1 or 8 symmetries; 1 for a
consistent chain, default 0). Every variant starts
from the study's noise (its seed 0, as `experiments.sr3_outputs` draws it), so `500,1,1` is the study's row. Per
variant: the samples' PSNR minus the regression's (paired mean +- standard error over the test patches), their
high-frequency energy ratio (all, the cat, the portrait; sr3lit.metrics), their consistency with the inputs (the SR3
paper's MSE, sr3lit.metrics.consistency, mean), the share of their squared error that the input sees (its part in
the range of chapter 09's projection; printed for bicubic and the regression too), the seconds it took, and, where
an earlier variant ran the same steps plain (temperature 1, one symmetry, not consistent), the PSNR paired against
that one. Printed, and saved in `--out` (default `<study>/sampler_variants`) as `sampler_variants.json` and `sampler_variants.png`: 16 test
patches spread over the test set, a row each: bicubic, the regression, each variant, the reference.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from sr3lit import experiments, images, inference, metrics
from sr3lit.regression import target_of
from sr3lit.sampling import Consistent, Symmetrised
from tiny_choices import finished_study, paired      # bench/ is on the path when this script runs

DEFAULT_VARIANTS = ['500,1,1', '500,0.9,1', '500,0.8,1', '100,1,1', '100,1,8', '500,1,1,1']


def variant(text: str) -> tuple[int, float, int, int]:
    "'STEPS,TEMPERATURE,SYMMETRIES[,CONSISTENT]' -> (steps, temperature, symmetries, consistent), refused with a one-line reason."
    fields = text.split(',')
    try:
        if len(fields) not in (3, 4): raise ValueError
        steps, temperature, symmetries, consistent = int(fields[0]), float(fields[1]), int(fields[2]), int((fields + ['0'])[3])
    except ValueError: raise argparse.ArgumentTypeError(f"{text!r}: expected STEPS,TEMPERATURE,SYMMETRIES[,CONSISTENT], e.g. 500,0.9,1")
    if steps < 1 or not temperature >= 0 or symmetries not in (1, 8) or consistent not in (0, 1):
        raise argparse.ArgumentTypeError(f"{text!r}: steps >= 1, temperature >= 0, symmetries 1 or 8, consistent 0 or 1")
    return steps, temperature, symmetries, consistent


def variant_outputs(run: inference.Run, x_up: torch.Tensor, names: list, steps: int, temperature: float,
                    symmetries: int, consistent: int = 0) -> torch.Tensor:
    "The study's sampler (respaced DDPM, its noise) with the network symmetrised or made consistent and the steps' noise scaled."
    if symmetries == 8: run = dataclasses.replace(run, model=Symmetrised(run.model))
    if consistent:
        run = dataclasses.replace(run, model=Consistent(run.model, run.config.hr_size // run.config.lr_size, target_of(run.config).scale))
    out, _ = experiments.sr3_outputs(run, x_up, names, steps=steps, schedule='respace', temperature=temperature,
                                     batch_size=experiments.EXPERIMENT_PRESETS['tiny'].batch_size)   # the study's noise
    return out


def error_seen_by_input(out: torch.Tensor, hr: torch.Tensor, factor: int) -> float:
    "The share of the squared error of `out` against `hr` that lies in what the LR input sees (chapter 09's `Consistent.seen`)."
    error = out.double() - hr.double()
    return round(float(Consistent(None, factor).seen(error).pow(2).sum() / error.pow(2).sum()), 4)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--study', type=Path, default=Path('runs/tiny'), help='the finished study (default runs/tiny)')
    parser.add_argument('--variant', type=variant, action='append', metavar='STEPS,TEMPERATURE,SYMMETRIES[,CONSISTENT]',
                        help=f"a variant (repeatable; default {' '.join(DEFAULT_VARIANTS)})")
    parser.add_argument('--sr3', type=Path, help="the SR3 run to sample (default <study>/sr3; e.g. one trained by bench/tiny_choices.py)")
    parser.add_argument('--out', type=Path, help='where the json and png go (default <study>/sampler_variants)')
    args = parser.parse_args(argv)
    variants = args.variant or [variant(v) for v in DEFAULT_VARIANTS]
    _, names, hr, x_up = finished_study(args.study, parser)
    sr3_dir = args.sr3 or args.study / 'sr3'
    try: run, reg = inference.load_run(sr3_dir), inference.load_run(args.study / 'regression')
    except ValueError as e: parser.error(str(e))                                   # one line: a missing or unfinished run
    if any(v[0] > run.config.n_timestep for v in variants): parser.error(f"steps must lie in 1..{run.config.n_timestep}")
    torch.set_num_threads(2)
    r = experiments.regression_outputs(reg, x_up)
    psnr_reg = metrics.psnr(r, hr)
    scale = run.config.hr_size // run.config.lr_size
    print(json.dumps({'error_seen_by_input': {'bicubic': error_seen_by_input(x_up, hr, scale),
                                              'regression': error_seen_by_input(r, hr, scale)}}), flush=True)
    cat = torch.tensor([experiments.photograph_of(n) == 'chelsea' for n in names])
    out_dir = args.out or args.study / 'sampler_variants'
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, samples, psnrs = [], [], []
    lr = experiments.read_images(args.study / 'test' / 'lr', names)
    for steps, temperature, symmetries, consistent in variants:
        start = time.perf_counter()
        y = variant_outputs(run, x_up, names, steps, temperature, symmetries, consistent)
        p, hf = metrics.psnr(y, hr), lambda m: round(metrics.high_frequency_ratio(y[m], hr[m], scale), 3)
        row = {'steps': steps, 'temperature': temperature, 'symmetries': symmetries, 'consistent': consistent,
               'minus_regression': paired(p, psnr_reg), 'hf_ratio': hf(slice(None)), 'hf_ratio_cat': hf(cat),
               'hf_ratio_portrait': hf(~cat),
               'consistency': float(f"{metrics.consistency(y, lr).mean():.3g}"),
               'error_seen_by_input': error_seen_by_input(y, hr, scale), 'seconds': round(time.perf_counter() - start, 1)}
        plain = next((i for i, r in enumerate(rows) if (r['steps'], r['temperature'], r['symmetries'], r['consistent']) == (steps, 1.0, 1, 0)), None)
        if plain is not None and (temperature, symmetries, consistent) != (1.0, 1, 0):
            row['minus_plain'] = paired(p, psnrs[plain])
        rows.append(row); samples.append(y); psnrs.append(p)
        print(json.dumps(row), flush=True)
    (out_dir / 'sampler_variants.json').write_text(json.dumps({'study': str(args.study), 'sr3': str(sr3_dir), 'rows': rows}, indent=1) + '\n')
    pick = experiments.pick_indices(len(hr), 16)
    images.save_image_grid([c[pick] for c in [x_up, r, *samples, hr]],
                           out_dir / 'sampler_variants.png')
    print(f"wrote {out_dir / 'sampler_variants.json'} and {out_dir / 'sampler_variants.png'}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
