"Student versions of the teaching notebooks (sr3lit.assignment, `sr3lit assignment`): no solution left, checks that fail as handed out."
import contextlib
import io
import json
from pathlib import Path

import pytest

from sr3lit import assignment
from sr3lit.assignment import AssignmentError, strip_solutions, student_notebook, write_assignments
from sr3lit.checks import CheckFailed, NotImplementedYet
from sr3lit.cli import main

NBS = Path(__file__).resolve().parent.parent / 'nbs'
BEGIN, END = '### BEGIN SOLUTION', '### END SOLUTION'


def source(cell) -> str:
    s = cell.get('source', '')
    return ''.join(s) if isinstance(s, list) else s


def load(path) -> dict:
    return json.loads(Path(path).read_text(encoding='utf-8'))


def solution_lines(nb) -> list[str]:
    "Every non-blank line strictly inside a BEGIN/END SOLUTION pair, found independently of sr3lit.assignment."
    lines = []
    for cell in nb['cells']:
        inside = False
        for line in source(cell).split('\n'):
            if line.strip() == BEGIN: inside = True
            elif line.strip() == END: inside = False
            elif inside and line.strip(): lines.append(line.strip())
    return lines


def exercise_notebooks() -> list[Path]:
    return sorted(p for p in NBS.glob('*.ipynb') if solution_lines(load(p)))


@pytest.fixture(scope='module')
def students(tmp_path_factory) -> Path:
    "The student versions of every teaching notebook with exercises, written by the command."
    out = tmp_path_factory.mktemp('course')
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(['assignment', *map(str, exercise_notebooks()), '--out', str(out)]) == 0
    return out


# ---------------------------------------------------------------- solution regions

def test_the_core_chapters_have_exercises_and_the_coursework_chapters_none():
    names = {p.name for p in exercise_notebooks()}
    assert {'01_forward.ipynb', '02_posterior.ipynb', '04_loss.ipynb', '09_sampling.ipynb', '08_metrics.ipynb'} <= names
    assert not names & {'00b_checks.ipynb', '18_assignment.ipynb'}


def test_regions_become_indented_stubs_and_the_rest_is_kept():
    teacher = f"def f(x):\n    y = 2\n    {BEGIN}\n    z = y * x\n    return z\n    {END}\n\ndef g():\n    if True:\n        {BEGIN}\n        print(1)\n        {END}\n    print(2)"
    student, n = strip_solutions(teacher)
    assert n == 2
    assert student.split('\n') == ['def f(x):', '    y = 2', '    # YOUR CODE HERE', '    raise NotImplementedError()', '',
                                   'def g():', '    if True:', '        # YOUR CODE HERE', '        raise NotImplementedError()', '    print(2)']
    namespace = {}
    exec(student, namespace)
    for fn in (lambda: namespace['f'](3), namespace['g']):
        with pytest.raises(NotImplementedError): fn()
    assert strip_solutions(f"text\n{BEGIN}\nanswer\n{END}", markdown=True) == ('text\nYOUR ANSWER HERE', 1)
    assert strip_solutions("x = '### BEGIN SOLUTION'  # a string, not a marker line") == ("x = '### BEGIN SOLUTION'  # a string, not a marker line", 0)
    assert strip_solutions("a\n### BEGIN HIDDEN TESTS\nassert a\n### END HIDDEN TESTS\nb") == ('a\nb', 0)
    teacher = "Check.\n\n<!-- BEGIN TEACHER ONLY -->\nThe answer.\n<!-- END TEACHER ONLY -->\n\nCases."
    assert strip_solutions(teacher, markdown=True) == ('Check.\n\nCases.', 0) and strip_solutions(teacher)[0] == teacher


@pytest.mark.parametrize('text, words', [
    (f"{BEGIN}\nx = 1", "'### BEGIN SOLUTION' on line 1 is never closed"),
    (f"x = 1\n{END}", "'### END SOLUTION' on line 2 has no '### BEGIN SOLUTION' before it"),
    (f"{BEGIN}\n  {BEGIN}\n{END}", "on line 2 opens a region inside the region opened on line 1"),
])
def test_unbalanced_markers_are_refused_with_the_place(text, words):
    with pytest.raises(AssignmentError) as info: strip_solutions(text, 'nb.ipynb: cell 4')
    assert str(info.value).startswith('nb.ipynb: cell 4: ') and words in str(info.value)


# ---------------------------------------------------------------- the student versions of the real chapters

