"The few-step sampler from outside chapter 09: `sr3_predict`'s default levels per sampler, and `sr3lit sample --sampler`."
import contextlib
import io
import json

import pytest
import torch

from sr3lit import data
from sr3lit.cli import build_parser, main
from sr3lit.config import make_config
from sr3lit.sampling import SAMPLER_SCHEDULES, SAMPLERS, ExactDenoiser, sample, sampling_schedule
from sr3lit.training import sr3_predict

pytestmark = pytest.mark.usefixtures('one_thread')


def test_every_sampler_has_a_default_spacing():
    assert set(SAMPLER_SCHEDULES) == set(SAMPLERS) == {'ddpm', 'ddim', 'dpmpp2m', 'dpmpp2m_sde'}
    assert SAMPLER_SCHEDULES['dpmpp2m'] == 'karras' and SAMPLER_SCHEDULES['ddpm'] == 'respace'
    assert SAMPLER_SCHEDULES['dpmpp2m_sde'] == 'karras_window'


def test_sr3_predict_uses_the_samplers_levels_unless_told():
    cfg = make_config('micro')
    g = torch.Generator().manual_seed(0)
    model = ExactDenoiser(torch.rand(3, 3, cfg.hr_size, cfg.hr_size, generator=g) * 2 - 1, std=0.1)
    x_up = torch.rand(2, 3, cfg.hr_size, cfg.hr_size, generator=g) * 2 - 1
    target_free = cfg.residual                                   # a residual run decodes z + x_up: compare through sr3_predict itself
    run = lambda **kw: sr3_predict(model, x_up, cfg, steps=6, generator=torch.Generator().manual_seed(1), **kw)
    assert torch.equal(run(sampler='dpmpp2m'), run(sampler='dpmpp2m', schedule='karras'))
    assert not torch.equal(run(sampler='dpmpp2m'), run(sampler='dpmpp2m', schedule='respace'))
    assert torch.equal(run(sampler='ddim'), run(sampler='ddim', schedule='respace'))
    assert torch.equal(run(sampler='dpmpp2m_sde'), run(sampler='dpmpp2m_sde', schedule='karras_window'))
    assert not torch.equal(run(sampler='dpmpp2m_sde'), run(sampler='dpmpp2m_sde', schedule='log_snr'))
    assert not torch.equal(run(sampler='dpmpp2m_sde'), run(sampler='dpmpp2m_sde', schedule='karras'))
    with pytest.raises(ValueError, match='unknown sampler'): run(sampler='plms')


def cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def test_sample_help_lists_the_samplers():
    parser = build_parser()
    args = parser.parse_args(['sample', '--model', 'r', '--input', 'i', '--out', 'o', '--sampler', 'dpmpp2m', '--steps', '10'])
    assert args.sampler == 'dpmpp2m' and args.steps == 10 and args.schedule is None
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        parser.parse_args(['sample', '--model', 'r', '--input', 'i', '--out', 'o', '--sampler', 'heun'])


@pytest.fixture(scope='module')
def micro_run(tmp_path_factory):
    "A micro SR3 run trained for two steps from the command line (the plumbing, not the pictures)."
    run_dir = tmp_path_factory.mktemp('runs') / 'micro'
    status, _, err = cli('train', '--preset', 'micro', '--device', 'cpu', '--max-steps', '2', '--out', run_dir, '--quiet')
    assert status == 0, err
    return run_dir


