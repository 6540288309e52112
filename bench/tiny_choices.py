"""The measurements behind the `tiny` study's training choices (chapter 13): train the tiny SR3 with some settings
changed (its steps, batch and every other setting as `sr3lit reproduce tiny` trains it, then `--set`), and score it
on patches of the *training* photographs, so that no choice is made on the test photographs.

    python bench/tiny_choices.py --out /tmp/choices/base                                   # the study's own settings
    python bench/tiny_choices.py --out /tmp/choices/b32 --set batch_size=32 --set max_steps=1200
    python bench/tiny_choices.py --out /tmp/choices/alg1 --set lognormal_fraction=0
    python bench/tiny_choices.py --out /tmp/choices/b32 --set batch_size=32 --set max_steps=1200 \
                                 --compare /tmp/choices/base                               # paired against another run

A run folder that already holds the finished run is scored without training again (with the same `--set`: a run
with other settings is refused). The regression baseline every
row is compared with is trained once as the study trains it (`--regression DIR`, default
`<out>/../regression`). Printed, and saved as `<out>/choices.json`:

- the 2000-step chain's PSNR minus the regression's (paired mean +- standard error over the patches), and its
  high-frequency energy ratio (sr3lit.metrics);
- the mean of 8 samples minus the regression, drawn as the study draws them (its `mean_sampler`, `mean_steps`;
  before the study's mean moved to DPM-Solver++(2M) SDE at 10 steps, 50 respaced DDPM steps);
- the flat-colour error (grey levels, mean and worst over 24 random colours; one sample as the study draws it; chapter 16);
- the PSNR of the network's estimate of y0 from pure noise (t = T), as chapter 16's Table 3 scores it;
- with `--compare`: this run's chain minus the other run's, paired (the chains share their noise, seed 0).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sr3lit import data as sr3data
from sr3lit import experiments, metrics, training
from sr3lit.evaluate import paired_difference


def training_patches(n: int = 32, lr_size: int = 8, hr_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    "`n` patches spread over the training photographs: (HR, bicubic x_up), in [-1, 1]."
    return spread_patches(sr3data.embedded_patches('train', hr_size), n, lr_size)


def spread_patches(patches: list, n: int, lr_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    "`n` of (name, HR patch) pairs, spread evenly over the list, as the test set is made: (HR, bicubic x_up), in [-1, 1]."
    ds = sr3data.EmbeddedSR([patches[i] for i in experiments.pick_indices(len(patches), n, 'spread')], lr_size, split='test')
    items = [ds[i] for i in range(len(ds))]
    return torch.stack([it['HR'] for it in items]), torch.stack([it['x_up'] for it in items])


def paired(a: torch.Tensor, b: torch.Tensor) -> dict:
    "Mean and standard error of the per-image difference a - b (sr3lit.evaluate.paired_difference, the report's)."
    rows = lambda values: [{'name': i, 'v': float(v)} for i, v in enumerate(values)]
    mean, se = paired_difference(rows(a), rows(b), 'v')
    return {'mean': round(mean, 3), 'se': round(se, 3)}


def finished_study(study: Path, parser: argparse.ArgumentParser) -> tuple[dict, list, torch.Tensor, torch.Tensor]:
    "A finished study's results.json, its test patches' names, references and bicubic inputs (a usage error if it is missing)."
    results = study / 'results.json'
    if not results.is_file(): parser.error(f"{results} does not exist: run `make reproduce` first")
    found = json.loads(results.read_text())
    names = found['data']['test_images']
    return found, names, experiments.read_images(study / 'test' / 'hr', names), experiments.read_images(study / 'test' / 'bicubic', names)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, type=Path, help='the SR3 run folder (created, or scored if finished)')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='a TrainConfig setting to change')
    parser.add_argument('--regression', type=Path, help='the regression run (default: <out>/../regression, trained if missing)')
    parser.add_argument('--compare', type=Path, help='another run folder scored by this script: print this chain minus its chain')
    parser.add_argument('--n', type=int, default=32, help='training-photo patches to score on (default 32)')
    parser.add_argument('--chain-steps', type=int, default=2000, help='steps of the full chain (default 2000)')
    args = parser.parse_args(argv)

    study = experiments.train_configs(experiments.EXPERIMENT_PRESETS['tiny'], device='cpu', progress=False)   # as the study trains
    try: cfg = training.get_method('sr3').configure(study['sr3']._replace(args.set))
    except ValueError as e: parser.error(str(e))                                   # one line, nothing trained
    log = experiments.Progress()
    run, summary = experiments.train_stage('sr3', cfg, args.out, log)               # skipped when finished before
    reg, _ = experiments.train_stage('regression', study['regression'], args.regression or args.out.parent / 'regression', log)

    hr, x_up = training_patches(args.n, cfg.lr_size, cfg.hr_size)
    names = [f'train{i}' for i in range(len(hr))]
    psnr_reg = metrics.psnr(experiments.regression_outputs(reg, x_up), hr)
    chain, _ = experiments.sr3_outputs(run, x_up, names, steps=min(args.chain_steps, cfg.n_timestep), schedule='respace', batch_size=32)
    tiny = experiments.EXPERIMENT_PRESETS['tiny']                                    # the study's mean of samples
    mean8, _ = experiments.sr3_outputs(run, x_up, names, steps=tiny.mean_steps, sampler=tiny.mean_sampler,
                                       batch_size=32, n_samples=tiny.n_mean)
    torch.save(chain, args.out / 'choices_chain.pt')
    flat = experiments.flat_colour_error(run, 24)
    y0 = experiments.error_by_noise_level(run.model, cfg.noise_schedule(), x_up, hr, {'psnr': experiments.unrounded_psnr},
                                          timesteps=[cfg.n_timestep], target=training.target_of(cfg))['psnr']
    psnr_chain = metrics.psnr(chain, hr)
    result = {'settings': args.set, 'train_seconds': summary['seconds'], 'n': len(hr), 'regression_psnr': round(float(psnr_reg.mean()), 3),
              'chain_minus_regression': paired(psnr_chain, psnr_reg), 'chain_hf_ratio': round(metrics.high_frequency_ratio(chain, hr, cfg.hr_size // cfg.lr_size), 3),
              'mean8_minus_regression': paired(metrics.psnr(mean8, hr), psnr_reg),
              'flat_colour': {'mean': round(flat['mean'], 2), 'worst': round(flat['worst'], 2)},
              'y0_psnr_from_noise': round(float(next(iter(y0.values()))), 2)}
    if args.compare:
        other = torch.load(args.compare / 'choices_chain.pt')
        result['chain_minus_compared'] = paired(psnr_chain, metrics.psnr(other, hr))
    (args.out / 'choices.json').write_text(json.dumps(result, indent=1) + '\n')
    print(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
