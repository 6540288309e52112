"The repository is consistent: the package is what the notebooks export, and README.md is what index.ipynb says."
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _py_files(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_text() for p in sorted(d.rglob('*.py')) if '__pycache__' not in p.parts}


def test_nbdev_export_leaves_the_package_unchanged(tmp_path):
    for name in ('settings.ini', 'setup.py'): shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / 'nbs', tmp_path / 'nbs')
    shutil.copytree(ROOT / 'sr3lit', tmp_path / 'sr3lit', ignore=shutil.ignore_patterns('__pycache__'))
    exporter = Path(sys.executable).with_name('nbdev_export')
    subprocess.run([str(exporter)], cwd=tmp_path, check=True, capture_output=True)
    committed, exported = _py_files(ROOT / 'sr3lit'), _py_files(tmp_path / 'sr3lit')
    assert sorted(committed) == sorted(exported)
    stale = [name for name in committed if committed[name] != exported[name]]
    assert not stale, f'run nbdev_export: these modules differ from their notebooks: {stale}'


def test_readme_is_generated_from_index_notebook():
    r = subprocess.run([sys.executable, str(ROOT / '.ci' / 'readme.py'), '--check'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_readme_starts_with_the_two_commands():
    lines = (ROOT / 'README.md').read_text().splitlines()
    block = lines[lines.index('```sh') + 1: lines.index('```')]
    assert [l.split()[:2] for l in block] == [['make', 'reproduce'], ['make', 'test']]
    assert lines.index('```sh') <= 3
    assert (ROOT / '.ci' / 'run').read_text().strip().splitlines()[-1] == 'make test'


def test_readme_chapter_table_lists_every_chapter_in_order():
    "Every notebook but the home page has its row in README.md's chapter table, in the order the chapters read."
    rows = [l for l in (ROOT / 'README.md').read_text().splitlines() if l.startswith('| `')]
    listed = [l.split('`')[1] for l in rows]
    chapters = sorted(p.stem for p in (ROOT / 'nbs').glob('*.ipynb') if p.stem != 'index')
    assert listed == chapters