def test_sr3lit_sample_with_dpmpp2m(tmp_path, micro_run):
    run_dir = micro_run
    lr = tmp_path / 'lr'
    lr.mkdir()
    data.to_pil(torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1).save(lr / 'a.png')
    runs = {}
    for name, extra in (('k', []), ('k2', []), ('r', ['--schedule', 'respace'])):
        status, stdout, err = cli('sample', '--model', run_dir, '--input', lr, '--out', tmp_path / name, '--sampler', 'dpmpp2m',
                                  '--steps', '4', '--quiet', *extra)
        assert status == 0, err
        runs[name] = (json.loads((tmp_path / name / 'sample.json').read_text()), (tmp_path / name / 'a.png').read_bytes())
    summary = runs['k'][0]
    assert summary['sampler'] == 'dpmpp2m' and summary['schedule'] == 'karras' and summary['steps'] == 4
    assert summary['network_evaluations'] == 4 and runs['r'][0]['schedule'] == 'respace'
    assert runs['k'][1] == runs['k2'][1]                         # deterministic given the seed
    # the Python API follows the sampler's levels too: run(image, sampler='dpmpp2m') is Karras' spacing, not respaced
    from sr3lit.inference import load_run
    loaded = load_run(run_dir)
    image = lr / 'a.png'
    default = loaded(image, steps=4, sampler='dpmpp2m')
    assert default.tobytes() == loaded(image, steps=4, sampler='dpmpp2m', schedule='karras').tobytes()
    assert default.tobytes() != loaded(image, steps=4, sampler='dpmpp2m', schedule='respace').tobytes()
    # the SDE solver from the command line: its own levels (the Karras window), N calls for N steps, reproducible given the seed
    sde = []
    for name in ('s', 's2'):
        status, _, err = cli('sample', '--model', run_dir, '--input', lr, '--out', tmp_path / name, '--sampler', 'dpmpp2m_sde',
                             '--steps', '4', '--quiet')
        assert status == 0, err
        sde.append((json.loads((tmp_path / name / 'sample.json').read_text()), (tmp_path / name / 'a.png').read_bytes()))
    assert sde[0][0]['sampler'] == 'dpmpp2m_sde' and sde[0][0]['schedule'] == 'karras_window' and sde[0][0]['network_evaluations'] == 4
    assert sde[0][1] == sde[1][1]


def test_sr3lit_sample_consistent_shrinks_back_to_the_input(tmp_path, micro_run):
    from sr3lit.inference import load_run
    from sr3lit.metrics import consistency
    run_dir = micro_run
    lr_dir = tmp_path / 'lr'
    lr_dir.mkdir()
    g = torch.Generator().manual_seed(0)
    for name, size in (('square', (8, 8)), ('wide', (8, 12))):               # a wide one is sampled in tiles
        data.to_pil(0.6 * torch.rand(3, *size, generator=g) - 0.3).save(lr_dir / f'{name}.png')
    gaps = {}
    for label, extra in (('plain', []), ('consistent', ['--consistent'])):
        status, _, err = cli('sample', '--model', run_dir, '--input', lr_dir, '--out', tmp_path / label, '--steps', '5',
                             '--quiet', *extra)
        assert status == 0, err
        assert json.loads((tmp_path / label / 'sample.json').read_text())['consistent'] == bool(extra)
        for name in ('square', 'wide'):
            lr = data.to_tensor(data.load_rgb(lr_dir / f'{name}.png'))[None]
            out = data.to_tensor(data.load_rgb(tmp_path / label / f'{name}.png'))[None]
            assert out.shape[-2:] == (lr.shape[-2] * 4, lr.shape[-1] * 4)
            gaps[label, name] = consistency(out, lr).item()
    for name in ('square', 'wide'):                                           # an 8-bit output: rounding is all that is left
        assert gaps['consistent', name] < 1e-5 < gaps['plain', name], gaps
    # the Python API: the same images
    loaded = load_run(run_dir)
    image = lr_dir / 'square.png'
    assert loaded(image, steps=5, consistent=True).tobytes() != loaded(image, steps=5).tobytes()
    # a regression does not sample: refused in one line, nothing written
    reg_dir = tmp_path / 'reg'
    status, _, err = cli('train', '--preset', 'micro', '--method', 'regression', '--device', 'cpu', '--max-steps', '2',
                         '--out', reg_dir, '--quiet')
    assert status == 0, err
    status, _, err = cli('sample', '--model', reg_dir, '--input', lr_dir, '--out', tmp_path / 'r', '--consistent', '--quiet')
    assert status != 0 and 'needs an SR3 run' in err and not (tmp_path / 'r').exists()
