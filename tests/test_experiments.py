"""`sr3lit eval` and `sr3lit reproduce` end to end: metrics equal to sr3lit.metrics computed directly, every file
written, folders that disagree refused with one line, a micro reproduction that resumes without redoing anything,
experiment 4.1 on a random-weights reference checkpoint, and bad input."""
import colorsys
import contextlib
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from sr3lit import data
from sr3lit.cli import main
from sr3lit.evaluate import evaluate_folders
from sr3lit.experiments import (EXPERIMENT_PRESETS, cached_stage, colour_statistics,
                                get_experiment_preset, mark_footprint, paint_mark, Progress)
from sr3lit.metrics import COLOUR_AXES, colour_axes, consistency, high_frequency_energy, high_frequency_ratio, psnr, ssim
from sr3lit.schedules import NoiseSchedule
from sr3lit.unet import UNet


def run_cli(argv):
    "(exit status, stdout, stderr) of `sr3lit ARGV`."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def load(path) -> torch.Tensor:
    return data.to_tensor(Image.open(path).convert('RGB'))[None]


@pytest.fixture
def folders(tmp_path):
    "HR (32x32, one of them a JPEG), SR = HR + noise, LR = HR shrunk to 8x8: four images."
    g = torch.Generator().manual_seed(1)
    hr = data.upsample(torch.rand(4, 3, 8, 8, generator=g) * 2 - 1, 32)
    sr = (hr + 0.08 * torch.randn(hr.shape, generator=g)).clamp(-1, 1)
    lr = data.downsample(hr, 8)
    dirs = {k: tmp_path / k for k in ('hr', 'sr', 'lr')}
    for k, images in (('hr', hr), ('sr', sr), ('lr', lr)):
        dirs[k].mkdir()
        for i, im in enumerate(images):
            data.to_pil(im).save(dirs[k] / (f'im{i}.jpg' if k == 'hr' and i == 0 else f'im{i}.png'), quality=95)
    return dirs


# ---------------------------------------------------------------- sr3lit eval

def test_eval_metrics_equal_the_metrics_module(folders, tmp_path):
    out = tmp_path / 'out'
    status, stdout, stderr = run_cli(['eval', '--sr', folders['sr'], '--hr', folders['hr'], '--lr', folders['lr'], '--out', out])
    assert status == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == ['grid.png', 'metrics.json', 'metrics.md']
    result = json.loads((out / 'metrics.json').read_text())
    names = [r['name'] for r in result['images']]
    assert names == ['im0', 'im1', 'im2', 'im3']
    hr_files = {p.stem: p for p in folders['hr'].iterdir()}
    sr = torch.cat([load(folders['sr'] / f'{n}.png') for n in names])
    hr = torch.cat([load(hr_files[n]) for n in names])
    lr = torch.cat([load(folders['lr'] / f'{n}.png') for n in names])
    np.testing.assert_allclose([r['psnr'] for r in result['images']], psnr(sr, hr).numpy(), rtol=1e-5)
    np.testing.assert_allclose([r['ssim'] for r in result['images']], ssim(sr, hr).numpy(), rtol=1e-5)
    np.testing.assert_allclose([r['consistency'] for r in result['images']], consistency(sr, lr).numpy(), rtol=1e-5)
    for m in ('psnr', 'ssim', 'consistency'):
        values = [r[m] for r in result['images']]
        assert result['mean'][m] == pytest.approx(np.mean(values), rel=1e-5)
        assert result['mean'][f'{m}_std'] == pytest.approx(np.std(values, ddof=1), rel=1e-4)
    table = (out / 'metrics.md').read_text()
    assert f"**{result['mean']['psnr']:.2f}**" in table and all(f'| {n} |' in table for n in names)
    grid = Image.open(out / 'grid.png')
    assert grid.format == 'PNG' and grid.size[1] > grid.size[0] > 100          # 4 rows of 3 columns: taller than wide
    assert f"{result['mean']['psnr']:.2f} dB" in stdout


