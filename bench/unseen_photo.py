"""Coloured speckle on a photograph the study never saw: score SR3 runs and the study's regression on patches of an image
file outside the shipped photographs, and say in which colours each chain puts its detail (chapter 17).

    python bench/unseen_photo.py cheetah2.jpg                                # runs/tiny/sr3 against runs/tiny/regression
    python bench/unseen_photo.py cheetah2.jpg --runs runs/tiny/sr3 runs/tiny-g0/sr3
    python bench/unseen_photo.py bus.jpg --runs other/sr3 --regression other/regression   # another study

Any photograph will do. Chapter 06 measured four from the wheels of packages sr3lit does not depend on (`pip download
--no-deps gradio ultralytics`, then unzip `gradio/test_data/cheetah2.jpg`, `gradio/media_assets/images/cheetah.jpg`,
`ultralytics/assets/bus.jpg` and `ultralytics/assets/zidane.jpg`). Chapter 17's older tables measured the quokka of
imgaug 0.4.0, a training photograph since. The photograph is cut as the embedded photographs are (its shorter side
resized to 8 x hr_size, windows of hr_size at a stride of hr_size whose pixels vary), `--n` windows spread over it. Per run,
the chain of `--steps` respaced steps (default 500, the study's main chain; chapter 06's numbers used all 2000) with
noise seed 0: its PSNR minus the
regression's (paired mean and standard error over the patches) and its high-frequency energy as a ratio to the
references', overall and along luminance and the two opponent-colour axes (sr3lit.metrics). A chain whose red-green
ratio is far above its luminance ratio draws coloured speckle. Printed, and saved as `unseen_photo.json` in the first
run's folder. About a minute per run on 2 CPU cores at 500 steps.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sr3lit import data as sr3data
from sr3lit import experiments, inference, metrics
from tiny_choices import paired, spread_patches     # bench/ is on the path when this script runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('photo', type=Path, help='an image file (any format PIL reads)')
    parser.add_argument('--runs', nargs='+', type=Path, default=[Path('runs/tiny/sr3')], help='SR3 run folders (default runs/tiny/sr3)')
    parser.add_argument('--regression', type=Path, default=Path('runs/tiny/regression'), help='the regression run (default runs/tiny/regression)')
    parser.add_argument('--n', type=int, default=32, help='patches of the photograph (default 32)')
    parser.add_argument('--steps', type=int, default=500, help="the chain's respaced steps (default 500, the tiny study's)")
    args = parser.parse_args(argv)
    try: photo = sr3data.load_rgb(args.photo)
    except sr3data.DataError as e: parser.error(str(e))
    for folder in args.runs + [args.regression]:
        if not (folder / 'config.json').is_file(): parser.error(f"{folder} holds no finished run (no config.json)")

    torch.set_num_threads(2)
    reg = inference.load_run(args.regression)
    patches = sr3data.photo_patches(args.photo.stem, photo, reg.config.hr_size)      # cut as the embedded photographs are
    if not patches: parser.error(f"{args.photo} is smaller than one {reg.config.hr_size} px patch, or flat")
    hr, x_up = spread_patches(patches, args.n, reg.config.lr_size)
    scale = reg.config.hr_size // reg.config.lr_size
    r = experiments.regression_outputs(reg, x_up)
    result = {'photo': str(args.photo), 'n': len(hr), 'steps': args.steps, 'regression': str(args.regression),
              'bicubic_minus_regression': paired(metrics.psnr(x_up, hr), metrics.psnr(r, hr)),
              'regression_hf_ratio': round(metrics.high_frequency_ratio(r, hr, scale), 3), 'runs': {}}
    print(f"{args.photo}: {len(hr)} patches; bicubic minus regression {result['bicubic_minus_regression']} dB")
    for folder in args.runs:
        run = inference.load_run(folder)
        chain, _ = experiments.sr3_outputs(run, x_up, [f'u{i}' for i in range(len(hr))], steps=min(args.steps, run.config.n_timestep),
                                           schedule='respace', batch_size=32)
        row = {'chain_minus_regression': paired(metrics.psnr(chain, hr), metrics.psnr(r, hr)),
               'hf_ratio': round(metrics.high_frequency_ratio(chain, hr, scale), 3),
               'hf_ratio_colour': {k: round(v, 3) for k, v in metrics.high_frequency_ratio_by_colour(chain, hr, scale).items()}}
        result['runs'][str(folder)] = row
        print(f"{str(folder):<28} chain minus regression {row['chain_minus_regression']} dB, high-frequency ratio "
              f"{row['hf_ratio']}, by colour {row['hf_ratio_colour']}", flush=True)
    (args.runs[0] / 'unseen_photo.json').write_text(json.dumps(result, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
