"""Are the test photographs softer than the training crops of the tiny study?

For 32 px patches, the detail a patch has beyond its input, as a multiple of the detail its input shows: log10 of the
mean squared residual y0 - x_up over the mean squared difference of neighbouring pixels of x_up (texture_by_detail's
`input_detail`). Every photograph is cut as the study cuts its test photographs (chapter 06's `photo_patches`: windows
of 32 px at a stride of 32 whose pixels vary): the training photographs at each side the `tiny` study crops them at
(192, 256 and 384 px, and as they ship), the test photographs as the study cuts them, and any image file given (e.g.
a cheetah of chapter 06).

    python bench/crop_sharpness.py                                   # the statistic only (seconds)
    python bench/crop_sharpness.py --photo cheetah2.jpg
    python bench/crop_sharpness.py --train-soft 0.25 --out /tmp/soft25 --set seed=0 --regression /tmp/choices/regression

With `--train-soft F`, trains and scores the study's SR3 as bench/tiny_choices.py does (same arguments after it), with a
fraction F of its training crops softened: a crop of side hr/f, f ~ U(1, --soft-max), enlarged to hr (PIL bicubic),
i.e. photographs softer than any the study trains on. Chapter 17 reports the trial.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sr3lit import data as sr3data
from texture_by_detail import input_detail      # bench/ is on the path when this script runs
import tiny_choices

SIDES = (192, 256, 384, None)                   # RandomCrops' scales x 8 x hr_size for the tiny study; None: as shipped
AS_SHIPPED = 10**9                              # a photo_size no photograph reaches: photo_patches never enlarges


def softness(patches: list[tuple[str, Image.Image]], lr_size: int = 8) -> torch.Tensor:
    "(N,) log10(mean squared (y0 - x_up) / input detail) of (name, RGB patch) pairs, for the patches whose input is not flat."
    hr, x_up = tiny_choices.spread_patches(patches, len(patches), lr_size)
    residual, detail = (hr - x_up).pow(2).mean(dim=(1, 2, 3)), input_detail(x_up)
    keep = detail > 1e-5
    return (residual[keep] / detail[keep]).log10()


def describe(values: torch.Tensor) -> str:
    q = torch.quantile(values, torch.tensor([0.25, 0.5, 0.75]))
    return f"{len(values):5d} patches  median {q[1]:+.2f}  quartiles {q[0]:+.2f} .. {q[2]:+.2f}"


def soften(fraction: float, max_factor: float) -> None:
    "Make RandomCrops draw a fraction of its crops softened (see the module docstring)."
    draw = sr3data.RandomCrops.draw_hr
    def draw_hr(self):
        if not (fraction and float(torch.rand(())) < fraction): return draw(self)
        h, f = self.hr_size, 1 + (max_factor - 1) * float(torch.rand(()))
        self.hr_size = max(2, round(h / f))
        try: small = draw(self)
        finally: self.hr_size = h
        big = Image.fromarray(small.permute(1, 2, 0).numpy()).resize((h, h), Image.BICUBIC)
        return torch.from_numpy(np.array(big)).permute(2, 0, 1).contiguous()
    sr3data.RandomCrops.draw_hr = draw_hr       # the DataLoader's worker is forked, so it draws with this too


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--photo', type=Path, nargs='*', default=[], help='image files to measure as the test photographs are cut')
    parser.add_argument('--train-soft', type=float, metavar='F', help='train and score with this fraction of softened crops; '
                        'the remaining arguments go to bench/tiny_choices.py')
    parser.add_argument('--soft-max', type=float, default=2.0, help='the largest enlargement of a softened crop (default 2)')
    args, rest = parser.parse_known_args(argv)
    if args.train_soft is not None:
        if not 0 <= args.train_soft <= 1 or args.soft_max < 1: parser.error("need 0 <= --train-soft <= 1 and --soft-max >= 1")
        soften(args.train_soft, args.soft_max)
        return tiny_choices.main(rest)
    if rest: parser.error(f"unrecognised arguments: {' '.join(rest)}")
    photos = []
    for path in args.photo:
        try: photos.append((path.stem, sr3data.load_rgb(path)))
        except sr3data.DataError as e: parser.error(str(e))

    hr_size = 32
    print("log10(detail beyond the input / the input's detail), 32 px patches, 8 px inputs")
    for side in SIDES:
        patches = [p for name in sr3data.EMBEDDED_SPLITS['train']
                   for p in sr3data.photo_patches(name, sr3data.embedded_photo(name), hr_size, side or AS_SHIPPED)]
        label = f"training photographs, shorter side {side or 'as shipped'}"
        print(f"  {label:>44}: {describe(softness(patches))}")
    tests = [(name, sr3data.embedded_photo(name)) for name in sr3data.EMBEDDED_SPLITS['test']]
    for name, photo in tests + photos:
        patches = sr3data.photo_patches(name, photo, hr_size)
        if not patches: print(f"  {name}: no {hr_size} px patch"); continue
        print(f"  {name + ' (as the study cuts it)':>44}: {describe(softness(patches))}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