def test_eval_passes_y_channel_and_border_crop_through(folders, tmp_path):
    status, _, stderr = run_cli(['eval', '--sr', folders['sr'], '--hr', folders['hr'], '--out', tmp_path / 'o',
                                 '--y-channel', '--crop-border', '3', '--grid', '0'])
    assert status == 0, stderr
    result = json.loads((tmp_path / 'o' / 'metrics.json').read_text())
    sr = torch.cat([load(folders['sr'] / f'im{i}.png') for i in range(4)])
    hr = torch.cat([load(p) for p in sorted(folders['hr'].iterdir(), key=lambda p: p.stem)])
    np.testing.assert_allclose([r['psnr'] for r in result['images']], psnr(sr, hr, y_channel=True, crop_border=3).numpy(), rtol=1e-5)
    np.testing.assert_allclose([r['ssim'] for r in result['images']], ssim(sr, hr, y_channel=True, crop_border=3).numpy(), rtol=1e-5)
    assert 'consistency' not in result['mean'] and not (tmp_path / 'o' / 'grid.png').exists()
    assert result['options'] == {'y_channel': True, 'crop_border': 3}


def _one_line_error(argv, *needles):
    status, stdout, stderr = run_cli(argv)
    assert status == 2 and stdout == ''
    assert len(stderr.strip().splitlines()) == 1, stderr
    for needle in needles: assert needle in stderr, stderr
    return stderr


def test_eval_rejects_a_missing_file(folders, tmp_path):
    (folders['sr'] / 'im2.png').unlink()
    _one_line_error(['eval', '--sr', folders['sr'], '--hr', folders['hr'], '--out', tmp_path / 'o'], 'im2.png', 'no counterpart in the SR folder')
    assert not (tmp_path / 'o').exists()
    data.to_pil(torch.zeros(3, 32, 32)).save(folders['sr'] / 'im2.png')
    data.to_pil(torch.zeros(3, 32, 32)).save(folders['sr'] / 'stray.png')
    _one_line_error(['eval', '--sr', folders['sr'], '--hr', folders['hr'], '--out', tmp_path / 'o'], 'stray.png', 'no counterpart in the HR folder')
    (folders['lr'] / 'im1.png').unlink()
    (folders['sr'] / 'stray.png').unlink()
    _one_line_error(['eval', '--sr', folders['sr'], '--hr', folders['hr'], '--lr', folders['lr'], '--out', tmp_path / 'o'],
                    'im1', 'no counterpart in the LR folder')


def test_eval_rejects_a_size_mismatch(folders, tmp_path):
    data.to_pil(torch.zeros(3, 24, 32)).save(folders['sr'] / 'im3.png')
    _one_line_error(['eval', '--sr', folders['sr'], '--hr', folders['hr'], '--out', tmp_path / 'o'], 'size mismatch', 'im3.png', '32x24')
    data.to_pil(torch.zeros(3, 32, 32)).save(folders['sr'] / 'im3.png')
    data.to_pil(torch.zeros(3, 12, 12)).save(folders['lr'] / 'im3.png')
    _one_line_error(['eval', '--sr', folders['sr'], '--hr', folders['hr'], '--lr', folders['lr'], '--out', tmp_path / 'o'],
                    'im3.png', 'divided by an integer')


def test_eval_rejects_empty_and_missing_folders(folders, tmp_path):
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'notes.txt').write_text('not an image')
    _one_line_error(['eval', '--sr', tmp_path / 'empty', '--hr', folders['hr'], '--out', tmp_path / 'o'], 'holds no images', 'empty')
    _one_line_error(['eval', '--sr', folders['sr'], '--hr', tmp_path / 'absent', '--out', tmp_path / 'o'], 'does not exist', 'absent')
    _one_line_error(['eval', '--sr', folders['sr'], '--hr', folders['hr'], '--out', tmp_path / 'o', '--crop-border', '-1'], 'crop-border')


def test_identical_images_give_infinite_psnr_as_null(folders, tmp_path):
    result = evaluate_folders(folders['hr'], folders['hr'])
    assert all(r['psnr'] is None and r['ssim'] == pytest.approx(1.0) for r in result['images'])
    assert result['mean']['psnr'] is None
    json.dumps(result, allow_nan=False)                    # strict JSON: no Infinity


# ---------------------------------------------------------------- sr3lit reproduce

