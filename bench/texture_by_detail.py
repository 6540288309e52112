"""Where the `tiny` study's SR3 sample loses to the regression baseline: the test patches by photograph, and sorted into
quarters by the detail of their *inputs* (the mean squared difference of neighbouring pixels of the bicubic
up-sampling, which the network sees), and per group the 2000-step chain's high-frequency energy
(`sr3lit.metrics.high_frequency_energy`) as a multiple of the references', and its PSNR minus the regression's (paired
mean +- standard error). The same quarters on patches of the *training* photographs, sampled with the study's chain
and noise, tell a property of the network from a property of the test photographs.

Groups are made from what the network sees: sorted by the references' own detail, even a perfect posterior sampler
would seem to put too much detail into the quarter of the least detailed references and too little into the most
detailed one (regression to the mean), because the detail a reference has beyond its input is what no method knows.

    python bench/texture_by_detail.py                          # runs/tiny; 48 training patches (about 3 min on 2 cores)
    python bench/texture_by_detail.py --study runs/tiny --train 0

A posterior sample should carry the detail of its own patch: about as much high-frequency energy as the reference
in every quarter, and about 3 dB below the posterior mean in every quarter (chapter 08). Printed, and saved as
`<study>/texture_by_detail.json`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from sr3lit import experiments, inference, metrics
from sr3lit.evaluate import paired_difference
from tiny_choices import training_patches      # bench/ is on the path when this script runs


def input_detail(x_up: torch.Tensor) -> torch.Tensor:
    "(N,) the mean squared difference of horizontally and vertically neighbouring pixels of each input."
    return ((x_up[..., 1:, :] - x_up[..., :-1, :]).pow(2).mean(dim=(1, 2, 3))
            + (x_up[..., :, 1:] - x_up[..., :, :-1]).pow(2).mean(dim=(1, 2, 3)))


def quarters(key: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    "Four groups of indices, by increasing `key`."
    order = key.argsort()
    return [(str(q + 1), order[q * len(order) // 4:(q + 1) * len(order) // 4]) for q in range(4)]


def by_group(hr: torch.Tensor, outputs: dict[str, torch.Tensor], scale: int, groups: list[tuple[str, torch.Tensor]]) -> list[dict]:
    "Per group of indices: the references' high-frequency energy, each output's multiple of it, and PSNR differences."
    ref_energy = metrics.high_frequency_energy(hr, scale)
    psnr = {k: metrics.psnr(v, hr) for k, v in outputs.items()}
    energy = {k: metrics.high_frequency_energy(v, scale) for k, v in outputs.items()}
    rows = []
    for label, idx in groups:
        rows_of = lambda k: [{'name': int(i), 'psnr': float(psnr[k][i])} for i in idx]
        row = {'group': label, 'n': len(idx), 'reference_hf_energy': float(ref_energy[idx].mean())}
        for k in outputs:
            row[f'{k}_hf_multiple'] = float(energy[k][idx].mean() / ref_energy[idx].mean())
            if k != 'regression':
                mean, se = paired_difference(rows_of(k), rows_of('regression'))
                row[f'{k}_minus_regression'] = {'mean': mean, 'se': se}
        rows.append(row)
    return rows


def show(title: str, rows: list[dict]) -> None:
    print(f'\n{title}')
    print('group | reference HF energy | chain HF / reference | regression HF / reference | chain - regression (dB) | bicubic - regression (dB)')
    for r in rows:
        d, b = r['chain_minus_regression'], r['bicubic_minus_regression']
        print(f"{r['group']} (n={r['n']}) | {r['reference_hf_energy']:.1e} | {r['chain_hf_multiple']:.2f} | "
              f"{r['regression_hf_multiple']:.2f} | {d['mean']:+.2f} +- {d['se']:.2f} | {b['mean']:+.2f} +- {b['se']:.2f}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--study', type=Path, default=Path('runs/tiny'), help='a finished tiny study (default runs/tiny)')
    parser.add_argument('--train', type=int, default=48, help='patches of the training photographs to sample (0: none; default 48)')
    args = parser.parse_args(argv)
    results_path = args.study / 'results.json'
    if not results_path.is_file(): parser.error(f"{results_path} does not exist: run `make reproduce` first")
    study = json.loads(results_path.read_text())
    if study.get('preset') != 'tiny': parser.error(f"{args.study} does not hold a tiny study")
    names, full = study['data']['test_images'], study['full_tag']
    scale = study['data']['hr_size'] // study['data']['lr_size']
    read = lambda folder: experiments.read_images(folder, names)
    test = {'chain': read(args.study / 'samples' / full), 'regression': read(args.study / 'samples' / 'regression'),
            'bicubic': read(args.study / 'test' / 'bicubic')}
    hr = read(args.study / 'test' / 'hr')
    photos = [experiments.photograph_of(n) for n in names]
    by_photo = [(p, torch.tensor([i for i, q in enumerate(photos) if q == p])) for p in sorted(set(photos))]
    out = {'test_by_photograph': by_group(hr, test, scale, by_photo),
           'test_by_input_detail': by_group(hr, test, scale, quarters(input_detail(test['bicubic'])))}
    show(f'test patches by photograph (the saved {full} samples)', out['test_by_photograph'])
    show('test patches by quarter of input detail', out['test_by_input_detail'])

    if args.train:
        sr3, reg = inference.load_run(args.study / 'sr3'), inference.load_run(args.study / 'regression')
        hr, x_up = training_patches(args.train, sr3.config.lr_size, sr3.config.hr_size)
        train_names = [f'train{i}' for i in range(len(hr))]
        chain, _ = experiments.sr3_outputs(sr3, x_up, train_names, steps=sr3.config.n_timestep, schedule='respace',
                                           batch_size=study['settings'].get('batch_size', 48), progress=True)
        outputs = {'chain': chain, 'regression': experiments.regression_outputs(reg, x_up), 'bicubic': x_up}
        out['train_by_input_detail'] = by_group(hr, outputs, scale, quarters(input_detail(x_up)))
        show(f'{len(hr)} patches of the training photographs by quarter of input detail (2000-step chain, seed 0)',
             out['train_by_input_detail'])
    (args.study / 'texture_by_detail.json').write_text(json.dumps(out, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
