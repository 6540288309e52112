"""The course as people read it: chapters committed with their outputs, small enough to review, and a docs site
configuration that names every chapter. (Building the site is `make docs`, checked in a browser by `make docs-check`.)"""
import ast
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / 'nbs'
EXECUTED = ['00_schedules', '00a_images', '00b_checks', '01_forward', '02_posterior', '03_vlb', '04_loss', '05_unet',
            '06_data', '07_download', '08_metrics', '09_sampling', '10_config', '11_checkpoint']
MAX_NOTEBOOK_KIB, MAX_OUTPUT_KIB = 1024, 300


def load_script(name: str):
    "A script of .ci/ as a module."
    spec = importlib.util.spec_from_file_location(name.replace('/', '_'), ROOT / '.ci' / f'{name}.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


docs = load_script('docs')
sys.path.insert(0, str(ROOT / '.ci' / 'docs'))
from nbdev_docstrings import markdown_to_rst  # noqa: E402


def cells(name: str) -> list[dict]:
    return json.loads((NBS / f'{name}.ipynb').read_text())['cells']


def source(cell: dict) -> str:
    return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']


def directives(cell: dict) -> dict:
    return docs.split_directives(source(cell))[0]


def test_the_docs_table_of_contents_names_every_chapter_once():
    pages = docs.toc_files()
    chapters = [p for p in pages if not p.startswith('api/')]
    notebooks = sorted(p.stem for p in NBS.glob('*.ipynb'))
    assert sorted(chapters) == notebooks, f'in nbs/ but not in .ci/docs/_toc.yml: {set(notebooks) - set(chapters)}; the other way: {set(chapters) - set(notebooks)}'
    assert len(set(chapters)) == len(chapters) and pages[0] == 'index'
    numbered = [c for c in chapters if c != 'index']
    assert numbered == sorted(numbered), 'chapters appear in reading order'


SHOWING_CALLS = {'print', 'display', 'show_images', 'image_table', 'ShowImage', 'Markdown'}


def shows_something(src: str) -> bool:
    "Whether running a cell must leave an output: it prints or draws, or ends with a value (not a call) to display."
    try: tree = ast.parse('\n'.join(l for l in src.split('\n') if not l.lstrip().startswith(('%', '!', '#|'))))
    except SyntaxError: return False
    if not tree.body: return False
    last = tree.body[-1]
    if isinstance(last, ast.Expr) and not isinstance(last.value, (ast.Call, ast.Constant, ast.Lambda)): return True
    def calls(node):                  # the calls this cell makes itself, not those inside the functions it defines
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)): return
        if isinstance(node, ast.Call):
            f = node.func
            yield f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ''
        for child in ast.iter_child_nodes(node): yield from calls(child)
    if isinstance(last, ast.Expr) and set(calls(last)) & SHOWING_CALLS: return True   # show_images(...) as the result
    names = set(calls(tree))
    return bool(names & {'print', 'display'}) or ('show' in names and 'plt.show' in src)


@pytest.mark.parametrize('name', EXECUTED)
def test_chapter_is_committed_with_its_outputs(name):
    for c in (c for c in cells(name) if c['cell_type'] == 'code'):
        d, src = directives(c), source(c)
        if 'slow' in d or d.get('eval') == 'false': continue
        outputs = c.get('outputs', [])
        assert not any(o['output_type'] == 'error' for o in outputs), f'{name}: a cell was committed with an error:\n{src[:200]}'
        if 'export' in d or not shows_something(src): continue
        assert outputs, f'{name}: this cell shows something, but has no output: run `make outputs CHAPTERS={name}`\n{src[:200]}'
        last_line = [l for l in src.strip().split('\n') if not l.startswith(' ')][-1]
        draws = re.search(r'\b(plt\.show|show_images|image_table)\(', last_line) or 'plt.show()' in src
        if draws and 'image/png' not in {k for o in outputs for k in o.get('data', {})}:
            raise AssertionError(f'{name}: a cell that draws a figure has no picture in its outputs:\n{src[:200]}')


def test_shows_something():
    assert shows_something('x = 1\nx') and shows_something('for i in range(2): print(i)') and shows_something("show_images([a], ['a'])")
    assert not shows_something('x = 1') and not shows_something('def f():\n    print(1)') and not shows_something('check(f)')


@pytest.mark.parametrize('name', EXECUTED + ['index'])
def test_notebook_stays_small_enough_to_review(name):
    path = NBS / f'{name}.ipynb'
    assert path.stat().st_size <= MAX_NOTEBOOK_KIB * 1024, f'{name} is {path.stat().st_size // 1024} KiB'
    for c in cells(name):
        for o in c.get('outputs', []):
            size = len(json.dumps(o))
            assert size <= MAX_OUTPUT_KIB * 1024, f'{name}: one output is {size // 1024} KiB:\n{source(c)[:200]}'
    assert 'widgets' not in json.loads(path.read_text())['metadata'], 'saved widget state: large and unused'


def mixes_imports_with_code(src: str) -> bool:
    "What makes nbdev's docs processing run a cell on its own (and fail on a name from an earlier cell)."
    try: tree = ast.parse('\n'.join(l for l in src.split('\n') if not l.lstrip().startswith(('%', '!'))))
    except SyntaxError: return False
    nodes = list(ast.walk(tree))
    return (any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in nodes)
            and any(isinstance(n, (ast.Expr, ast.Assign)) for n in nodes))


@pytest.mark.parametrize('name', sorted(p.stem for p in NBS.glob('*.ipynb')))
def test_imports_live_in_cells_of_their_own(name):
    for c in cells(name):
        if c['cell_type'] != 'code': continue
        d, src = directives(c), source(c)
        if d.keys() & {'export', 'exports', 'exporti'} or d.get('eval') == 'false' or 'nbdev_export()' in src: continue
        assert not mixes_imports_with_code(src), f'{name}: move the imports of this cell into a cell before it:\n{src[:300]}'


def test_the_site_shows_code_without_nbdev_directives():
    nb = {'metadata': {'widgets': {'state': {}}}, 'cells': [
        {'cell_type': 'code', 'source': '#| hide\nimport secret', 'metadata': {}, 'outputs': []},
        {'cell_type': 'code', 'source': ['#| export\n', 'def f(): pass'], 'metadata': {}, 'outputs': []},
        {'cell_type': 'code', 'source': '#| default_exp forward', 'metadata': {}, 'outputs': []},
        {'cell_type': 'code', 'source': '#| echo: false\nshow()', 'metadata': {}, 'outputs': [
            {'output_type': 'display_data', 'metadata': {},
             'data': {'application/vnd.jupyter.widget-view+json': {}, 'text/plain': 'slider'}}]},
        {'cell_type': 'markdown', 'source': f'![fig]({docs.RAW_IMAGES}a.png)', 'metadata': {}}]}
    staged = docs.stage_notebook(nb)
    assert [c['source'] for c in staged['cells']] == ['def f(): pass', 'show()', '![fig](images/a.png)']
    assert staged['cells'][1]['metadata']['tags'] == ['remove-input']
    assert list(staged['cells'][1]['outputs'][0]['data']) == ['text/plain']
    assert 'widgets' not in staged['metadata'] and nb['cells'][0]['source'] == '#| hide\nimport secret'   # a copy


def test_nbdev_docstrings_read_as_restructured_text():
    assert markdown_to_rst(['The `scale`x smaller `x`, 2*s | t.']) == ['The ``scale``\\ x smaller ``x``, 2\\*s \\| t.']