MICRO = ['--quiet', '--device', 'cpu', '--sr3-steps', '6', '--regression-steps', '6', '--steps', '20,5', '--ddim-steps', '5']


def _mtimes(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob('*') if p.is_file()}


def test_reproduce_micro_writes_the_report_and_resumes(tmp_path):
    out = tmp_path / 'micro'
    t0 = time.perf_counter()
    status, stdout, stderr = run_cli(['reproduce', 'micro', '--out', out, *MICRO])
    first = time.perf_counter() - t0
    assert status == 0, stderr
    results = json.loads((out / 'results.json').read_text())
    report = (out / 'report.md').read_text()

    # the tables, shaped like the report's
    assert '## Table 1' in report and '## Table 2' in report
    for row in ('| Bicubic |', '| Regression |', '| SR3 (20 steps, DDPM, respaced) |'):
        assert row in report
    assert '| steps | re-discretised PSNR | SSIM | respaced PSNR | SSIM | DDIM, respaced PSNR | SSIM | DPM-Solver++(2M), Karras PSNR | SSIM |' in report
    assert '\n| 20 |' in report and '\n| 5 |' in report
    assert set(results['methods']) == {'bicubic', 'regression', 'sr3', 'sr3_mean'}
    # the mean of samples is drawn with the preset's own sampler (the SDE solver of chapter 09), and the table says so
    mean_row = results['methods']['sr3_mean']
    assert (mean_row['sampler'], mean_row['steps'], mean_row['n_samples']) == ('dpmpp2m_sde', 10, 8)
    assert '| Mean of SR3 samples (8 samples of DPM-Solver++(2M) SDE, 10 steps) |' in report
    from sr3lit import experiments
    from sr3lit.inference import load_run
    preset, sr3 = EXPERIMENT_PRESETS['micro'], load_run(out / 'sr3')
    test = experiments.prepare_test_set(preset, sr3.config, out, experiments.Progress(quiet=True))
    saved = np.stack([np.asarray(Image.open(out / 'samples' / 'sr3-mean' / f'{n}.png')) for n in test['names']])
    mean_of = lambda sampler, schedule: experiments.sr3_outputs(sr3, test['x_up'], test['names'], steps=10, schedule=schedule,
        sampler=sampler, seed=0, batch_size=max(1, preset.batch_size // 8), n_samples=8)[0]
    pixels = lambda images: np.stack([np.asarray(data.to_pil(im)) for im in images])        # as the stage saves them
    assert np.array_equal(pixels(mean_of('dpmpp2m_sde', 'karras_window')), saved)
    assert not np.array_equal(pixels(mean_of('ddpm', 'respace')), saved)
    assert set(results['flat_colour']) == {'regression', 'sr3'} and all(v['mean'] >= 0 for v in results['flat_colour'].values())
    assert set(results['steps']) == {'rediscretize', 'respace', 'ddim', 'dpmpp2m', 'dpmpp2m_sde'}
    assert set(results['steps']['respace']) == {'20', '5'}                          # the main chain (20 < T) drawn once, respaced,
    assert set(results['steps']['rediscretize']) == {'5'}                           # the shorter ones both ways
    assert set(results['steps']['ddim']) == {'5'}
    assert results['training']['sr3']['step'] == 6 and results['training']['regression']['step'] == 6
    for name in ('fig_comparison.png', 'fig_trajectory.png', 'fig_steps.png', 'fig_psnr_vs_steps.png'):
        assert Image.open(out / name).format == 'PNG'

    # the numbers are those of the written images, measured independently
    names = results['data']['test_images']
    hr = torch.cat([load(out / 'test' / 'hr' / f'{n}.png') for n in names])
    for tag, summary in (('bicubic', results['methods']['bicubic']), (results['tags']['rediscretize-5'], results['steps']['rediscretize']['5'])):
        sr = torch.cat([load(out / 'samples' / tag / f'{n}.png') for n in names])
        assert summary['psnr'] == pytest.approx(psnr(sr, hr).mean().item(), rel=1e-5)
        assert summary['ssim'] == pytest.approx(ssim(sr, hr).mean().item(), rel=1e-5, abs=1e-6)
        assert summary['hf_ratio'] == pytest.approx(high_frequency_ratio(sr, hr, 4), rel=1e-5)
    # the colour split of each method's detail recombines, weighted by the references' energy on each axis, into its ratio
    hr_axes = colour_axes(hr)
    weights = [float(high_frequency_energy(hr_axes[:, k:k + 1], 4).sum()) for k in range(3)]
    for name, m in results['methods'].items():
        assert list(m['hf_ratio_colour']) == list(COLOUR_AXES), name
        recombined = sum(w * v for w, v in zip(weights, m['hf_ratio_colour'].values())) / sum(weights)
        assert recombined == pytest.approx(m['hf_ratio'], rel=2e-5), name   # results.json keeps 6 significant digits (up to 5e-6 each)
    assert 'by colour: luminance / red-green / yellow-blue' in report
    # the chain of the re-discretised 5-step schedule starts at prod(1 - beta_i) over 5 betas from 1e-6 to 1e-2
    assert results['chain_start']['5']['rediscretize'] == pytest.approx(np.prod(1 - np.linspace(1e-6, 1e-2, 5)), rel=1e-12)
    assert results['chain_start']['5']['respace'] == pytest.approx(NoiseSchedule.make('linear', 2000).gammas[-1], rel=1e-12)
    # where the main chain makes its sample: y0_hat at every tenth of it, the last one the sample of Table 1 itself
    along, sr3_row = results['along_chain'], results['methods']['sr3']
    assert [r['t'] for r in along] == list(range(20, 0, -2)) + [0] and along[-1]['sigma'] == 0
    chain = NoiseSchedule.make('linear', 2000).respace(20)
    assert along[0]['sigma'] == pytest.approx(np.sqrt((1 - chain.gammas[-1]) / chain.gammas[-1]), rel=1e-9)
    for key in ('psnr', 'ssim', 'hf_ratio'):          # Table 1 keeps 6 significant digits: a relative rounding of up to 5e-6
        assert along[-1][key] == pytest.approx(sr3_row[key], rel=1e-5, abs=1e-9), key
    assert '## Table 4. Where the chain makes its sample' in report
    trajectory = torch.load(out / 'stages' / f"{results['full_tag']}.trajectory.pt", weights_only=True)
    assert trajectory['states'].shape[:2] == (11, min(results['settings']['n_figure'], len(names)))

    # a second run: nothing retrained or resampled, the same numbers, faster
    before = {k: v for k, v in _mtimes(out).items() if not k.startswith(('results.json', 'report.md', 'fig_'))}
    t0 = time.perf_counter()
    status, _, stderr = run_cli(['reproduce', 'micro', '--out', out, *MICRO])
    second = time.perf_counter() - t0
    assert status == 0, stderr
    again = json.loads((out / 'results.json').read_text())
    after = {k: v for k, v in _mtimes(out).items() if k in before}
    assert after == before                                   # checkpoints, samples and stage files untouched
    assert all(again['stages_cached'].values()) and not any(results['stages_cached'].values())
    for key in ('methods', 'steps', 'per_image', 'findings', 'training'):
        assert again[key] == results[key], key
    assert second < first

    # asking for another step count redoes only that stage
    status, _, stderr = run_cli(['reproduce', 'micro', '--out', out, *MICRO[:-4], '--steps', '20,5,3', '--ddim-steps', '5'])
    assert status == 0, stderr
    third = json.loads((out / 'results.json').read_text())
    redone = {tag for tag, cached in third['stages_cached'].items() if not cached}
    assert redone == {'sr3-ddpm-rediscretize-3', 'sr3-ddpm-respace-3'}


def test_reproduce_faces_pretrained_on_a_random_reference_checkpoint(tmp_path):
    unet = dict(inner_channel=8, norm_groups=4, channel_mults=[1, 2], attn_res=[16], res_blocks=1, dropout=0.0, image_size=32)
    torch.manual_seed(0)
    state = {f'denoise_fn.{k}': v for k, v in UNet(**unet).state_dict().items()}
    schedule = NoiseSchedule.make('linear', 2000)
    state.update(betas=torch.tensor(schedule.betas), alphas_cumprod=torch.tensor(schedule.gammas))
    ckpt = tmp_path / 'random_gen.pth'
    torch.save(state, ckpt)
    face = tmp_path / 'face.png'
    data.embedded_photo('astronaut').crop((130, 0, 330, 200)).save(face)
    out = tmp_path / 'faces'
    argv = ['reproduce', 'faces-pretrained', '--out', out, '--checkpoint', ckpt, '--image', face, '--quiet', '--device', 'cpu',
            '--set', f'unet={json.dumps(unet)}', '--set', 'lr_size=8', '--set', 'hr_size=32', '--steps', '8',
            '--set', 'n_samples=3', '--mark', '0.25,0.5,0.25']
    status, _, stderr = run_cli(argv)
    assert status == 0, stderr
    results = json.loads((out / 'results.json').read_text())
    assert results['n_samples'] == 3 and results['steps'] == 8 and results['mark_box_lr'] == [2, 4, 4, 6]
    for which in ('unmarked', 'marked'):
        r = results['inputs'][which]
        samples = torch.cat([load(out / 'samples' / ('faces' if which == 'unmarked' else 'faces_marked') / f'sample_{k}.png') for k in range(3)])
        expected = 127.5 * samples.double().std(dim=0, correction=1).mean().item()
        assert r['diversity_grey_levels'] == pytest.approx(expected, rel=1e-6)
        assert len(r['psnr']) == 3
    # the reference's colour statistics are those of the HR image outside the mark's footprint
    hr = load(out / 'test' / 'hr.png')[0]
    keep = mark_footprint((2, 4, 4, 6), 8, 32)
    assert results['colour']['reference']['b'] == pytest.approx(hr[2][keep].add(1).mul(127.5).round().mean().item(), rel=1e-9)
    lr_marked = np.asarray(Image.open(out / 'test' / 'lr_marked.png'))
    assert lr_marked[4:6, 2:4].max() == 0 and np.asarray(Image.open(out / 'test' / 'lr.png'))[4:6, 2:4].max() > 0
    report = (out / 'report.md').read_text()
    assert '## Diversity' in report and '## Colour probe' in report
    # rerun: cached
    status, _, stderr = run_cli(argv)
    assert status == 0 and json.loads((out / 'results.json').read_text())['inputs'] == results['inputs']


def test_reproduce_bad_input_is_one_line(tmp_path):
    _one_line_error(['reproduce', 'huge', '--out', tmp_path / 'o'], 'invalid choice', 'huge')
    _one_line_error(['reproduce', 'afhq-dog-16-128', '--out', tmp_path / 'o', '--data', tmp_path / 'nodata', '--quiet'],
                    'no afhq-dog data', 'sr3lit prepare afhq-dog')
    _one_line_error(['reproduce', 'div2k-16-128', '--out', tmp_path / 'o', '--data', tmp_path / 'nodata', '--quiet'], 'no div2k data')
    _one_line_error(['reproduce', 'faces-pretrained', '--out', tmp_path / 'o', '--quiet'], 'needs --checkpoint')
    _one_line_error(['reproduce', 'faces-pretrained', '--out', tmp_path / 'o', '--checkpoint', tmp_path / 'none.pth'], 'does not exist')
    _one_line_error(['reproduce', 'micro', '--out', tmp_path / 'o', '--set', 'speed=2'], "unknown experiment setting 'speed'")
    _one_line_error(['reproduce', 'micro', '--out', tmp_path / 'o', '--steps', '0,5'], 'step counts must be positive')
    _one_line_error(['reproduce', 'micro', '--out', tmp_path / 'o', '--set', 'mean_sampler=euler'], 'mean_sampler must be one of', 'euler')
    _one_line_error(['reproduce', 'micro', '--out', tmp_path / 'o', '--quiet', '--steps', '5000'], '5000 sampling steps', 'T=2000')
    _one_line_error(['reproduce', 'tiny', '--out', tmp_path / 'o', '--checkpoint', 'x.pth'], 'faces-pretrained')
    _one_line_error(['reproduce', 'faces-pretrained', '--out', tmp_path / 'o', '--checkpoint', 'x.pth', '--mark', '2,3'], 'fractions')


def test_presets_are_valid_and_the_report_numbers_sit_with_matching_presets():
    assert {'micro', 'tiny', 'afhq-dog-16-128', 'div2k-16-128', 'faces-pretrained'} <= set(EXPERIMENT_PRESETS)
    tiny = EXPERIMENT_PRESETS['tiny']
    assert 50 in tiny.steps and tiny.report is None                                # the report's shortest chain
    from sr3lit.experiments import _full_tag, _sr3_plan
    plan = _sr3_plan(tiny, 2000)
    tag, n = _full_tag(plan, tiny, 2000)
    assert n == max(tiny.steps) and (n == 2000 or tag == f'sr3-ddpm-respace-{n}')  # the main row: the longest chain, respaced below T
    assert [m for s, _, m in plan if s == 'ddpm'].count(n) == 1                      # ... drawn once
    assert EXPERIMENT_PRESETS['afhq-dog-16-128'].report == 'afhq-dog-16-128' and EXPERIMENT_PRESETS['afhq-dog-16-128'].n_test == 50
    with pytest.raises(ValueError, match='unknown experiment preset'): get_experiment_preset('nope')


# ---------------------------------------------------------------- pieces

@settings(max_examples=40, deadline=None)
@given(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)))
def test_colour_statistics_of_a_flat_image_match_colorsys(rgb):
    image = (torch.tensor(rgb, dtype=torch.float64) / 127.5 - 1).view(3, 1, 1).expand(3, 3, 5)
    s = colour_statistics(image)
    assert (s['r'], s['g'], s['b']) == pytest.approx(rgb, abs=1e-9)
    h, sat, _ = colorsys.rgb_to_hsv(*(v / 255 for v in rgb))
    assert s['saturation'] == pytest.approx(sat, abs=1e-9)
    if sat > 0: assert math.cos(math.radians(s['hue'] - 360 * h)) == pytest.approx(1.0, abs=1e-9)


