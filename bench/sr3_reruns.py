"""How far the `tiny` study's SR3 rows move when only SR3's training run changes: train the study's SR3 again with other
seeds (initial weights, crops and noise draws), then run the study's 2000-step chain and its mean of 8 samples on the
study's test patches with the study's sampling noise, and compare, paired over the patches, with the study's
regression baseline and with the study's own SR3.

    python bench/sr3_reruns.py --study runs/tiny --out /tmp/reruns --seeds 1 2

`--study` is a finished `sr3lit reproduce tiny` folder (its results.json holds the per-patch numbers compared with).
Each seed trains into `<out>/seed-S/sr3` (a finished run is reused) and samples as chapter 16's `sr3_stages` does.
Printed, and saved as `<out>/reruns.json`: per seed, PSNR differences (mean +- standard error, dB) and the
high-frequency ratio of the chain.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sr3lit import experiments
from sr3lit.evaluate import paired_difference


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--study', type=Path, default=Path('runs/tiny'), help='a finished tiny study (default runs/tiny)')
    parser.add_argument('--out', type=Path, required=True, help='folder for the reruns')
    parser.add_argument('--seeds', type=int, nargs='+', default=[1], help='training seeds (the study trains with 0)')
    args = parser.parse_args(argv)
    study = json.loads((args.study / 'results.json').read_text())
    if study.get('preset') != 'tiny': raise SystemExit(f"{args.study} does not hold a tiny study")
    preset = experiments.get_experiment_preset('tiny')
    log = experiments.Progress()
    full = study['full_tag']
    rows = lambda tag: study['per_image'][tag]
    out = {}
    for seed in args.seeds:
        cfg = experiments.train_configs(preset, device='cpu')['sr3']._replace({'seed': seed})
        folder = args.out / f'seed-{seed}'
        run, _ = experiments.train_stage('sr3', cfg, folder / 'sr3', log)
        test = experiments.prepare_test_set(preset, cfg, folder, log)
        if test['names'] != study['data']['test_images']: raise SystemExit("the test patches differ from the study's")
        stages = experiments.sr3_stages(run, [('ddpm', 'full', cfg.n_timestep)], preset, test, folder, log, progress=True)
        chain, mean = stages[full]['images'], stages['sr3-mean']['images']
        d = lambda a, b: dict(zip(('mean', 'se'), (round(v, 3) for v in paired_difference(a, b, 'psnr'))))
        out[seed] = {'chain_minus_regression': d(chain, rows('regression')), 'mean_minus_regression': d(mean, rows('regression')),
                     'chain_minus_study_chain': d(chain, rows(full)), 'mean_minus_study_mean': d(mean, rows('sr3-mean')),
                     'chain_hf_ratio': round(stages[full]['mean']['hf_ratio'], 3)}
        r = out[seed]
        print(f"seed {seed}: chain - regression {r['chain_minus_regression']['mean']:+.2f} +- {r['chain_minus_regression']['se']:.2f} dB, "
              f"mean of {preset.n_mean} - regression {r['mean_minus_regression']['mean']:+.2f} +- {r['mean_minus_regression']['se']:.2f}; "
              f"against the study's SR3: chain {r['chain_minus_study_chain']['mean']:+.2f} +- {r['chain_minus_study_chain']['se']:.2f}, "
              f"mean {r['mean_minus_study_mean']['mean']:+.2f} +- {r['mean_minus_study_mean']['se']:.2f}; "
              f"high-frequency ratio {r['chain_hf_ratio']:.2f}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'reruns.json').write_text(json.dumps(out, indent=2))
    return 0


if __name__ == '__main__':
    sys.exit(main())
