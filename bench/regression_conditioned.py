"""SR3 conditioned on the regression instead of on bicubic (the idea of ResDiff): a diagnostic of a finished study.

    make reproduce                                                       # runs/tiny: the study and its regression
    python bench/regression_conditioned.py --out /tmp/regcond            # about 12 minutes on 2 CPU cores

The study's SR3 sees the bicubic up-sampling x_up and learns the residual y0 - x_up. Here a second SR3, trained as the
study trains its own (same settings, same steps, same seed), sees the study's frozen regression output r(x_up) in its
place and learns y0 - r(x_up): what the regression misses, where the study's network must also learn what the
regression already gets right. The regression runs once per training step (no gradient) and once per test image.

Scored on the study's 48 test patches with the study's noise (its main chain: DDPM, as many respaced steps as the
study's), paired against the regression; saved as `<out>/regression_conditioned.json`, and `<out>/samples.png` shows
`--n-figure` patches spread over the test set: bicubic, the regression, the study's SR3 sample, this one's, the reference.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sr3lit import experiments, images, inference, metrics, training
from tiny_choices import finished_study, paired     # bench/ is on the path when this script runs


class RegressionConditioned:
    "An objective that hands `objective` the batch with x_up replaced by the frozen regression's output."
    def __init__(self, objective, regression: inference.Run):
        self.objective, self.regression = objective, regression

    def __call__(self, model, batch, rng):
        with torch.no_grad(): r = self.regression.super_resolve(batch['x_up'])
        return self.objective(model, dict(batch, x_up=r.to(batch['x_up'].dtype)), rng)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, required=True, help='the run folder (created, or scored if finished)')
    parser.add_argument('--study', type=Path, default=Path('runs/tiny'), help='the finished study (default runs/tiny)')
    parser.add_argument('--n-figure', type=int, default=16, help='test patches in samples.png (default 16; 0: no figure)')
    args = parser.parse_args(argv)
    study, names, hr, x_up = finished_study(args.study, parser)
    n_chain = study['methods']['sr3']['steps']

    reg = inference.load_run(args.study / 'regression')
    cfg = experiments.train_configs(experiments.EXPERIMENT_PRESETS['tiny'], device='cpu', progress=False)['sr3']
    cfg = cfg._replace({'max_steps': study['training']['sr3']['step'], 'val_every': 0})
    if not (args.out / 'config.json').is_file() or training.checkpoint_steps(args.out)[-1:] != [cfg.max_steps]:
        model = training.build_model(cfg)
        objective = RegressionConditioned(training.get_method('sr3').make_objective(cfg), reg)
        train_data, _ = training.open_datasets(cfg)
        training.fit(model, objective, train_data, cfg, args.out)
    run = inference.load_run(args.out)

    r = experiments.regression_outputs(reg, x_up, 48)
    chain, _ = experiments.sr3_outputs(run, r, names, steps=n_chain, schedule='respace', batch_size=48)
    study_chain = experiments.read_images(args.study / 'samples' / study['full_tag'], names)
    scale = cfg.hr_size // cfg.lr_size
    psnr_reg = metrics.psnr(r, hr)
    result = {'steps': cfg.max_steps, 'chain_steps': n_chain, 'n': len(hr),
              'chain_minus_regression': paired(metrics.psnr(chain, hr), psnr_reg),
              'chain_ssim': round(float(metrics.ssim(chain, hr).mean()), 4),
              'chain_hf_ratio': round(metrics.high_frequency_ratio(chain, hr, scale), 3),
              'study_chain_minus_regression': paired(metrics.psnr(study_chain, hr), psnr_reg),
              'study_chain_hf_ratio': round(metrics.high_frequency_ratio(study_chain, hr, scale), 3),
              'chain_minus_study_chain': paired(metrics.psnr(chain, hr), metrics.psnr(study_chain, hr))}
    for photo in sorted({experiments.photograph_of(n) for n in names}):
        keep = torch.tensor([experiments.photograph_of(n) == photo for n in names])
        result[f'{photo}_hf_ratio'] = round(metrics.high_frequency_ratio(chain[keep], hr[keep], scale), 3)
        result[f'{photo}_chain_minus_regression'] = paired(metrics.psnr(chain[keep], hr[keep]), psnr_reg[keep])
    if args.n_figure > 0:
        pick = experiments.pick_indices(len(names), args.n_figure)
        images.save_image_grid([c[pick] for c in (x_up, r, study_chain, chain, hr)], args.out / 'samples.png')
    (args.out / 'regression_conditioned.json').write_text(json.dumps(result, indent=1) + '\n')
    print(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