def test_paint_mark_and_footprint():
    img = Image.new('RGB', (16, 16), (90, 120, 200))
    marked, box = paint_mark(img, (0.5, 0.25, 0.125))
    assert box == (8, 4, 10, 6)
    a = np.asarray(marked)
    assert a[4:6, 8:10].max() == 0 and (a.reshape(-1, 3) == 0).all(axis=1).sum() == 4
    keep = mark_footprint(box, 16, 64, grow=1)
    assert (~keep).sum() == (4 * 4) ** 2 and not keep[12:24, 28:40].any() and keep[11, 28] and keep[12, 27]
    # a mark at the edge stays inside the image
    _, box = paint_mark(img, (1.0, 1.0, 0.25))
    assert box == (12, 12, 16, 16)


def test_cached_stage_recomputes_only_when_its_key_changes(tmp_path):
    calls = []
    compute = lambda: calls.append(1) or {'value': len(calls)}
    log = Progress(quiet=True)
    a = cached_stage(tmp_path / 's.json', {'n': (1, 2)}, compute, log, 's')
    b = cached_stage(tmp_path / 's.json', {'n': [1, 2]}, compute, log, 's')        # the same key after a JSON round trip
    c = cached_stage(tmp_path / 's.json', {'n': [1, 3]}, compute, log, 's')
    d = cached_stage(tmp_path / 's.json', {'n': [1, 3]}, compute, log, 's', check=lambda r: False)   # files missing: redo
    assert [x['value'] for x in (a, b, c, d)] == [1, 1, 2, 3] and len(calls) == 3
    assert (a['cached'], b['cached'], c['cached'], d['cached']) == (False, True, False, False)


