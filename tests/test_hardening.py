"""Issue 14 (hardening): one test per numbered case, the one-line errors that were tracebacks, the package build,
and the interfaces people expect. Each test reproduces the failure the issue reported and checks the fix."""
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import types
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from sr3lit import data, inference
from sr3lit import training as tr
from sr3lit.checkpoint import latest_checkpoint
from sr3lit.cli import main
from sr3lit.config import make_config
from sr3lit.metrics import psnr, ssim

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS='1')


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): status = main([str(a) for a in argv])
    return status, out.getvalue(), err.getvalue()


def one_line_error(argv, *words):
    "Run the command; it must fail with exit status 2 and one stderr line holding every word."
    status, _, err = run_cli(*argv)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, (status, err)
    for w in words: assert str(w) in lines[0], (w, lines[0])
    return lines[0]


def tree(folder: Path) -> dict:
    "Every file under folder with its bytes (what 'nothing written' compares)."
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()} if folder.exists() else {}


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory, one_thread):
    "A micro run trained for 2 steps (seconds)."
    out = tmp_path_factory.mktemp('run') / 'micro'
    status, _, err = run_cli('train', '--preset', 'micro', '--device', 'cpu', '--max-steps', '2', '--out', out, '--quiet')
    assert status == 0, err
    return out


@pytest.fixture
def run_copy(run_dir, tmp_path):
    "A fresh copy of the micro run, to damage."
    dst = tmp_path / 'run'
    shutil.copytree(run_dir, dst)
    return dst


@pytest.fixture
def inputs(tmp_path):
    "Low-resolution inputs: a.png and a.jpg (one stem), b.png, and c.png truncated."
    folder = tmp_path / 'lr'
    folder.mkdir()
    g = torch.Generator().manual_seed(0)
    for name in ('a.png', 'a.jpg', 'b.png'):
        data.to_pil(torch.rand(3, 8, 8, generator=g) * 2 - 1).save(folder / name)
    (folder / 'c.png').write_bytes((folder / 'b.png').read_bytes()[:60])
    return folder


# ---------------------------------------------------------------- 1. python -m sr3lit.cli did nothing

def test_case1_python_m_sr3lit_cli_runs_the_command(tmp_path):
    out = tmp_path / 'x'
    for module in ('sr3lit.cli', 'sr3lit'):
        r = subprocess.run([sys.executable, '-m', module, 'train', '--preset', 'micro', '--device', 'cpu', '--max-steps', '2',
                            '--out', str(out), '--print-config'], capture_output=True, text=True, env=ENV, timeout=300)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)['max_steps'] == 2
        r = subprocess.run([sys.executable, '-m', module, 'train', '--preset', 'nope', '--out', str(out)],
                           capture_output=True, text=True, env=ENV, timeout=300)
        assert r.returncode == 2 and 'unknown preset' in r.stderr      # not a silent 0
    # the training itself through `python -m sr3lit.cli`: tests/test_cli.py::test_python_m_sr3lit_cli_trains


# ---------------------------------------------------------------- 2. sample overwrote files, the inputs too

def test_case2_sample_never_replaces_inputs_or_existing_outputs(run_dir, inputs, tmp_path):
    before = tree(inputs)
    one_line_error(['sample', '--model', run_dir, '--input', inputs, '--out', inputs, '--steps', '2', '--quiet'], 'input folder')
    one_line_error(['sample', '--model', run_dir, '--input', inputs, '--out', inputs / 'sub', '--steps', '2', '--quiet'], 'inside it')
    one_line_error(['sample', '--model', run_dir, '--input', inputs / 'b.png', '--out', inputs, '--steps', '2', '--quiet', '--overwrite'],
                   'replace the input')
    assert tree(inputs) == before
    out = tmp_path / 'sr'
    out.mkdir(); (out / 'b.png').write_bytes(b'mine')
    one_line_error(['sample', '--model', run_dir, '--input', inputs, '--out', out, '--steps', '2', '--quiet'], 'b.png', '--overwrite')
    assert tree(out) == {'b.png': b'mine'}
    status, stdout, _ = run_cli('sample', '--model', run_dir, '--input', inputs, '--out', out, '--steps', '2', '--quiet', '--overwrite')
    assert status == 0 and (out / 'b.png').read_bytes() != b'mine'


