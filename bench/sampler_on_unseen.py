"""The few-step SDE solver against the 2000-step chain on photographs the study neither trains nor tests on: with the
network `make reproduce` trains (`runs/tiny/sr3`), 32 patches of each embedded photograph named, two 2000-step chains
(noise seeds 0 and 1), and DPM-Solver++(2M) SDE at 10 evaluations on its default levels ('karras_window') and on the
earlier default ('log_snr_window'), four seeds each, minus the chains' average (chapter 09).

    python bench/sampler_on_unseen.py immunohistochemistry grass
    python bench/sampler_on_unseen.py retina --run runs/tiny/sr3 --steps 10

About 5 minutes per photograph on 2 CPU cores (the two chains). Prints each line as it is measured.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from sr3lit import data as sr3data
from sr3lit import experiments, images, inference, metrics
from tiny_holdout import holdout_patches        # bench/ is on the path when this script runs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('photos', nargs='+', help='embedded photographs outside the study (not in its training or test split)')
    parser.add_argument('--run', default='runs/tiny/sr3', help='the SR3 run folder (default runs/tiny/sr3)')
    parser.add_argument('--steps', type=int, default=10, help='network evaluations of the SDE solver (default 10)')
    args = parser.parse_args(argv)
    used = set(sr3data.EMBEDDED_SPLITS['train']) | set(sr3data.EMBEDDED_SPLITS['test'])
    bad = [p for p in args.photos if p not in images.PHOTO_SOURCES or p in used]
    if bad: parser.error(f"not an embedded photograph outside the study: {', '.join(bad)}; choose from "
                         f"{', '.join(p for p in images.PHOTO_SOURCES if p not in used)}")
    torch.set_num_threads(2)
    run = inference.load_run(args.run)
    scale = run.config.hr_size // run.config.lr_size
    for photo in args.photos:
        hr, x_up = holdout_patches(photo, 32, run.config.lr_size, run.config.hr_size)
        names = [f'{photo}{i}' for i in range(len(hr))]
        chains = [experiments.sr3_outputs(run, x_up, names, steps=run.config.n_timestep, schedule='respace', batch_size=32,
                                          seed=s)[0] for s in (0, 1)]
        psnr, ssim = [metrics.psnr(c, hr) for c in chains], [metrics.ssim(c, hr) for c in chains]
        hf = [metrics.high_frequency_ratio(c, hr, scale) for c in chains]
        print(f"{photo}: bicubic {float(metrics.psnr(x_up, hr).mean()):.2f} dB; chains {', '.join(f'{float(p.mean()):.2f}' for p in psnr)} dB, "
              f"high-frequency ratio {', '.join(f'{h:.3f}' for h in hf)}; seed 1 minus seed 0: SSIM {float((ssim[1] - ssim[0]).mean()):+.4f}", flush=True)
        p_ref, s_ref, h_ref = sum(psnr) / 2, sum(ssim) / 2, sum(hf) / 2
        for levels in ('karras_window', 'log_snr_window'):
            d = []
            for seed in range(4):
                out, _ = experiments.sr3_outputs(run, x_up, names, steps=args.steps, schedule=levels, sampler='dpmpp2m_sde',
                                                 seed=300 + seed, batch_size=32)
                d.append([float((metrics.psnr(out, hr) - p_ref).mean()), float((metrics.ssim(out, hr) - s_ref).mean()),
                          metrics.high_frequency_ratio(out, hr, scale) - h_ref])
            d = np.mean(d, 0)
            print(f"  DPM-Solver++(2M) SDE, {args.steps} evaluations, {levels:15s} minus the chains: PSNR {d[0]:+.2f} dB, "
                  f"SSIM {d[1]:+.4f}, high-frequency ratio {d[2]:+.3f}", flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