def test_no_solution_code_survives(students):
    for teaching in exercise_notebooks():
        secret = solution_lines(load(teaching))
        student = load(students / teaching.name)
        lines = {l.strip() for cell in student['cells'] for l in source(cell).split('\n')}
        assert secret and not [l for l in secret if l in lines], teaching.name
        text = '\n'.join(source(c) for c in student['cells'])
        assert BEGIN not in text and END not in text and assignment.BEGIN_TEACHER not in text and assignment.END_TEACHER not in text
        stubs = [l for c in student['cells'] if c['cell_type'] == 'code' for l in source(c).split('\n') if l.strip() == 'raise NotImplementedError()']
        assert len(stubs) == assignment.student_notebook(load(teaching))[1]


def test_student_versions_keep_prose_checks_and_hidden_cells_but_not_outputs_or_exports(students):
    for teaching in exercise_notebooks():
        t_nb, s_nb = load(teaching), load(students / teaching.name)
        s_by_id = {c.get('id'): c for c in s_nb['cells']}
        for cell in t_nb['cells']:
            text = source(cell)
            if cell['cell_type'] == 'markdown':                  # kept, less the teacher-only prose (a cell of it alone goes)
                kept = strip_solutions(text, markdown=True)[0]
                if kept.strip(): assert source(s_by_id[cell['id']]) == kept
                else: assert cell['id'] not in s_by_id
            elif any(call in text for _, call, _ in EXERCISES) or text.startswith('#| hide'):
                assert source(s_by_id[cell['id']]) == strip_solutions(text)[0]    # kept, less their hidden tests
        assert all(c.get('outputs', []) == [] and c.get('execution_count') is None for c in s_nb['cells'] if c['cell_type'] == 'code')
        code = [l.strip() for c in s_nb['cells'] if c['cell_type'] == 'code' for l in source(c).split('\n')]
        assert not [l for l in code if l.replace(' ', '').startswith(('#|export', '#|default_exp', '#|exporti', '#|exports'))]
        assert assignment.STUDENT_NOTE in source(s_nb['cells'][1])
        assert s_nb['nbformat'] == 4 and s_nb['metadata'] == t_nb['metadata']          # still a notebook of the same kind
        assert all({'cell_type', 'metadata', 'source'} <= c.keys() for c in s_nb['cells'])


def exported_ids(teaching: dict) -> set:
    return {c['id'] for c in teaching['cells'] if c['cell_type'] == 'code' and source(c).startswith('#| export')}


def run_cells(nb: dict, ids: set, check_call: str, edit=None):
    "Execute, in order, the cells of `nb` whose id is in `ids`, then the cell that makes `check_call`."
    namespace = {}
    for cell in nb['cells']:
        text = source(cell)
        if edit: text = text.replace(*edit)
        if cell.get('id') in ids or check_call in text:
            with contextlib.redirect_stdout(io.StringIO()) as out: exec(compile(text, cell.get('id', 'cell'), 'exec'), namespace)
            if check_call in text: return out.getvalue()
    raise AssertionError(f'no cell calls {check_call}')


EXERCISES = [('01_forward.ipynb', 'check_q_sample(q_sample)', 'q_sample'),
             ('02_posterior.ipynb', 'check_posterior(posterior_mean_variance)', 'posterior_coefficients (which posterior_mean_variance calls)'),
             ('04_loss.ipynb', 'check_sample_noise_level(sample_noise_level)', 'sample_noise_level'),
             ('04_loss.ipynb', 'check_loss(diffusion_loss)', 'diffusion_loss'),
             ('09_sampling.ipynb', 'check_reverse_step(p_sample_step)', 'p_sample_step'),
             ('08_metrics.ipynb', 'check_psnr(psnr)', 'psnr')]


@pytest.mark.parametrize('name, call, exercise', EXERCISES)
def test_student_exercises_fail_their_checks_as_handed_out(students, name, call, exercise):
    teaching = load(NBS / name)
    with pytest.raises(NotImplementedYet) as info: run_cells(load(students / name), exported_ids(teaching), call)
    assert isinstance(info.value, NotImplementedError) and f'{exercise} is not implemented yet' in str(info.value)


@pytest.mark.parametrize('name, call, exercise', EXERCISES)
def test_teaching_solutions_pass_their_checks(name, call, exercise):
    teaching = load(NBS / name)
    assert '✓' in run_cells(teaching, exported_ids(teaching), call)


STUB = '# YOUR CODE HERE\n    raise NotImplementedError()'


