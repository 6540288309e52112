"The `sr3lit` command from outside: `python -m sr3lit` and `python -m sr3lit.cli` run it, every subcommand has --help."
import os
import subprocess
import sys

import pytest

from sr3lit.cli import SUBCOMMANDS, main

ENV = dict(os.environ, OMP_NUM_THREADS='1')


def run_module(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', *argv], capture_output=True, text=True, env=ENV, timeout=300)


def test_every_subcommand_is_registered():
    assert list(SUBCOMMANDS) == ['prepare', 'train', 'sample', 'eval', 'reproduce', 'assignment', 'grade']


@pytest.mark.parametrize('name', ['prepare', 'train', 'sample', 'eval', 'reproduce', 'assignment', 'grade'])
def test_every_subcommand_has_help(name, capsys):
    assert main([name, '--help']) == 0
    assert f'usage: sr3lit {name}' in capsys.readouterr().out


def test_python_m_sr3lit_runs_the_command():
    r = run_module('sr3lit', '--version')
    assert r.returncode == 0 and r.stdout.startswith('sr3lit ')
    r = run_module('sr3lit', 'train', '--preset', 'nope', '--out', 'x')
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and 'unknown preset' in r.stderr


def test_python_m_sr3lit_cli_trains(tmp_path):
    out = tmp_path / 'x'
    r = run_module('sr3lit.cli', 'train', '--preset', 'micro', '--device', 'cpu', '--max-steps', '2', '--out', str(out), '--quiet')
    assert r.returncode == 0, r.stderr
    assert (out / 'model.safetensors').is_file() and (out / 'config.json').is_file()
    assert 'step 2' in r.stdout