def test_the_reports_numbers_sit_beside_ours_for_its_presets(tmp_path):
    "The afhq-dog preset end to end on a small prepared folder in the afhq-dog layout (micro network, 8->32)."
    g = torch.Generator().manual_seed(2)
    src = {s: tmp_path / 'src' / s for s in ('train', 'test')}
    for split, n in (('train', 6), ('test', 3)):
        src[split].mkdir(parents=True)
        for i in range(n):
            data.to_pil(data.upsample(torch.rand(3, 6, 6, generator=g) * 2 - 1, 40)).save(src[split] / f'dog{i}.png')
    root = tmp_path / 'data'
    for split in ('train', 'test'):
        data.prepare_folder(src[split], root / 'afhq-dog_8_32' / split, 8, 32)
    out = tmp_path / 'afhq'
    status, _, stderr = run_cli(['reproduce', 'afhq-dog-16-128', '--out', out, '--data', root, '--quiet', '--device', 'cpu',
                                 '--set', 'train_preset=micro', '--train-set', 'dataset=afhq-dog', '--sr3-steps', '3',
                                 '--regression-steps', '3', '--steps', '20,5', '--ddim-steps', '5', '--batch-size', '2'])
    assert status == 0, stderr
    results = json.loads((out / 'results.json').read_text())
    assert len(results['data']['test_images']) == 3 and results['data']['dataset'] == 'afhq-dog'
    report = (out / 'report.md').read_text()
    table1 = report.split('## Table 1')[1].split('## Table 2')[0]
    assert "the report's PSNR" in table1
    for method, numbers in (('Bicubic', '22.08 | 0.57'), ('Regression', '24.26 | 0.68'), ('SR3', '23.05 | 0.62')):
        line = next(l for l in table1.splitlines() if l.startswith(f'| {method}'))
        assert line.endswith(f'{numbers} |'), line
    table2 = report.split('## Table 2')[1].split('## Table 3')[0]
    row50 = next(l for l in table2.splitlines() if l.startswith('| 50 |'))
    assert '13.39 | 0.11 |' in row50
    row1000 = next(l for l in table2.splitlines() if l.startswith('| 1000 |'))
    assert '23.08 | 0.62 |' in row1000
    assert results['report']['methods']['regression'] == {'psnr': 24.26, 'ssim': 0.68}