# ---------------------------------------------------------------- 3. name collisions lost images

def test_case3_sample_keeps_both_a_png_and_a_jpg(run_dir, inputs, tmp_path):
    out = tmp_path / 'sr'
    status, stdout, _ = run_cli('sample', '--model', run_dir, '--input', inputs, '--out', out, '--steps', '2', '--quiet')
    assert status == 0 and 'wrote 3 images' in stdout
    summary = json.loads((out / 'sample.json').read_text())
    assert sorted(summary['files']) == ['a_jpg.png', 'a_png.png', 'b.png'] == sorted(p.name for p in out.glob('*.png'))
    assert len(set(summary['files'])) == len(summary['files'])


def test_case3_prepare_from_folder_keeps_both_a_png_and_a_jpg(tmp_path):
    src = tmp_path / 'photos'
    src.mkdir()
    g = torch.Generator().manual_seed(1)
    for name in ('a.png', 'a.jpg', 'b.png'):
        data.to_pil(torch.rand(3, 40, 40, generator=g) * 2 - 1).save(src / name)
    status, stdout, _ = run_cli('prepare', '--from-folder', src, '--out', tmp_path / 'p', '--lr', '8', '--hr', '32', '--quiet')
    assert status == 0 and '3 images written' in stdout
    assert sorted(p.name for p in (tmp_path / 'p' / 'hr_32').iterdir()) == ['a_jpg.png', 'a_png.png', 'b.png']


# ---------------------------------------------------------------- 4. exported weights were hard links to the checkpoint

def test_case4_exported_weights_are_copies(run_copy):
    inside = latest_checkpoint(run_copy)
    for name in ('model.safetensors', 'ema.safetensors'):
        assert not os.path.samefile(run_copy / name, inside / name)
        with open(run_copy / name, 'r+b') as f: f.truncate(100)            # damage the exported copy
    status, stdout, err = run_cli('train', '--out', run_copy, '--max-steps', '3', '--quiet')
    assert status == 0, err                                                  # the checkpoint was untouched
    assert 'continued from step 2' in stdout


# ---------------------------------------------------------------- 5. metrics accepted [0, 1] and [0, 255] silently

def test_case5_metrics_check_the_value_range():
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    sr = (hr + 0.1 * torch.randn(2, 3, 16, 16, generator=g)).clamp(-1, 1)
    unit = lambda x: (x + 1) / 2
    with pytest.warns(UserWarning, match=r'value_range=\(0, 1\)'): psnr(unit(sr), unit(hr))
    torch.testing.assert_close(psnr(unit(sr), unit(hr), value_range=(0, 1)), psnr(sr, hr))
    torch.testing.assert_close(ssim(unit(sr) * 255, unit(hr) * 255, value_range=(0, 255)), ssim(sr, hr))
    with pytest.raises(ValueError, match=r'value_range=\(0, 255\)'): psnr(unit(sr) * 255, unit(hr) * 255)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        psnr(sr, hr); psnr(unit(sr), unit(hr), value_range=(-1, 1))          # [-1, 1] images, or the range given: no warning


# ---------------------------------------------------------------- 6. one unreadable image: one rule, skip and report

def test_case6_sample_skips_and_reports_an_unreadable_image(run_dir, inputs, tmp_path):
    out = tmp_path / 'sr'
    status, stdout, err = run_cli('sample', '--model', run_dir, '--input', inputs, '--out', out, '--steps', '2', '--quiet')
    assert status == 0 and 'skipped 1 unreadable' in stdout and 'c.png' in err
    summary = json.loads((out / 'sample.json').read_text())
    assert [Path(s['file']).name for s in summary['skipped']] == ['c.png'] and summary['images'] == 3


def test_case6_sample_with_no_readable_input_writes_nothing(run_dir, inputs, tmp_path):
    one_line_error(['sample', '--model', run_dir, '--input', inputs / 'c.png', '--out', tmp_path / 'sr', '--steps', '2', '--quiet'],
                   'could be read')
    assert not (tmp_path / 'sr').exists()


