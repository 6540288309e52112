"""Where the `tiny` study's SR3 makes its flaws: start its 2000-step chain not from pure noise but from the regression
baseline's output noised to step t0 (y_t0 = sqrt(gamma_t0) y_reg + sqrt(1 - gamma_t0) eps, in the residual the network
predicts), then run the DDPM steps t0..1 as the study does. A chain started at a lower noise level keeps the
regression's shapes and colours and only chooses the detail below that level (the idea of Chung et al.'s "Come-closer-
diffuse-faster"). A diagnostic of a finished study, not one of its methods: the study's SR3 starts from pure noise.

    make reproduce                                    # runs/tiny: the study, its test set, SR3 and the regression
    python bench/regression_start.py                  # t0 = 2000, 1000, 700, 400 (about 5 min on 2 cores)
    python bench/regression_start.py --t0 2000 1200 --train 0

Scored on the study's test patches and on `--train` patches of the *training* photographs (spread over them as
bench/tiny_choices.py cuts them): per t0, the sample's PSNR minus the regression's (paired mean +- standard error) and
its high-frequency energy ratio (sr3lit.metrics). Every t0 starts from the same noise eps (seed 0); t0 = 2000 is a
chain from (practically) pure noise. Printed, and saved in `--out` (default `<study>/regression_start`) as
`regression_start.json` and `regression_start.png`: 16 test patches spread over the test set, a row each: bicubic,
the regression, the sample from each t0, the reference.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from sr3lit import experiments, images, inference, metrics
from sr3lit.forward import q_sample
from sr3lit.regression import target_of
from sr3lit.sampling import sample
from sr3lit.schedules import NoiseSchedule
from tiny_choices import paired, training_patches     # bench/ is on the path when this script runs


def started_from(run: inference.Run, x_up: torch.Tensor, start: torch.Tensor, t0: int, eps: torch.Tensor, seed: int = 1) -> torch.Tensor:
    "SR3 samples of `x_up` from the images `start` noised to step `t0` with `eps`, then DDPM steps t0..1 (images in [-1, 1])."
    full, target = run.config.noise_schedule(), target_of(run.config)
    gammas = full.gammas[:t0]                                      # steps 1..t0 of the training schedule, unchanged
    y_t0 = q_sample(target.encode(start, x_up), float(gammas[-1]), eps)   # chapter 01's q(y_t0 | y_0)
    out = sample(run.model, x_up, NoiseSchedule.from_gammas(gammas), y_T=y_t0, seed=seed,
                 clip_bounds=target.bounds(x_up) if target.residual else None, progress=False)
    return target.decode(out, x_up)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--study', type=Path, default=Path('runs/tiny'), help='the finished study (default runs/tiny)')
    parser.add_argument('--t0', type=int, nargs='+', default=[2000, 1000, 700, 400], help='start steps (default 2000 1000 700 400)')
    parser.add_argument('--train', type=int, default=32, help='patches of the training photographs (default 32; 0: none)')
    parser.add_argument('--out', type=Path, help='where the json and png go (default <study>/regression_start)')
    args = parser.parse_args(argv)
    results = args.study / 'results.json'
    if not results.is_file(): parser.error(f"{results} does not exist: run `make reproduce` first")
    run, reg = inference.load_run(args.study / 'sr3'), inference.load_run(args.study / 'regression')
    T = run.config.n_timestep
    if any(not 1 <= t <= T for t in args.t0): parser.error(f"every --t0 must lie in 1..{T}")
    torch.set_num_threads(2)
    names = json.loads(results.read_text())['data']['test_images']
    hr = experiments.read_images(args.study / 'test' / 'hr', names)
    x_up = experiments.read_images(args.study / 'test' / 'bicubic', names)
    n_test = len(hr)
    if args.train:
        hr_train, x_up_train = training_patches(args.train, run.config.lr_size, run.config.hr_size)
        hr, x_up = torch.cat([hr, hr_train]), torch.cat([x_up, x_up_train])
    r = experiments.regression_outputs(reg, x_up)
    eps = experiments.initial_noise([f'patch{i}' for i in range(len(x_up))], x_up.shape[1:], 0)
    scale = run.config.hr_size // run.config.lr_size
    psnr_reg = metrics.psnr(r, hr)
    out = args.out or args.study / 'regression_start'
    out.mkdir(parents=True, exist_ok=True)
    rows, samples = {}, []
    gammas = run.config.noise_schedule().gammas
    for t0 in args.t0:
        y = started_from(run, x_up, r, t0, eps)
        p, gamma = metrics.psnr(y, hr), gammas[t0 - 1]
        row = {'sigma_t0': round(float(np.sqrt((1 - gamma) / gamma)), 3),
               'test_minus_regression': paired(p[:n_test], psnr_reg[:n_test]),
               'test_hf_ratio': round(metrics.high_frequency_ratio(y[:n_test], hr[:n_test], scale), 3)}
        if args.train:
            row.update(train_minus_regression=paired(p[n_test:], psnr_reg[n_test:]),
                       train_hf_ratio=round(metrics.high_frequency_ratio(y[n_test:], hr[n_test:], scale), 3))
        rows[t0] = row
        samples.append(y[:n_test])
        print(f"t0 = {t0} (sigma {row['sigma_t0']}): {json.dumps(row)}", flush=True)
    (out / 'regression_start.json').write_text(json.dumps({'study': str(args.study), 'n_test': n_test, 'n_train': args.train,
                                                           'rows': rows}, indent=1) + '\n')
    pick = experiments.pick_indices(n_test, 16)
    images.save_image_grid([c[pick] for c in [x_up[:n_test], r[:n_test], *samples, hr[:n_test]]], out / 'regression_start.png')
    print(f"wrote {out / 'regression_start.json'} and {out / 'regression_start.png'}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