def test_noise_level_measures_share_one_network_call_per_batch_and_step():
    "Several measures of the y0 estimate cost one pass; each equals what its own function computes."
    from sr3lit.experiments import colour_error_by_noise_level, error_by_noise_level, mean_colour_error, unrounded_psnr
    from sr3lit.schedules import NoiseSchedule
    sched = NoiseSchedule.make('linear', 2000)
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(5, 3, 8, 8, generator=g) * 2 - 1
    x_up = hr + 0.05 * torch.randn(hr.shape, generator=g)
    calls = []
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__(); self.w = torch.nn.Parameter(torch.tensor(0.3))
        def forward(self, x, level):
            calls.append(len(x)); return self.w * x[:, 3:]
    net, steps = Net(), (1, 500, 2000)
    both = error_by_noise_level(net, sched, x_up, hr, {'colour': mean_colour_error, 'psnr': unrounded_psnr},
                                steps, seed=3, batch_size=2)
    assert calls == [2, 2, 1] * len(steps)                      # 3 batches per step, one call each
    assert both['colour'] == colour_error_by_noise_level(net, sched, x_up, hr, steps, seed=3, batch_size=2)
    assert both['psnr'] == error_by_noise_level(net, sched, x_up, hr, {'psnr': unrounded_psnr}, steps, seed=3, batch_size=2)['psnr']
    assert all(math.isfinite(v) for v in both['psnr'].values())