def test_case6_train_on_a_raw_folder_skips_and_reports_an_unreadable_image(tmp_path, caplog, one_thread):
    photos = tmp_path / 'photos'
    photos.mkdir()
    g = torch.Generator().manual_seed(2)
    for k in range(3): data.to_pil(torch.rand(3, 40, 40, generator=g) * 2 - 1).save(photos / f'p{k}.png')
    (photos / 'broken.png').write_bytes((photos / 'p0.png').read_bytes()[:200])    # a valid header, truncated data
    with caplog.at_level('WARNING', logger='sr3lit'):
        ds = data.ImageFolderSR(photos, 8, 32)
    assert len(ds) == 3 and [Path(p).name for p in ds.skipped['unreadable']] == ['broken.png']
    assert 'broken.png' in caplog.text
    status, _, err = run_cli('train', '--preset', 'micro', '--device', 'cpu', '--max-steps', '3', '--batch-size', '4',
                             '--data', photos, '--out', tmp_path / 'run', '--quiet')
    assert status == 0, err
    assert 'broken.png' in err                                              # reported, as prepare reports it


# ---------------------------------------------------------------- 7. leftovers of killed runs; the first log row after a resume

def test_case7_partial_folders_of_killed_runs_are_removed(tmp_path):
    src = tmp_path / 'photos'
    src.mkdir()
    data.to_pil(torch.rand(3, 40, 40) * 2 - 1).save(src / 'a.png')
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True).stdout.strip()
    stale = [tmp_path / f'.p.partial-{dead}-abc', tmp_path / '.p.partial-xyz', tmp_path / f'.p.old-{dead}-q']   # killed runs
    alive = tmp_path / f'.p.partial-{os.getpid()}-live'                                                        # a run going on
    for d in (*stale, alive): d.mkdir(); (d / 'junk').write_text('x')
    status, _, err = run_cli('prepare', '--from-folder', src, '--out', tmp_path / 'p', '--lr', '8', '--hr', '32', '--quiet')
    assert status == 0, err
    assert not any(d.exists() for d in stale) and alive.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(['photos', 'p', alive.name])


def test_case7_first_metrics_row_after_a_resume_averages_the_whole_interval(tmp_path, monkeypatch, one_thread):
    cfg = make_config('micro', overrides=dict(device='cpu', progress=False, log_every=4, checkpoint_every=2, max_steps=6))
    tr.train(cfg, tmp_path / 'straight')
    real = tr.optimisation_step
    def killed_in_step_4(s, *a, **k):
        if s.step == 3: raise KeyboardInterrupt          # after the checkpoint of step 2, with steps 1-3 of a row done
        return real(s, *a, **k)
    monkeypatch.setattr(tr, 'optimisation_step', killed_in_step_4)
    with pytest.raises(KeyboardInterrupt): tr.train(cfg, tmp_path / 'resumed')
    monkeypatch.setattr(tr, 'optimisation_step', real)
    tr.train(cfg, tmp_path / 'resumed')
    rows = lambda name: [(r['step'], r['loss'], r['grad_norm']) for r in tr.read_csv_log(tmp_path / name / 'metrics.csv')]
    assert rows('resumed') == rows('straight') and [r[0] for r in rows('straight')] == [4, 6]


# ---------------------------------------------------------------- errors that were tracebacks or named no file

def _truncate(path: Path, size: int = 1000):
    with open(path, 'r+b') as f: f.truncate(size)


def _edit_config(run: Path, change):
    values = json.loads((run / 'config.json').read_text())
    change(values)
    (run / 'config.json').write_text(json.dumps(values))


DAMAGE = {
    'truncated ema.safetensors': (lambda r: _truncate(r / 'ema.safetensors'), 'ema.safetensors'),
    'config.json missing a key': (lambda r: _edit_config(r, lambda v: v.pop('inner_channel')), 'config.json'),
    'invalid config.json': (lambda r: (r / 'config.json').write_text('{"inner_channel": '), 'config.json'),
}


