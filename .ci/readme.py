"""Write README.md from nbs/index.ipynb (nbdev's docs need Quarto, which is not available; nbconvert is)."""
import sys
from pathlib import Path

import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]


def render() -> str:
    nb = nbformat.read(ROOT / 'nbs' / 'index.ipynb', as_version=4)
    # hidden cells (`#| hide`) and cell outputs are not part of the home page's text
    nb.cells = [c for c in nb.cells if not c.source.lstrip().startswith('#| hide')]
    for c in nb.cells:
        if c.cell_type == 'code': c.outputs = []
    body, _ = MarkdownExporter().from_notebook_node(nb)
    return body.strip() + '\n'


if __name__ == '__main__':
    text = render()
    if '--check' in sys.argv:
        sys.exit(0 if (ROOT / 'README.md').read_text() == text else 'README.md is out of date: run python .ci/readme.py')
    (ROOT / 'README.md').write_text(text)