class _ConstantResidual(torch.nn.Module):
    "A stand-in regression network whose output (the scaled residual over bicubic) is the constant `value` everywhere."
    def __init__(self, value: float):
        super().__init__()
        self.value, self.anchor = value, torch.nn.Parameter(torch.zeros(()))      # a parameter: the device is read from it
    def forward(self, x, level): return torch.full_like(x[:, :3], self.value) + 0 * self.anchor


def test_flat_colour_error_is_zero_for_bicubic_and_the_shift_of_a_biased_model():
    "The study's flat-patch measure: a model that adds nothing returns each colour exactly; one that adds 6 grey levels is off by 6."
    from sr3lit import inference, training
    from sr3lit.config import make_config
    from sr3lit.experiments import flat_colour_error
    method = training.get_method('regression')
    cfg = method.configure(make_config('micro', overrides={'method': 'regression'}))
    assert cfg.residual and cfg.residual_scale == 4.0
    run = lambda value: inference.Run(cfg, _ConstantResidual(value), method, 0, Path('.'))
    exact = flat_colour_error(run(0.0), 30)
    assert exact['mean'] == 0 and exact['worst'] == 0 and exact['bicubic'] == 0
    shifted = flat_colour_error(run(cfg.residual_scale * 6 / 127.5), 30)          # +6 grey levels before clipping at 255
    assert all(e <= 6 + 1e-9 for e in shifted['per_colour']) and shifted['worst'] == pytest.approx(6)
    assert 5 < shifted['mean'] <= 6