@pytest.mark.parametrize('damage', list(DAMAGE))
def test_sample_on_a_damaged_run_is_one_line_naming_the_file(run_copy, inputs, tmp_path, damage):
    make, file = DAMAGE[damage]
    make(run_copy)
    one_line_error(['sample', '--model', run_copy, '--input', inputs / 'b.png', '--out', tmp_path / 'sr', '--steps', '2', '--quiet'],
                   run_copy / file)
    assert not (tmp_path / 'sr').exists()


@pytest.mark.parametrize('damage', ['config.json missing a key', 'invalid config.json', 'truncated training_state.pt'])
def test_train_on_a_damaged_run_is_one_line_naming_the_file(run_copy, damage):
    if damage == 'truncated training_state.pt':
        file = latest_checkpoint(run_copy) / 'training_state.pt'
        _truncate(file)
    else:
        DAMAGE[damage][0](run_copy); file = run_copy / 'config.json'
    before = tree(run_copy)
    one_line_error(['train', '--out', run_copy, '--max-steps', '4', '--quiet'], file)
    if damage != 'truncated training_state.pt': assert tree(run_copy) == before
    else: assert {k: v for k, v in tree(run_copy).items() if k != 'config.json'} == {k: v for k, v in before.items() if k != 'config.json'}


def test_train_with_a_truncated_exported_ema_continues_from_the_checkpoint(run_copy):
    _truncate(run_copy / 'ema.safetensors')
    status, _, err = run_cli('train', '--out', run_copy, '--max-steps', '3', '--quiet')
    assert status == 0, err
    inference.load_run(run_copy)                                             # the export was rewritten whole


@pytest.mark.parametrize('content', [b'', b'\x80\x02not a pickle at all' * 10, b'PK\x03\x04truncated zip'])
def test_reproduce_faces_pretrained_with_a_bad_checkpoint_is_one_line(tmp_path, content):
    ckpt = tmp_path / 'I640000_E37_gen.pth'
    ckpt.write_bytes(content)
    one_line_error(['reproduce', 'faces-pretrained', '--checkpoint', ckpt, '--out', tmp_path / 'out', '--quiet', '--device', 'cpu'],
                   ckpt)
    assert not (tmp_path / 'out').exists()                                  # no test/*.png left behind


# ---------------------------------------------------------------- packaging

