"""Where each method's detail lies in colour: the high-frequency ratio of a finished study's outputs along luminance and
the two opponent-colour axes (sr3lit.metrics.high_frequency_ratio_by_colour, chapter 08), against the references.

    make reproduce                        # runs/tiny
    python bench/colour_detail.py         # a table, one row per folder of runs/tiny/samples

Detail with the references' energy but in the wrong colours (a red-green ratio far above the luminance one) is what
coloured speckle looks like in numbers.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sr3lit import experiments
from sr3lit.metrics import COLOUR_AXES, high_frequency_ratio_by_colour


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--study', type=Path, default=Path('runs/tiny'), help='the finished study (default runs/tiny)')
    args = parser.parse_args(argv)
    results = args.study / 'results.json'
    if not results.is_file(): parser.error(f"{results} does not exist: run `make reproduce` first")
    r = json.loads(results.read_text())
    names, scale = r['data']['test_images'], r['data']['hr_size'] // r['data']['lr_size']
    hr = experiments.read_images(args.study / 'test' / 'hr', names)
    print(f"{args.study}: {len(names)} test images; high-frequency ratio to the references' along each colour axis")
    print(f"{'outputs':<40}" + ''.join(f'{a:>13}' for a in COLOUR_AXES))
    for folder in sorted(p for p in (args.study / 'samples').iterdir() if p.is_dir()):
        ratios = high_frequency_ratio_by_colour(experiments.read_images(folder, names), hr, scale)
        print(f"{folder.name:<40}" + ''.join(f'{v:13.2f}' for v in ratios.values()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
