"""Two ways to clean up the `tiny` study's SR3 samples without training again, measured on its test patches:

- a colder chain: every step's noise scaled by a temperature below 1 (`sample(..., temperature=)`, chapter 09), as
  Glow and SRFlow sample their flows colder for cleaner images;
- a symmetrised network (chapter 09's `Symmetrised`): at every step the noise prediction averaged over the square's
  eight symmetries, eps(y) = mean_g g^-1 eps(g y), at eight network evaluations per step.

A diagnostic of a finished study, not one of its methods.

    make reproduce                                         # runs/tiny: the study, its test set, SR3 and the regression
    python bench/sampler_variants.py                       # the default variants below (about 10 min on 2 cores)
    python bench/sampler_variants.py --variant 500,1,1 --variant 500,0.9,1
    python bench/sampler_variants.py --sr3 /tmp/choices/l1 --variant 500,1,1 --out /tmp/choices/l1/variants

`--variant STEPS,TEMPERATURE,SYMMETRIES` (respaced DDPM steps; temperature; 1 or 8 symmetries). Every variant starts
from the study's noise (its seed 0, as `experiments.sr3_outputs` draws it), so `500,1,1` is the study's row. Per
variant: the samples' PSNR minus the regression's (paired mean +- standard error over the test patches), their
high-frequency energy ratio (all, the cat, the portrait; sr3lit.metrics), the seconds it took, and, where an earlier
variant ran the same steps plain (temperature 1, one symmetry), the PSNR paired against that one. Printed, and
saved in `--out` (default `<study>/sampler_variants`) as `sampler_variants.json` and `sampler_variants.png`: 16 test
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
from sr3lit.sampling import Symmetrised
from tiny_choices import finished_study, paired      # bench/ is on the path when this script runs

DEFAULT_VARIANTS = ['500,1,1', '500,0.9,1', '500,0.8,1', '100,1,1', '100,1,8']


def variant(text: str) -> tuple[int, float, int]:
    "'STEPS,TEMPERATURE,SYMMETRIES' -> (steps, temperature, symmetries), refused with a one-line reason."
    try: steps, temperature, symmetries = text.split(',')
    except ValueError: raise argparse.ArgumentTypeError(f"{text!r}: expected STEPS,TEMPERATURE,SYMMETRIES, e.g. 500,0.9,1")
    steps, temperature, symmetries = int(steps), float(temperature), int(symmetries)
    if steps < 1 or not temperature >= 0 or symmetries not in (1, 8):
        raise argparse.ArgumentTypeError(f"{text!r}: steps >= 1, temperature >= 0, symmetries 1 or 8")
    return steps, temperature, symmetries


def variant_outputs(run: inference.Run, x_up: torch.Tensor, names: list, steps: int, temperature: float,
                    symmetries: int) -> torch.Tensor:
    "The study's sampler (respaced DDPM, its noise) with the network symmetrised and the steps' noise scaled."
    if symmetries == 8: run = dataclasses.replace(run, model=Symmetrised(run.model))
    out, _ = experiments.sr3_outputs(run, x_up, names, steps=steps, schedule='respace', temperature=temperature,
                                     batch_size=experiments.EXPERIMENT_PRESETS['tiny'].batch_size)   # the study's noise
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--study', type=Path, default=Path('runs/tiny'), help='the finished study (default runs/tiny)')
    parser.add_argument('--variant', type=variant, action='append', metavar='STEPS,TEMPERATURE,SYMMETRIES',
                        help=f"a variant (repeatable; default {' '.join(DEFAULT_VARIANTS)})")
    parser.add_argument('--sr3', type=Path, help="the SR3 run to sample (default <study>/sr3; e.g. one trained by bench/tiny_choices.py)")
    parser.add_argument('--out', type=Path, help='where the json and png go (default <study>/sampler_variants)')
    args = parser.parse_args(argv)
    variants = args.variant or [variant(v) for v in DEFAULT_VARIANTS]
    _, names, hr, x_up = finished_study(args.study, parser)
    sr3_dir = args.sr3 or args.study / 'sr3'
    try: run, reg = inference.load_run(sr3_dir), inference.load_run(args.study / 'regression')
    except ValueError as e: parser.error(str(e))                                   # one line: a missing or unfinished run
    if any(steps > run.config.n_timestep for steps, _, _ in variants): parser.error(f"steps must lie in 1..{run.config.n_timestep}")
    torch.set_num_threads(2)
    r = experiments.regression_outputs(reg, x_up)
    psnr_reg = metrics.psnr(r, hr)
    scale, cat = run.config.hr_size // run.config.lr_size, torch.tensor([experiments.photograph_of(n) == 'chelsea' for n in names])
    out_dir = args.out or args.study / 'sampler_variants'
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, samples, psnrs = [], [], []
    for steps, temperature, symmetries in variants:
        start = time.perf_counter()
        y = variant_outputs(run, x_up, names, steps, temperature, symmetries)
        p, hf = metrics.psnr(y, hr), lambda m: round(metrics.high_frequency_ratio(y[m], hr[m], scale), 3)
        row = {'steps': steps, 'temperature': temperature, 'symmetries': symmetries,
               'minus_regression': paired(p, psnr_reg), 'hf_ratio': hf(slice(None)), 'hf_ratio_cat': hf(cat),
               'hf_ratio_portrait': hf(~cat), 'seconds': round(time.perf_counter() - start, 1)}
        plain = next((i for i, r in enumerate(rows) if (r['steps'], r['temperature'], r['symmetries']) == (steps, 1.0, 1)), None)
        if plain is not None and (temperature, symmetries) != (1.0, 1):
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
