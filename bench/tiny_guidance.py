"""Autoguidance on the `tiny` study's SR3: at every step of the chain, extrapolate from a weaker network's noise
prediction past the study's (chapter 09's `Guided`: bad + w (good - bad); Karras et al. 2024), and measure what it
does to the samples on the study's test patches and on patches of its training photographs.

A diagnostic of a finished study, not one of its methods.

    make reproduce                                                    # runs/tiny: the study, its test set, SR3 and the regression
    python bench/tiny_guidance.py --out /tmp/guidance/study           # the study's SR3 guided by a smaller, shorter-trained one
    python bench/tiny_guidance.py --out /tmp/guidance/w32 --good /tmp/budget/w32 --bad runs/tiny/sr3 \\
                                  --steps 100 --weights 1,1.5,2,3     # the wide network of bench/tiny_budget.py guided by the study's

The weaker network (`--bad`) is trained when its folder holds no finished run: the study's SR3 settings with
`--bad-steps` steps and `--bad-set` changes (default: 500 steps, inner_channel=8, norm_groups=4: a quarter of the
channels, a quarter of the steps, Karras et al.'s recipe of a smaller network trained for less time). Both networks
must predict the same target (the study's residual). Every weight's chain starts from the study's noise (its seed 0,
as `experiments.sr3_outputs` draws it), so the weights differ only in the guidance. Per weight, on the 48 test
patches and on 32 patches of the training photographs (bench/tiny_choices.py's): PSNR minus the regression's (paired
mean +- standard error), SSIM, the high-frequency energy ratio (sr3lit.metrics), per test photograph the same, and
the PSNR paired against weight 1 (the good network alone). Printed, and saved in `--out` as `guidance.json` and
`guidance.png`: 16 test patches spread over the test set, a row each: bicubic, each weight, the reference.
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
from sr3lit.sampling import Guided
from tiny_choices import finished_study, paired, training_patches     # bench/ is on the path when this script runs


def weights(text: str) -> list[float]:
    "'1,1.5,2' -> [1.0, 1.5, 2.0], refused with a one-line reason."
    try: values = [float(v) for v in text.split(',')]
    except ValueError: raise argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas, e.g. 1,1.5,2")
    if not values or any(not v >= 0 for v in values): raise argparse.ArgumentTypeError(f"{text!r}: weights must be >= 0")
    return values


def scores(chain: torch.Tensor, hr: torch.Tensor, psnr_reg: torch.Tensor, scale: int) -> dict:
    "PSNR minus the regression's, SSIM and high-frequency ratio of `chain` against references `hr`."
    return {'minus_regression': paired(metrics.psnr(chain, hr), psnr_reg), 'ssim': round(float(metrics.ssim(chain, hr).mean()), 4),
            'hf_ratio': round(metrics.high_frequency_ratio(chain, hr, scale), 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, required=True, help='where guidance.json and guidance.png go')
    parser.add_argument('--study', type=Path, default=Path('runs/tiny'), help='the finished study (default runs/tiny)')
    parser.add_argument('--good', type=Path, help="the guided SR3 run (default: the study's, <study>/sr3)")
    parser.add_argument('--bad', type=Path, help='the weaker SR3 run (default <out>/bad; trained if not finished)')
    parser.add_argument('--bad-steps', type=int, default=500, help="the weaker network's training steps, if it is trained (default 500)")
    parser.add_argument('--bad-set', action='append', metavar='KEY=VALUE',
                        help="a TrainConfig setting of the weaker network, if it is trained (repeatable; default inner_channel=8 and norm_groups=4)")
    parser.add_argument('--weights', type=weights, default=[1.0, 1.25, 1.5, 2.0], help='guidance weights w (default 1,1.25,1.5,2; 1: no guidance)')
    parser.add_argument('--steps', type=int, help="respaced DDPM steps of each chain (default: the study's main chain)")
    args = parser.parse_args(argv)
    study_results, names, hr, x_up = finished_study(args.study, parser)
    steps = args.steps or study_results['methods']['sr3']['steps']
    good_dir, bad_dir = args.good or args.study / 'sr3', args.bad or args.out / 'bad'
    if not (good_dir / 'config.json').is_file(): parser.error(f"{good_dir} is not a run folder")

    if not (bad_dir / 'config.json').is_file():
        study = experiments.train_configs(experiments.EXPERIMENT_PRESETS['tiny'], device='cpu', progress=False)
        try: cfg = study['sr3']._replace([f'max_steps={args.bad_steps}', *(args.bad_set or ['inner_channel=8', 'norm_groups=4'])])
        except ValueError as e: parser.error(str(e))
        experiments.train_stage('sr3', cfg, bad_dir, experiments.Progress())
    good, bad = inference.load_run(good_dir), inference.load_run(bad_dir)
    for key in ('residual', 'residual_scale', 'precondition', 'sigma_data', 'n_timestep', 'lr_size', 'hr_size'):
        if getattr(good.config, key) != getattr(bad.config, key):
            parser.error(f"the two networks differ in {key} ({getattr(good.config, key)} vs {getattr(bad.config, key)}): they must predict the same thing")
    scale = good.config.hr_size // good.config.lr_size
    reg = inference.load_run(args.study / 'regression')
    train_hr, train_x_up = training_patches(32, good.config.lr_size, good.config.hr_size)
    train_names = [f'train{i}' for i in range(len(train_hr))]
    psnr_reg, train_psnr_reg = (metrics.psnr(experiments.regression_outputs(reg, x), y) for x, y in ((x_up, hr), (train_x_up, train_hr)))
    photos = list(dict.fromkeys(map(experiments.photograph_of, names)))
    masks = {p: torch.tensor([experiments.photograph_of(n) == p for n in names]) for p in photos}

    args.out.mkdir(parents=True, exist_ok=True)
    result = {'good': str(good_dir), 'bad': str(bad_dir), 'good_step': good.step, 'bad_step': bad.step, 'steps': steps,
              'n_test': len(hr), 'n_train_patches': len(train_hr), 'weights': {}}
    pick, unguided = experiments.pick_indices(len(names), 16), None
    columns = [x_up[pick]]
    for w in args.weights:
        run, t0 = dataclasses.replace(good, model=Guided(good.model, bad.model, w)), time.perf_counter()
        chain, _ = experiments.sr3_outputs(run, x_up, names, steps=steps, schedule='respace', batch_size=48)
        train_chain, _ = experiments.sr3_outputs(run, train_x_up, train_names, steps=steps, schedule='respace', batch_size=32)
        row = {'test': scores(chain, hr, psnr_reg, scale), 'train': scores(train_chain, train_hr, train_psnr_reg, scale),
               'by_photograph': {p: scores(chain[m], hr[m], psnr_reg[m], scale) for p, m in masks.items()},
               'seconds': round(time.perf_counter() - t0, 1)}
        if w == 1: unguided = metrics.psnr(chain, hr)
        elif unguided is not None: row['test_minus_unguided'] = paired(metrics.psnr(chain, hr), unguided)
        result['weights'][f'{w:g}'] = row
        print(f"w = {w:g}: {json.dumps(row)}", flush=True)
        columns.append(chain[pick])
        (args.out / 'guidance.json').write_text(json.dumps(result, indent=1) + '\n')     # after every weight: a long run keeps what it did
    images.save_image_grid([*columns, hr[pick]], args.out / 'guidance.png')
    print(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
