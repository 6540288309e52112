"""How the tiny study's SR3 depends on its training budget: train SR3 as `sr3lit reproduce tiny` trains it, but for
`--steps` steps, and score it on the study's own test patches against the study's regression baseline. A diagnostic
of a finished study, not a way to choose settings (choices are made on training photographs: bench/tiny_choices.py).

    make reproduce                                                      # runs/tiny: the study, its test set and regression
    python bench/tiny_budget.py --steps 4000 --out /tmp/budget/4000     # SR3 trained twice as long
    python bench/tiny_budget.py --steps 6000 --set inner_channel=32 --out /tmp/budget/w32   # and twice as wide

Printed, and saved as `<out>/budget.json` (paired mean +- standard error over the test patches):

- the study's main chain (its Table 1 row: DDPM, as many respaced steps as the study's) from this run: its PSNR minus
  the regression's, its SSIM and high-frequency energy ratio;
- per test photograph: that chain's PSNR minus the study's own chain's (the same noise) and its high-frequency ratio;
- DPM-Solver++(2M) SDE with 10 network evaluations (its default levels) minus the chain, and its ratio (Table 2's check).

Saved beside it, `<out>/budget_samples.png`: `--n-figure` test patches spread evenly over the test set (as the study's
comparison figure picks them), a row each: bicubic, the study's own main chain, this run's (the same noise), the
reference. Both chains start from the same noise, so the rows show what the longer training changes in one sample.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sr3lit import experiments, images, inference, metrics
from tiny_choices import finished_study, paired     # bench/ is on the path when this script runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, required=True, help="SR3's training steps (the study's: 2000)")
    parser.add_argument('--out', type=Path, required=True, help='the SR3 run folder (created, or scored if finished)')
    parser.add_argument('--study', type=Path, default=Path('runs/tiny'), help='the finished study (default runs/tiny)')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        help="another TrainConfig setting to change (repeatable; e.g. inner_channel=32)")
    parser.add_argument('--n-figure', type=int, default=16, help='test patches in budget_samples.png (default 16; 0: no figure)')
    args = parser.parse_args(argv)
    study_results, names, hr, x_up = finished_study(args.study, parser)
    n_chain = study_results['methods']['sr3']['steps']

    study = experiments.train_configs(experiments.EXPERIMENT_PRESETS['tiny'], device='cpu', progress=False)
    if any(s.split('=')[0].strip() == 'max_steps' for s in args.set): parser.error("give the training steps as --steps, not --set max_steps")
    try: cfg = study['sr3']._replace([f'max_steps={args.steps}', *args.set])
    except ValueError as e: parser.error(str(e))
    run, summary = experiments.train_stage('sr3', cfg, args.out, experiments.Progress())
    reg = inference.load_run(args.study / 'regression')
    psnr_reg = metrics.psnr(experiments.regression_outputs(reg, x_up), hr)
    chain, _ = experiments.sr3_outputs(run, x_up, names, steps=n_chain, schedule='respace', batch_size=48)
    few, _ = experiments.sr3_outputs(run, x_up, names, steps=10, sampler='dpmpp2m_sde', batch_size=48)
    psnr_chain, scale = metrics.psnr(chain, hr), cfg.hr_size // cfg.lr_size
    result = {'steps': args.steps, 'settings': args.set, 'chain_steps': n_chain, 'train_seconds': summary['seconds'], 'n': len(hr),
              'chain_minus_regression': paired(psnr_chain, psnr_reg),
              'chain_ssim': round(float(metrics.ssim(chain, hr).mean()), 4),
              'chain_hf_ratio': round(metrics.high_frequency_ratio(chain, hr, scale), 3),
              'sde10_minus_chain': paired(metrics.psnr(few, hr), psnr_chain),
              'sde10_ssim_minus_chain': paired(metrics.ssim(few, hr), metrics.ssim(chain, hr)),
              'sde10_hf_ratio': round(metrics.high_frequency_ratio(few, hr, scale), 3)}
    study_chain = args.study / 'samples' / study_results['full_tag']
    own = experiments.read_images(study_chain, names) if (study_chain / f'{names[0]}.png').is_file() else None
    psnr_own = None if own is None else metrics.psnr(own, hr)
    result['by_photograph'] = {}
    for photo in dict.fromkeys(map(experiments.photograph_of, names)):
        mask = torch.tensor([experiments.photograph_of(n) == photo for n in names])
        row = {'n': int(mask.sum()), 'chain_hf_ratio': round(metrics.high_frequency_ratio(chain[mask], hr[mask], scale), 3)}
        if own is not None: row['chain_minus_study_chain'] = paired(psnr_chain[mask], psnr_own[mask])
        result['by_photograph'][photo] = row
    if own is not None: result['chain_minus_study_chain'] = paired(psnr_chain, psnr_own)
    if args.n_figure > 0 and own is not None:
        pick = experiments.pick_indices(len(names), args.n_figure)
        images.save_image_grid([c[pick] for c in [x_up, own, chain, hr]], args.out / 'budget_samples.png')
    (args.out / 'budget.json').write_text(json.dumps(result, indent=1) + '\n')
    print(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
