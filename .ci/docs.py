"""Build the sr3lit docs site into `_docs/` (nbdev's `doc_path`) from the committed, executed notebooks, offline.

    python .ci/docs.py build        # what `make docs` runs (in .venv-docs)

nbdev's own site needs Quarto, which cannot be installed here, so the site is built with Jupyter Book 1's parts
(Sphinx, myst-nb, sphinx-book-theme; configured in .ci/docs/conf.py) without executing anything: every page shows the outputs committed in `nbs/`. The notebooks are staged
into `_docs_src/` first, where nbdev's `#|` directive lines are removed from code cells and `#| hide` cells are
dropped, and an API reference page is written for each exported module (sphinx autodoc). MathJax is copied into
the site's static files, so pages render their maths with no network.
"""
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / '.ci' / 'docs'                 # conf.py, _toc.yml and the nbdev_docstrings extension
STAGE, OUT = ROOT / '_docs_src', ROOT / '_docs'
MATHJAX = Path(sys.prefix) / 'mathjax' / 'package' / 'es5'   # unpacked by the Makefile from npm's mathjax package
RAW_IMAGES = 'https://raw.githubusercontent.com/sr3lit/sr3lit/main/nbs/images/'   # the README's absolute URLs
WIDGET_MIME = 'application/vnd.jupyter.widget-view+json'
_DIRECTIVE = re.compile(r'^\s*#\s*\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')


def toc_files() -> list[str]:
    "The pages named in `_toc.yml` (chapters as notebook stems, and the API pages)."
    return re.findall(r'^\s*-?\s*(?:file|root):\s*(\S+)', (CONF / '_toc.yml').read_text(), re.M)


def split_directives(source: str) -> tuple[dict[str, str], str]:
    "nbdev's `#|` directives at the top of a cell, and the source without them."
    lines, directives = source.split('\n'), {}
    while lines and (m := _DIRECTIVE.match(lines[0])):
        directives[m.group(1)] = m.group(2); lines.pop(0)
    return directives, '\n'.join(lines).strip('\n')


def stage_notebook(nb: dict) -> dict:
    "A copy of notebook `nb` as the site shows it: no `#|` lines, no hidden cells, no widget views, local images."
    nb, cells = copy.deepcopy(nb), []
    nb['metadata'].pop('widgets', None)
    nb['metadata'].setdefault('kernelspec', {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'})
    nb['metadata'].setdefault('language_info', {'name': 'python'})     # so code cells are highlighted as Python
    for cell in nb['cells']:
        src = ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']
        if cell['cell_type'] == 'code':
            directives, src = split_directives(src)
            if 'hide' in directives or not src.strip(): continue
            tags = cell.setdefault('metadata', {}).setdefault('tags', [])
            if directives.get('echo') == 'false': tags.append('remove-input')
            if directives.get('output') == 'false': tags.append('remove-output')
            for out in cell.get('outputs', []):
                data = out.get('data', {})
                if WIDGET_MIME in data and len(data) > 1: del data[WIDGET_MIME]   # keep the text/plain fallback
        else:
            src = src.replace(RAW_IMAGES, 'images/').replace('](_docs/index.html)', '](index.ipynb)')
        cell['source'] = src
        cells.append(cell)
    nb['cells'] = cells
    return nb


def module_summary(path: Path) -> str:
    "The first line of a module's docstring."
    m = re.search(r'^"""(.*?)(?:"""|\n)', path.read_text(), re.S)
    return m.group(1).strip() if m else ''


def write_api_pages(dest: Path) -> list[str]:
    "One page per exported module (autodoc over its `__all__`), and an index page; returns the module names."
    api = dest / 'api'; api.mkdir(parents=True)
    mods = sorted(p for p in (ROOT / 'sr3lit').glob('*.py') if not p.name.startswith('_'))
    rows = []
    for p in mods:
        name = f'sr3lit.{p.stem}'
        (api / f'{name}.md').write_text(f"# `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n```\n")
        rows.append(f"| [`{name}`]({name}.md) | {module_summary(p).replace('|', '/')} |")
    (api / 'index.md').write_text(
        "# API reference\n\nThe functions and classes that nbdev exports from the chapters into the `sr3lit` package, "
        "one page per module (each module is written in the chapter of the same name).\n\n"
        "| module | what it holds |\n|---|---|\n" + '\n'.join(rows) + '\n')
    return [f'sr3lit.{p.stem}' for p in mods]


def stage() -> None:
    "Fill `_docs_src/` with the configuration, the staged notebooks, their images, the API pages and MathJax."
    if STAGE.exists(): shutil.rmtree(STAGE)
    STAGE.mkdir()
    for f in ('conf.py', '_toc.yml', 'nbdev_docstrings.py'): shutil.copy(CONF / f, STAGE / f)
    for name in toc_files():
        if name.startswith('api/'): continue
        nb = json.loads((ROOT / 'nbs' / f'{name}.ipynb').read_text())
        (STAGE / f'{name}.ipynb').write_text(json.dumps(stage_notebook(nb), indent=1))
    shutil.copytree(ROOT / 'nbs' / 'images', STAGE / 'images')
    write_api_pages(STAGE)
    if not (MATHJAX / 'tex-chtml.js').is_file():
        sys.exit(f'MathJax is missing at {MATHJAX}: run `make docs` (it installs it into .venv-docs)')
    shutil.copytree(MATHJAX, STAGE / '_site_static' / 'mathjax', ignore=shutil.ignore_patterns('sre', '*.map'))


def build() -> None:
    t0 = time.perf_counter()
    stage()
    if OUT.exists(): shutil.rmtree(OUT)
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([str(STAGE), str(ROOT), os.environ.get('PYTHONPATH', '')])}
    html = STAGE / '_build' / 'html'        # myst-nb writes its images next to it, in _build/jupyter_execute
    r = subprocess.run([sys.executable, '-m', 'sphinx', '-b', 'html', '-q', '--keep-going', '-d', str(STAGE / '_build' / 'doctrees'),
                        str(STAGE), str(html)], cwd=ROOT, env=env)
    if r.returncode or not (html / 'index.html').is_file(): sys.exit(f'sphinx-build failed (exit {r.returncode})')
    shutil.move(html, OUT)
    (OUT / '.nojekyll').touch()
    print(f'docs: {OUT / "index.html"} ({time.perf_counter() - t0:.0f} s)')


if __name__ == '__main__':
    if sys.argv[1:] == ['build']: build()
    elif sys.argv[1:] == ['stage']: stage()
    else: sys.exit(__doc__)
