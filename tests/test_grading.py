"Coursework an instructor can grade: `sr3lit grade` on tiny submissions (correct, one mistake each, cheats, broken), `sr3lit assignment nbs`, and nbgrader's own path."
import contextlib
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from sr3lit.cli import main

NBS = Path(__file__).resolve().parent.parent / 'nbs'

CORRECT = {
    '01_forward': '''
import torch
from sr3lit.forward import per_sample
def q_sample(y0, gamma, noise=None):
    g = per_sample(gamma, y0)
    return g.sqrt().to(y0.dtype) * y0 + (1 - g).sqrt().to(y0.dtype) * noise''',
    '02_posterior': '''
import torch
from sr3lit.forward import per_sample, timestep_tensor
def posterior_mean_variance(schedule, y0, yt, t):
    t = timestep_tensor(schedule, t, yt.shape[0])
    b, a, g = (torch.from_numpy(getattr(schedule, k))[t - 1] for k in ('betas', 'alphas', 'gammas'))
    gp = torch.from_numpy(schedule.gammas_prev)[t - 1]
    c_yt, c_y0, var = (per_sample(c, yt).to(yt.dtype) for c in (a.sqrt() * (1 - gp) / (1 - g), gp.sqrt() * b / (1 - g), (1 - gp) / (1 - g) * b))
    return c_yt * yt + c_y0 * y0, var''',
    '04_loss': '''
import torch
from sr3lit.forward import q_sample
def sample_noise_level(schedule, batch_size, generator=None, method='gamma', one_t_per_batch=False, device=None):
    t = torch.randint(1, schedule.T + 1, (1 if one_t_per_batch else batch_size,), generator=generator).expand(batch_size).clone()
    lo, hi = (torch.from_numpy(getattr(schedule, k))[t - 1] for k in ('gammas', 'gammas_prev'))
    u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
    level = (lo + u * (hi - lo)).sqrt() if method == 'gamma' else lo.sqrt() + u * (hi.sqrt() - lo.sqrt())
    return t, level
def diffusion_loss(model, x_lr_up, y0, schedule, p=1, reduction='mean', noise=None, noise_level=None, generator=None, method='gamma'):
    y = q_sample(y0, noise_level ** 2, noise)
    eps = model(y if x_lr_up is None else torch.cat([x_lr_up, y], 1), noise_level.to(y0.dtype))
    e = (eps - noise).abs() ** p
    return e.mean() if reduction == 'mean' else e.flatten(1).sum(1).mean()''',
    '08_metrics': '''
import torch
def psnr(sr, hr):
    a, b = (((x.double().clamp(-1, 1) + 1) * 127.5).round() for x in (sr, hr))
    return 10 * torch.log10(255 ** 2 / ((a - b) ** 2).mean((1, 2, 3)))''',
    '09_sampling': '''
import torch
from sr3lit.posterior import predict_y0_from_noise, posterior_mean_variance
def p_sample_step(model, schedule, x_up, y_t, t, noise=None, clip_denoised=True, variance='posterior', generator=None):
    t = torch.as_tensor(t).reshape(-1).expand(len(y_t))
    g = torch.from_numpy(schedule.gammas)[t - 1]
    y0 = predict_y0_from_noise(schedule, y_t, t, model(torch.cat([x_up, y_t], 1), g.sqrt().to(y_t.dtype)))
    if clip_denoised: y0 = y0.clamp(-1, 1)
    mean, var = posterior_mean_variance(schedule, y0, y_t, t)
    if variance == 'beta': var = torch.from_numpy(schedule.betas)[t - 1].reshape(-1, 1, 1, 1).to(y_t.dtype)
    return mean + (t > 1).to(y_t.dtype).reshape(-1, 1, 1, 1) * var.sqrt() * noise''',
}
# one typical mistake per exercise: (chapter, edit of the correct answer, words of the diagnosis)
MISTAKES = {
    'q_sample': ('01_forward', ('+ (1 - g).sqrt().to(y0.dtype) * noise', ''), 'the noise term is forgotten'),
    'posterior_mean_variance': ('02_posterior', ("torch.from_numpy(schedule.gammas_prev)[t - 1]", "torch.from_numpy(schedule.gammas)[t - 2]"), 'wrong only at t = 1'),
    'sample_noise_level': ('04_loss', ('torch.randint(1, schedule.T + 1,', 'torch.randint(1, schedule.T,'), 't never reaches T'),
    'diffusion_loss': ('04_loss', ('e = (eps - noise).abs() ** p', 'e = (eps - noise) ** 2'), 'the squared error where p=1'),
    'psnr': ('08_metrics', ("a, b = (((x.double().clamp(-1, 1) + 1) * 127.5).round() for x in (sr, hr))\n    return 10 * torch.log10(255 ** 2",
                            "a, b = (x.double() for x in (sr, hr))\n    return 10 * torch.log10(1"), 'data range (peak) of 1'),
    'p_sample_step': ('09_sampling', ('return mean + (t > 1)', 'return mean - (t > 1)'), 'subtracts the noise term'),
}


