"The layout rules: a chapter imports only earlier chapters (notebooks and modules alike), and argparse lives in the CLI."
import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / 'sr3lit'


def module_chapters() -> dict[str, str]:
    "module name -> the notebook it is exported from, read from the header nbdev writes."
    chapters = {}
    for path in PKG.glob('*.py'):
        m = re.search(r'File to edit: \.\./nbs/([^/\s]+)\.ipynb', path.read_text())
        if m: chapters[path.stem] = m.group(1)
    return chapters


def imported_modules(source: str, chapters: dict[str, str]) -> set[str]:
    "The sr3lit modules that `source` imports, whatever the spelling (absolute, relative, `from sr3lit import x`)."
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split('.')
                if parts[0] == 'sr3lit' and len(parts) > 1: found.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or '').split('.')
            if node.level == 0 and parts[0] != 'sr3lit': continue
            inside = parts[1:] if node.level == 0 else [p for p in parts if p]
            if inside: found.add(inside[0])
            else: found.update(alias.name for alias in node.names)       # from sr3lit import data, forward
    return {name for name in found if name in chapters}


def notebook_code(path: Path) -> str:
    "The code cells of a notebook, with Jupyter's `!`/`%` lines dropped so that `ast` can parse them."
    cells = [''.join(c['source']) for c in json.loads(path.read_text())['cells'] if c['cell_type'] == 'code']
    return '\n'.join(line for cell in cells for line in cell.splitlines() if not line.lstrip().startswith(('!', '%')))


def test_the_parser_sees_every_spelling():
    chapters = {'data': '06_data', 'forward': '01_forward', 'checks': '00b_checks', 'cli': '19_cli'}
    src = ('import sr3lit.data\nfrom sr3lit.forward import q_sample\nfrom . import checks\n'
           'from .cli import main\nfrom sr3lit import data as d, images\nimport torch\nfrom .unknown import x')
    assert imported_modules(src, chapters) == {'data', 'forward', 'checks', 'cli'}


def test_every_module_has_a_chapter():
    chapters = module_chapters()
    missing = sorted(p.stem for p in PKG.glob('*.py') if p.stem not in chapters and not p.stem.startswith('_'))
    assert not missing, f'modules without a notebook: {missing}'
    assert len(set(chapters.values())) == len(chapters), 'two modules claim the same notebook'


def test_modules_import_only_earlier_chapters():
    chapters = module_chapters()
    bad = [f'{mod} ({nb}) imports {dep} ({chapters[dep]})'
           for mod, nb in chapters.items()
           for dep in imported_modules((PKG / f'{mod}.py').read_text(), chapters) if chapters[dep] > nb]
    assert not bad, 'a module imports a later chapter: ' + '; '.join(bad)


@pytest.mark.parametrize('notebook', sorted(p.name for p in (ROOT / 'nbs').glob('[0-9]*.ipynb')))
def test_notebooks_import_only_earlier_chapters(notebook):
    chapters = module_chapters()
    nb = notebook[:-len('.ipynb')]
    deps = imported_modules(notebook_code(ROOT / 'nbs' / notebook), chapters)
    later = sorted(f'{dep} ({chapters[dep]})' for dep in deps if chapters[dep] > nb)
    assert not later, f'{notebook} imports later chapters: {later}'


def test_argparse_only_in_the_cli():
    users = sorted(p.stem for p in PKG.glob('*.py')
                   if p.stem != 'cli' and re.search(r'^\s*(import argparse|from argparse import)', p.read_text(), re.M))
    assert not users, f'argparse outside sr3lit.cli: {users}'