@pytest.mark.parametrize('name, call, written, words', [
    ('01_forward.ipynb', 'check_q_sample(q_sample)',
     'return g.sqrt().to(y0.dtype) * y0 + (1 - g).to(y0.dtype) * noise', 'noise coefficient is missing a square root'),
    ('02_posterior.ipynb', 'check_posterior(posterior_mean_variance)',
     "beta, alpha = schedule.at('betas', t), schedule.at('alphas', t)\n    gamma, gamma_prev = schedule.at('gammas', t), schedule.at('gammas_prev', t)\n"
     '    coef_yt = alpha.sqrt()\n    coef_y0 = gamma.sqrt() * beta / (1 - gamma)\n    variance = (1 - gamma_prev) / (1 - gamma) * beta',
     "the report's eq. 9"),
    ('01_forward.ipynb', 'check_q_sample(q_sample)',
     'return g.sqrt().to(y0.dtype) * y0 + (1 - g).sqrt().to(y0.dtype) * noise', None),
])
def test_a_student_edit_is_checked(students, name, call, written, words):
    "Writing into the student notebook, as a student would: a mistake gets its message, the solution passes."
    teaching, student = load(NBS / name), load(students / name)
    if words is None: assert '✓' in run_cells(student, exported_ids(teaching), call, edit=(STUB, written))
    else:
        with pytest.raises(CheckFailed) as info: run_cells(student, exported_ids(teaching), call, edit=(STUB, written))
        assert words in str(info.value)


# ---------------------------------------------------------------- the command

def run_cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): status = main(argv)
    return status, out.getvalue(), err.getvalue()


def test_cli_refuses_to_overwrite_unless_asked(tmp_path):
    nb = str(NBS / '01_forward.ipynb')
    assert run_cli(['assignment', nb, '--out', str(tmp_path)])[0] == 0
    (tmp_path / '01_forward.ipynb').write_text('{"cells": []}')
    status, _, err = run_cli(['assignment', nb, '--out', str(tmp_path)])
    assert status == 2 and len(err.strip().splitlines()) == 1 and 'exists: pass --overwrite' in err
    assert (tmp_path / '01_forward.ipynb').read_text() == '{"cells": []}'
    status, out, _ = run_cli(['assignment', nb, '--out', str(tmp_path), '--overwrite'])
    assert status == 0 and 'wrote' in out and BEGIN not in (tmp_path / '01_forward.ipynb').read_text()


def test_cli_names_the_notebook_and_cell_of_unbalanced_markers_and_writes_nothing(tmp_path):
    good = load(NBS / '02_posterior.ipynb')
    bad = load(NBS / '01_forward.ipynb')
    index = next(i for i, c in enumerate(bad['cells']) if END in source(c))
    bad['cells'][index]['source'] = source(bad['cells'][index]).replace(END, 'pass')
    (tmp_path / 'bad.ipynb').write_text(json.dumps(bad))
    (tmp_path / 'good.ipynb').write_text(json.dumps(good))
    status, _, err = run_cli(['assignment', str(tmp_path / 'good.ipynb'), str(tmp_path / 'bad.ipynb'), '--out', str(tmp_path / 'out')])
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert f'bad.ipynb: cell {index}' in err and 'never closed' in err
    assert not (tmp_path / 'out').exists()                 # all or nothing: not even good.ipynb


@pytest.mark.parametrize('make, words', [
    (lambda d: (d / 'plain.ipynb').write_text(json.dumps({'cells': [{'cell_type': 'code', 'source': 'x = 1', 'metadata': {}, 'outputs': []}],
                                                          'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5})), 'no exercise to set'),
    (lambda d: None, 'no such notebook'),
    (lambda d: (d / 'plain.ipynb').write_text('not json'), 'not a readable notebook'),
])
def test_cli_bad_input_is_one_line(tmp_path, make, words):
    make(tmp_path)
    status, _, err = run_cli(['assignment', str(tmp_path / 'plain.ipynb'), '--out', str(tmp_path / 'out')])
    assert status == 2 and len(err.strip().splitlines()) == 1 and words in err and 'Traceback' not in err


def test_cli_help_and_required_out():
    status, out, _ = run_cli(['assignment', '--help'])
    assert status == 0 and '--overwrite' in out and 'NOTEBOOK' in out
    status, _, err = run_cli(['assignment', str(NBS / '01_forward.ipynb')])
    assert status == 2 and '--out' in err


def test_the_student_notebook_does_not_touch_the_input():
    nb = load(NBS / '04_loss.ipynb')
    before = json.dumps(nb)
    student, n = student_notebook(nb, '04_loss.ipynb')
    assert json.dumps(nb) == before and n == 3 and student is not nb