def write(folder: Path, chapter: str, *cells: str):
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), str(folder / f'{chapter}.ipynb'))


@pytest.fixture(scope='module')
def graded(tmp_path_factory):
    "One run of `sr3lit grade` over four students; (grades.csv rows by student, feedback text by student)."
    root = tmp_path_factory.mktemp('grading')
    subs = root / 'submissions'
    for chapter, code in CORRECT.items(): write(subs / 'ada', chapter, code)
    edited = {}
    for name, (chapter, (old, new), _) in MISTAKES.items():
        code = edited.get(chapter, CORRECT[chapter])
        assert old in code, name
        edited[chapter] = code.replace(old, new)
    for chapter, code in edited.items(): write(subs / 'bea', chapter, code)
    write(subs / 'cheat', '01_forward', 'import sr3lit.forward\ndef q_sample(y0, gamma, noise=None):\n    return sr3lit.forward.q_sample(y0, gamma, noise)')
    write(subs / 'cheat', '08_metrics', 'from sr3lit.metrics import _psnr_variant\ndef psnr(sr, hr): return _psnr_variant(sr, hr)')
    write(subs / 'dan', '01_forward', 'raise RuntimeError("my notebook is broken")', CORRECT['01_forward'].replace('def q_sample', 'def q_sample_draft'))
    write(subs / 'dan', '02_posterior', 'def posterior_mean_variance(schedule, y0, yt, t):\n    while True: pass', 'posterior_mean_variance(None, 0, 0, 1)')
    (subs / 'dan' / 'notes.ipynb').write_text('not a notebook')
    out = root / 'out'
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(['grade', str(subs), '--out', str(out), '--timeout', '25', '--seed', '3']) == 0
    with open(out / 'grades.csv', newline='') as f: rows = {r['student']: r for r in csv.DictReader(f)}
    return rows, {p.stem: p.read_text() for p in (out / 'feedback').glob('*.md')}


def test_grades_csv_has_a_row_per_student_and_a_column_per_exercise(graded):
    rows, feedback = graded
    assert set(rows) == set(feedback) == {'ada', 'bea', 'cheat', 'dan'}
    assert list(rows['ada']) == ['student', 'q_sample', 'posterior_mean_variance', 'sample_noise_level', 'diffusion_loss', 'psnr', 'p_sample_step', 'total']
    for r in rows.values(): assert int(r['total']) == sum(int(v) for k, v in r.items() if k not in ('student', 'total'))


def test_a_correct_submission_scores_full_marks(graded):
    rows, feedback = graded
    assert all(v == '1' for k, v in rows['ada'].items() if k not in ('student', 'total')) and rows['ada']['total'] == '6'
    assert feedback['ada'].count('✓ passed') == 6


def test_one_typical_mistake_per_exercise_is_named_in_the_feedback(graded):
    rows, feedback = graded
    assert rows['bea']['total'] == '0'
    sections = feedback['bea'].split('\n## ')
    for name, (chapter, _, words) in MISTAKES.items():
        section = next(s for s in sections if s.startswith(f'{name} ('))
        assert '✗ failed' in section and words in section, (name, section)


def test_delegation_and_the_exported_variant_are_flagged(graded):
    rows, feedback = graded
    assert rows['cheat']['q_sample'] == '0' and rows['cheat']['psnr'] == '0'
    text = feedback['cheat']
    assert text.count('⚠ delegation to sr3lit') == 2
    assert 'sr3lit.forward.q_sample' in text and '_psnr_variant' in text


