"""Execute chapters in place, so that the committed notebooks show their outputs (figures, tables, printed checks).

    python .ci/execute_nbs.py 01_forward 02_posterior        # what `make outputs CHAPTERS="01_forward 02_posterior"` runs
    python .ci/execute_nbs.py --skip-slow 09_sampling         # `#| slow` cells keep the outputs they have

Each notebook runs top to bottom in a fresh kernel (cwd `nbs/`, this checkout's `sr3lit` first on the path, one
thread per library); `#| eval: false` cells are skipped as nbdev_test skips them (they keep their old outputs).
Figures are drawn at 80 dpi and stored as 256-colour PNGs where that makes them much smaller, so that the files
stay small; then each notebook is cleaned with nbdev_clean (which keeps outputs: `clear_all = False`).
Run it with the project's environment (`make outputs` does).
"""
import argparse
import base64
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4.rwbase import split_lines
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
DPI = 80
SLOW_CELL_S = 10                                 # cells at least this slow are listed as they run
SKIP = 'skip-execution'                          # the tag nbclient honours
_EVAL_FALSE = re.compile(r'^\s*#\s*\|\s*eval\s*:\s*false\s*$', re.M)
_SLOW = re.compile(r'^\s*#\s*\|\s*slow\s*$', re.M)


def compress_png(data: str) -> str:
    """A base64 PNG made smaller: flattened on white and reduced to a 256-colour palette (dithered), kept only if it
    saves at least a third. Figures of photographs shrink to about 40% with no visible change at this size."""
    img = Image.open(io.BytesIO(base64.b64decode(data)))
    rgb = Image.new('RGB', img.size, 'white')
    rgb.paste(img, mask=img.getchannel('A') if img.mode == 'RGBA' else None)
    buf = io.BytesIO()
    rgb.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(buf, format='PNG', optimize=True)
    small = base64.b64encode(buf.getvalue()).decode()
    return small if len(small) < 2 / 3 * len(data) else data


def execute(path: Path, timeout: int, skip_slow: bool, env: dict) -> float:
    "Execute notebook `path` in place (only its outputs change; sources keep their form); returns the seconds it took."
    raw = json.loads(path.read_text())
    nb = nbformat.reads(json.dumps(raw), as_version=4)
    for cell in nb.cells:
        if cell.cell_type == 'code' and (_EVAL_FALSE.search(cell.source) or (skip_slow and _SLOW.search(cell.source))):
            cell.metadata.setdefault('tags', []).append(SKIP)
    old_env = dict(os.environ)
    os.environ.update(env)                       # the kernel inherits this process's environment
    t0 = time.perf_counter()
    try:
        NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(NBS)}}).execute()
    finally:
        os.environ.clear(); os.environ.update(old_env)
    seconds = time.perf_counter() - t0
    split_lines(nb)                              # multi-line outputs as lists of lines, as Jupyter writes them
    for raw_cell, cell in zip(raw['cells'], nb.cells, strict=True):
        if raw_cell['cell_type'] != 'code': continue
        skipped = SKIP in cell.metadata.get('tags', [])
        if not skipped:
            raw_cell['outputs'] = json.loads(json.dumps(cell.outputs))
            for out in raw_cell['outputs']:
                if 'image/png' in out.get('data', {}):
                    png = out['data']['image/png']
                    out['data']['image/png'] = compress_png(''.join(png) if isinstance(png, list) else png)
        raw_cell['execution_count'] = None
        ex = cell.metadata.get('execution', {})  # name the slow cells, so that the chapter can warn its reader
        if 'iopub.execute_input' in ex and 'shell.execute_reply' in ex:
            secs = (datetime.fromisoformat(ex['shell.execute_reply'].rstrip('Z')) -
                    datetime.fromisoformat(ex['iopub.execute_input'].rstrip('Z'))).total_seconds()
            first_line = ''.join(cell.source).split('\n')[0]      # source is a list of lines after split_lines
            if secs >= SLOW_CELL_S: print(f'  {path.stem}: a cell took {secs:.0f} s: {first_line[:70]!r}')
    raw['metadata'].pop('widgets', None)         # the widgets' saved state: large, and no viewer of the file uses it
    path.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + '\n')
    return seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('chapters', nargs='+', help='notebook names in nbs/, with or without .ipynb')
    ap.add_argument('--timeout', type=int, default=1800, help='seconds a single cell may take')
    ap.add_argument('--skip-slow', action='store_true', help='do not execute `#| slow` cells (they keep their old outputs)')
    args = ap.parse_args()
    paths = [NBS / (c if c.endswith('.ipynb') else f'{c}.ipynb') for c in args.chapters]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing: sys.exit(f'no such notebook: {", ".join(missing)}')
    with tempfile.TemporaryDirectory() as rc_dir:
        (Path(rc_dir) / 'matplotlibrc').write_text(f'figure.dpi: {DPI}\nsavefig.dpi: {DPI}\n')
        env = {'MATPLOTLIBRC': rc_dir, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1'),
               'PYTHONPATH': os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH', '')) if p)}
        for p in paths:
            seconds = execute(p, args.timeout, args.skip_slow, env)
            nbdev_clean = Path(sys.executable).parent / 'nbdev_clean'
            subprocess.run([str(nbdev_clean), '--fname', str(p)], check=True, cwd=ROOT)
            outputs = [o for c in json.loads(p.read_text())['cells'] for o in c.get('outputs', [])]
            images = sum('image/png' in o.get('data', {}) for o in outputs)
            print(f'{p.name}: {seconds:.0f} s, {len(outputs)} outputs, {images} PNG figures, {p.stat().st_size / 1024:.0f} KiB', flush=True)


if __name__ == '__main__':
    main()