def _weights_digest(folder: Path) -> dict:
    import hashlib
    return {f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.rglob('*.safetensors'))}


def test_training_side_by_side_gives_the_weights_of_one_after_the_other(tmp_path):
    from sr3lit.experiments import train_both, train_configs
    configs = train_configs(get_experiment_preset('micro'), device='cpu', progress=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        lines = []
        log = lambda message: lines.append(message)
        runs, summary = train_both(configs, tmp_path / 'together', log, side_by_side=True)
        assert any('second process' in m for m in lines), lines
        assert torch.get_num_threads() == 2
        train_both(configs, tmp_path / 'apart', log, side_by_side=False)
    finally: torch.set_num_threads(before)
    together, apart = _weights_digest(tmp_path / 'together'), _weights_digest(tmp_path / 'apart')
    assert len(together) >= 4 and together == apart               # model and EMA of both runs, checkpoints included
    assert summary['sr3']['step'] == summary['regression']['step'] == configs['sr3'].max_steps
    assert sorted(p.name for p in (tmp_path / 'together').iterdir()) == ['regression', 'sr3']   # no leftovers


def test_a_failure_in_the_second_process_is_reported_and_sr3_still_finishes(tmp_path):
    from sr3lit.experiments import train_both, train_configs
    from sr3lit.training import NonFiniteLossError
    configs = train_configs(get_experiment_preset('micro'), device='cpu', progress=False)
    configs['regression'] = configs['regression']._replace({'lr': 1e30})      # the weights blow up within a few steps
    with pytest.raises(NonFiniteLossError, match='became'):
        train_both(configs, tmp_path / 'r', lambda m: None, side_by_side=True)
    from sr3lit.checkpoint import checkpoint_steps
    assert checkpoint_steps(tmp_path / 'r' / 'sr3')[-1] == configs['sr3'].max_steps


def test_a_training_stopped_by_a_signal_stops_the_study(tmp_path, monkeypatch):
    from sr3lit import training
    from sr3lit.experiments import train_both, train_configs
    configs = train_configs(get_experiment_preset('micro'), device='cpu', progress=False)
    monkeypatch.setattr(training, 'train', lambda cfg, run_dir, **kw: training.TrainResult(Path(run_dir), 3, 0.5, None, 'SIGINT'))
    lines = []
    with pytest.raises(KeyboardInterrupt):
        train_both(configs, tmp_path / 'r', lines.append, side_by_side=False)
    assert 'stopped by SIGINT at step 3' in lines[-1] and 'the same command continues' in lines[-1]


def test_ctrl_c_stops_both_trainings_at_a_checkpoint_and_ends_the_study(tmp_path):
    import os, signal, subprocess, sys
    from sr3lit.checkpoint import checkpoint_steps
    out = tmp_path / 'study'
    cmd = [sys.executable, '-m', 'sr3lit', 'reproduce', 'micro', '--out', str(out), '--device', 'cpu',
           '--sr3-steps', '3000', '--regression-steps', '3000']
    env = {**os.environ, 'OMP_NUM_THREADS': '2'}
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True, env=env)   # its own group, as a terminal's job
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not all(checkpoint_steps(out / m) for m in ('sr3', 'regression') if (out / m).is_dir()) \
                or not all((out / m).is_dir() for m in ('sr3', 'regression')):
            assert p.poll() is None, p.stderr.read()
            time.sleep(0.5)
        os.killpg(p.pid, signal.SIGINT)                       # Ctrl-C reaches every process of the job
        _, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None: os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130, stderr
    assert 'stopped by SIGINT' in stderr and 'interrupted' in stderr.splitlines()[-1]
    for m in ('sr3', 'regression'):
        steps = checkpoint_steps(out / m)
        assert steps and 0 < steps[-1] < 3000                  # each saved where it stopped, and stopped early
    assert not (out / 'results.json').exists() and not list(out.glob('.train-*'))   # no study from half-trained networks