def test_a_raising_or_looping_notebook_scores_zero_with_the_reason(graded):
    rows, feedback = graded
    assert rows['dan']['total'] == '0'
    text = feedback['dan']
    assert 'RuntimeError: my notebook is broken' in text and 'no function `q_sample` is defined' in text
    assert 'ran past the time limit of 25 s' in text
    assert 'not a chapter with exercises, not graded: notes.ipynb' in text


def test_the_cheats_fail_in_the_student_version_too(tmp_path):
    "Run in the student notebooks' way: the chapter's own check on the two cheats raises Delegated."
    from sr3lit import forward, metrics
    from sr3lit.checks import Delegated
    import sr3lit.forward
    def q_sample(y0, gamma, noise=None): return sr3lit.forward.q_sample(y0, gamma, noise)
    with pytest.raises(Delegated): forward.check_q_sample(q_sample)
    with pytest.raises(Delegated): metrics.check_psnr(lambda sr, hr: metrics._psnr_variant(sr, hr))
    with pytest.raises(Delegated): metrics.check_psnr(metrics.psnr)


def test_assignment_accepts_the_notebook_folder(tmp_path):
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(['assignment', str(NBS), '--out', str(tmp_path / 'course')]) == 0
    written = sorted(p.name for p in (tmp_path / 'course').glob('*.ipynb'))
    assert written == ['01_forward.ipynb', '02_posterior.ipynb', '04_loss.ipynb', '08_metrics.ipynb', '09_sampling.ipynb']


def test_nbgrader_metadata_survives_nbdev_clean(tmp_path):
    copy = tmp_path / '01_forward.ipynb'
    shutil.copy(NBS / '01_forward.ipynb', copy)
    r = subprocess.run([str(Path(sys.executable).parent / 'nbdev_clean'), '--fname', str(copy)], cwd=NBS.parent, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    nb = json.loads(copy.read_text())
    kinds = [(c['metadata']['nbgrader']['solution'], c['metadata']['nbgrader']['grade']) for c in nb['cells'] if 'nbgrader' in c['metadata']]
    assert (True, False) in kinds and (False, True) in kinds


@pytest.mark.skipif(shutil.which('nbgrader') is None and not (Path(sys.executable).parent / 'nbgrader').exists(), reason='nbgrader is not installed')
def test_nbgrader_generates_and_autogrades_a_chapter(tmp_path):
    "Stock nbgrader on chapter 01 unchanged: generate_assignment accepts it, autograde gives the teaching solution full points."
    exe = str(Path(sys.executable).parent / 'nbgrader')
    (tmp_path / 'source' / 'ps1').mkdir(parents=True)
    shutil.copy(NBS / '01_forward.ipynb', tmp_path / 'source' / 'ps1')
    (tmp_path / 'nbgrader_config.py').write_text("c = get_config()\nc.ExecutePreprocessor.timeout = 300\n")
    env = dict(os.environ, PATH=f"{Path(exe).parent}{os.pathsep}{os.environ.get('PATH', '')}")      # nbgrader runs alembic
    run = lambda *a: subprocess.run([exe, *a, '--force'], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    r = run('generate_assignment', 'ps1')
    assert r.returncode == 0, r.stdout + r.stderr
    released = json.loads((tmp_path / 'release' / 'ps1' / '01_forward.ipynb').read_text())
    assert 'raise NotImplementedError()' in ''.join(''.join(c['source']) for c in released['cells'])
    (tmp_path / 'submitted' / 'ada' / 'ps1').mkdir(parents=True)
    shutil.copy(NBS / '01_forward.ipynb', tmp_path / 'submitted' / 'ada' / 'ps1')      # the teaching solution as a submission
    r = run('autograde', 'ps1', '--create')
    assert r.returncode == 0, r.stdout + r.stderr
    graded = json.loads((tmp_path / 'autograded' / 'ada' / 'ps1' / '01_forward.ipynb').read_text())
    check = next(c for c in graded['cells'] if c['metadata'].get('nbgrader', {}).get('grade_id') == 'check-q_sample')
    assert not [o for o in check['outputs'] if o['output_type'] == 'error'] and 'seed=' in ''.join(check['source'])