def test_sdist_builds_a_wheel_that_installs_and_runs(tmp_path):
    pytest.importorskip('build')
    src = tmp_path / 'src'
    files = subprocess.run(['git', 'ls-files'], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file(): (src / f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(REPO / f, src / f)
    # `python -m build`: the sdist first, then the wheel built from the unpacked sdist (what failed without MANIFEST.in)
    r = subprocess.run([sys.executable, '-m', 'build', '--no-isolation', '--outdir', str(tmp_path / 'dist'), str(src)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wheel = next((tmp_path / 'dist').glob('sr3lit-*.whl'))
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith('METADATA'))).decode()
    assert 'Requires-Dist: torch>=2.6' in meta and 'Development Status :: 3 - Alpha' in meta
    # a fresh venv holding only the wheel; the dependencies come from this environment's site-packages
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    site = Path(subprocess.run([venv / 'bin' / 'python', '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / 'deps.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')   # a plain path: the editable sr3lit is not seen
    r = subprocess.run([sys.executable, '-m', 'pip', '--python', str(venv / 'bin' / 'python'), 'install', '--no-deps', '--no-index',
                        '--quiet', str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(venv / 'bin' / 'sr3lit'), '--help'], capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=300)
    assert r.returncode == 0 and 'usage: sr3lit' in r.stdout, r.stderr
    r = subprocess.run([str(venv / 'bin' / 'python'), '-c', 'import sr3lit; print(sr3lit.__file__)'], capture_output=True,
                       text=True, cwd=tmp_path, timeout=300)
    assert str(venv) in r.stdout, r.stdout + r.stderr


# ---------------------------------------------------------------- interfaces

def test_run_is_a_function_from_image_to_image(run_dir, inputs):
    run = inference.load_run(run_dir)
    small = Image.open(inputs / 'b.png')
    out = run(small, steps=5)
    assert isinstance(out, Image.Image) and out.size == (8 * run.scale, 8 * run.scale) and out.mode == 'RGB'
    assert out.tobytes() == run(inputs / 'b.png', steps=5).tobytes()          # a path works the same
    assert out.tobytes() != run(small, steps=5, seed=1).tobytes()
    with pytest.raises(ValueError, match='steps must lie in'): run(small, steps=0)


def test_reference_json_config_trains_through_the_cli(tmp_path):
    cfg_file = tmp_path / 'sr_sr3_16_128.json'
    cfg_file.write_text('''{
      "name": "sr_ffhq", "phase": "train", // train or val
      "gpu_ids": [0], "path": {"log": "logs", "resume_state": null},
      "datasets": {"train": {"name": "FFHQ", "mode": "HR", "dataroot": "dataset/ffhq_16_128", "l_resolution": 16,
                             "r_resolution": 128, "batch_size": 4, "num_workers": 8, "use_shuffle": true, "data_len": -1},
                   "val": {"name": "CelebaHQ", "mode": "LRHR", "dataroot": "dataset/celebahq_16_128", "l_resolution": 16,
                           "r_resolution": 128, "data_len": 50}},
      "model": {"which_model_G": "sr3", "finetune_norm": false,
                "unet": {"in_channel": 6, "out_channel": 3, "inner_channel": 64, "channel_multiplier": [1, 2, 4, 8, 8],
                         "attn_res": [16], "res_blocks": 2, "dropout": 0.2},
                "beta_schedule": {"train": {"schedule": "linear", "n_timestep": 2000, "linear_start": 1e-6, "linear_end": 1e-2},
                                  "val": {"schedule": "linear", "n_timestep": 2000, "linear_start": 1e-6, "linear_end": 1e-2}},
                "diffusion": {"image_size": 128, "channels": 3, "conditional": true}},
      "train": {"n_iter": 1000000, "val_freq": 1e4, "save_checkpoint_freq": 1e4, "print_freq": 200,
                "optimizer": {"type": "adam", "lr": 1e-4},
                "ema_scheduler": {"step_start_ema": 5000, "update_ema_every": 1, "ema_decay": 0.9999}}
    }''')
    status, stdout, err = run_cli('train', '--out', tmp_path / 'run', '--config-format', 'reference', '-c', cfg_file, '--print-config')
    assert status == 0, err
    cfg = json.loads(stdout)
    faces = json.loads(json.dumps(make_config('faces-16-128').to_dict()))      # tuples as JSON lists
    assert {k: v for k, v in cfg.items() if faces[k] != v} == {'data_dir': 'dataset/ffhq_16_128', 'num_workers': 8, 'n_val': 50}
    cfg_file.write_text(cfg_file.read_text().replace('"which_model_G": "sr3"', '"which_model_G": "ddpm"'))
    one_line_error(['train', '--out', tmp_path / 'run', '--config-format', 'reference', '-c', cfg_file], cfg_file, 'which_model_G')


def test_logging_and_tensorboard(tmp_path, monkeypatch, caplog, one_thread):
    events = []
    class FakeWriter:
        def __init__(self, log_dir): events.append(('dir', log_dir))
        def add_scalar(self, tag, value, step): events.append((tag, step))
        def close(self): events.append('close')
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', types.SimpleNamespace(SummaryWriter=FakeWriter))
    cfg = make_config('micro', overrides=dict(device='cpu', progress=True, log_every=2, max_steps=2))
    with caplog.at_level('INFO', logger='sr3lit'): tr.train(cfg, tmp_path / 'run')
    assert events[0] == ('dir', str(tmp_path / 'run' / 'tensorboard')) and events[-1] == 'close'
    assert ('train/loss', 2) in events and ('train/lr', 2) in events
    assert 'step 2/2 loss' in caplog.text                                   # the log-file lines go through the logger
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', None)        # not installed: no writer, no error
    assert tr.tensorboard_writer(tmp_path) is None


def test_one_progress_bar_flavour_in_the_library():
    import ast
    for module in sorted((REPO / 'sr3lit').glob('*.py')):
        tree_ = ast.parse(module.read_text())
        for node in ast.walk(tree_):
            if isinstance(node, ast.ImportFrom) and node.module == 'tqdm':
                pytest.fail(f"{module.name}: `from tqdm import ...`; use tqdm.auto")
