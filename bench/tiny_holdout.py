"""Which photographs the `tiny` study trains on, measured without the test photographs: train SR3 exactly as
`sr3lit reproduce tiny` does, but on a list of embedded photographs that leaves one training photograph out, and score
the 2000-step chain on patches of the photograph it never saw (chapter 06).

    python bench/tiny_holdout.py --out /tmp/holdout/colour --holdout astronaut \
        --photos coffee,rocket,motorcycle,china,flower
    python bench/tiny_holdout.py --out /tmp/holdout/grey --holdout astronaut \
        --photos coffee,rocket,motorcycle,china,flower,camera,grass,gravel --compare /tmp/holdout/colour

A run folder that already holds the finished run is scored without training again. Printed, and saved as
`<out>/holdout.json`: the chain's PSNR and SSIM, its PSNR minus bicubic's (paired mean and standard error over the
patches), its high-frequency energy ratio and that ratio along luminance and the two opponent-colour axes
(sr3lit.metrics), the flat-colour error (grey levels, mean and worst over the study's 50 random colours; no photograph
involved), and with `--compare` this chain minus the other run's, paired (the chains share their noise, seed 0).
"""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import torch

from sr3lit import data as sr3data
from sr3lit import experiments, images, metrics, training
from tiny_choices import paired, spread_patches            # bench/ is on the path when this script runs


@contextmanager
def training_split(photos: tuple[str, ...]):
    "Train on `photos` instead of the embedded training split (the loader runs in this process: nothing else sees it)."
    before = sr3data.EMBEDDED_SPLITS['train']
    sr3data.EMBEDDED_SPLITS['train'] = photos
    try: yield
    finally: sr3data.EMBEDDED_SPLITS['train'] = before


def holdout_patches(name: str, n: int, lr_size: int, hr_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    "`n` patches spread over the photograph `name`, cut as the test set is cut: (HR, bicubic x_up) in [-1, 1]."
    return spread_patches(sr3data.photo_patches(name, images.embedded_photo(name), hr_size), n, lr_size)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, type=Path, help='the SR3 run folder (created, or scored if finished)')
    parser.add_argument('--photos', required=True, help='comma-separated embedded photographs to train on')
    parser.add_argument('--holdout', required=True, help='the embedded photograph to score on (not among --photos)')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE', help='a TrainConfig setting to change')
    parser.add_argument('--compare', type=Path, help='another run folder scored by this script on the same photograph')
    parser.add_argument('--n', type=int, default=32, help='patches of the held-out photograph (default 32)')
    args = parser.parse_args(argv)
    photos = tuple(p.strip() for p in args.photos.split(',') if p.strip())
    unknown = [p for p in photos + (args.holdout,) if p not in images.PHOTO_SOURCES]
    if unknown: parser.error(f"unknown embedded photograph(s) {', '.join(unknown)}; choose from {', '.join(images.PHOTO_SOURCES)}")
    if args.holdout in photos: parser.error(f"--holdout {args.holdout} is among --photos")

    study = experiments.train_configs(experiments.EXPERIMENT_PRESETS['tiny'], device='cpu', progress=False)
    try: cfg = training.get_method('sr3').configure(study['sr3']._replace(args.set + ['num_workers=0']))
    except ValueError as e: parser.error(str(e))
    with training_split(photos): run, summary = experiments.train_stage('sr3', cfg, args.out, experiments.Progress())

    hr, x_up = holdout_patches(args.holdout, args.n, cfg.lr_size, cfg.hr_size)
    chain, _ = experiments.sr3_outputs(run, x_up, [f'h{i}' for i in range(len(hr))], steps=cfg.n_timestep, schedule='respace', batch_size=32)
    torch.save(chain, args.out / 'holdout_chain.pt')
    psnr, scale = metrics.psnr(chain, hr), cfg.hr_size // cfg.lr_size
    result = {'photos': photos, 'holdout': args.holdout, 'settings': args.set, 'n': len(hr), 'train_seconds': summary.get('seconds'),
              'bicubic_psnr': round(float(metrics.psnr(x_up, hr).mean()), 3), 'chain_psnr': round(float(psnr.mean()), 3),
              'chain_ssim': round(float(metrics.ssim(chain, hr).mean()), 4),
              'chain_minus_bicubic': paired(psnr, metrics.psnr(x_up, hr)),
              'hf_ratio': round(metrics.high_frequency_ratio(chain, hr, scale), 3),
              'hf_ratio_colour': {k: round(v, 3) for k, v in metrics.high_frequency_ratio_by_colour(chain, hr, scale).items()}}
    flat = experiments.flat_colour_error(run, 50)          # the study's flat patches of 50 random colours (chapter 16)
    result['flat_colour'] = {'mean': round(flat['mean'], 2), 'worst': round(flat['worst'], 2)}
    if args.compare: result['chain_minus_compared'] = paired(psnr, metrics.psnr(torch.load(args.compare / 'holdout_chain.pt'), hr))
    (args.out / 'holdout.json').write_text(json.dumps(result, indent=1) + '\n')
    print(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
