"""The trainer (sr3lit.training): exact resume (in process and after SIGKILL), seeds, NaN stop, DDP on 2 CPU
processes, checkpoints, configs, the train/sample commands and tiling."""
import math
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from sr3lit import training as tr
from sr3lit.checkpoint import checkpoint_steps, latest_checkpoint, save_checkpoint
from sr3lit.config import TrainConfig, make_config
from sr3lit.inference import TiledModel, load_run
from sr3lit.training import (DiffusionObjective, NonFiniteLossError, SampleRNG, StepSampler, build_model, derive_seed, fit,
                             open_datasets, train)

ROOT = Path(__file__).resolve().parents[1]
SR3LIT = str(Path(sys.executable).with_name('sr3lit'))
# one thread per process: the machines have 2 cores, and two busy processes with 2 threads each thrash
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}


pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py


def micro(**overrides) -> TrainConfig:
    values = dict(progress=False, val_every=0)
    values.update(overrides)
    return make_config('micro', overrides=values)


def weights(run_dir: Path) -> dict:
    return {name: load_file(run_dir / name) for name in ('model.safetensors', 'ema.safetensors')}


def assert_identical(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    for name in wa:
        assert wa[name].keys() == wb[name].keys()
        for k in wa[name]:
            assert torch.equal(wa[name][k], wb[name][k]), f'{name}:{k} differs'
    sa = torch.load(latest_checkpoint(a) / tr.STATE_FILE, weights_only=True)
    sb = torch.load(latest_checkpoint(b) / tr.STATE_FILE, weights_only=True)
    assert sa['step'] == sb['step']
    for i, state in sa['optimizer']['state'].items():
        for k, v in state.items(): assert torch.equal(v, sb['optimizer']['state'][i][k])


def cli(*args, check=True, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([SR3LIT, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=120, **kw)
    if check: assert r.returncode == 0, r.stderr[-2000:]
    return r


# ---------------------------------------------------------------- randomness and data order

@given(n=st.integers(1, 40), per_rank=st.integers(1, 6), world=st.sampled_from([1, 2, 3]), seed=st.integers(0, 2**32))
@settings(max_examples=40, deadline=None)
def test_step_sampler_epochs_and_ranks(n, per_rank, world, seed):
    B = per_rank * world
    whole = StepSampler(n, B, seed)
    ranks = [StepSampler(n, B, seed, rank=r, world_size=world) for r in range(world)]
    steps = -(-3 * n // B)                                 # enough steps for three epochs
    stream = []
    for k in range(steps):
        split = [pair for s in ranks for pair in s.indices(k)]
        assert split == whole.indices(k)                   # ranks partition the global batch, in order
        stream += [i for _, i in whole.indices(k)]
    for e in range(3):                                     # each epoch visits every item exactly once
        assert sorted(stream[e * n:(e + 1) * n]) == list(range(n))


def test_per_sample_draws_do_not_depend_on_the_batch():
    seeds = [derive_seed(3, 'sample', 7, j) for j in range(6)]
    whole = SampleRNG(seeds).randn(3, 4, 4)
    parts = torch.cat([SampleRNG(seeds[i:i + 2]).randn(3, 4, 4) for i in (0, 2, 4)])
    assert torch.equal(whole, parts)
    assert not torch.equal(whole[0], whole[1])


def test_seed_global_rngs_gives_the_streams_of_the_usual_seeding():
    # the CPU stream is torch.manual_seed's (runs trained before keep their draws), Python's and NumPy's are theirs
    import random
    draws = lambda: (torch.rand(4), torch.randn(3), np.random.rand(2), random.random())
    tr.seed_global_rngs(12345); ours = draws()
    torch.manual_seed(12345); np.random.seed(12345); random.seed(12345); usual = draws()
    tr.seed_global_rngs(12346); other = draws()
    for a, b, c in zip(ours, usual, other):
        assert np.array_equal(np.asarray(a), np.asarray(b)) and not np.array_equal(np.asarray(a), np.asarray(c))


# ---------------------------------------------------------------- exact resume, seeds, NaN

class _Tiny(torch.utils.data.Dataset):
    "5 items: every batch of 4 straddles an epoch boundary sooner or later; augments with the global generator."
    def __init__(self): self.hr = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    def __len__(self): return 5
    def __getitem__(self, i):
        hr = self.hr[i].flip(-1) if torch.rand(()) < 0.5 else self.hr[i]
        return {'HR': hr, 'x_up': hr.mean(0, keepdim=True).expand(3, 8, 8).clone()}


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.drop = nn.Conv2d(6, 3, 3, padding=1), nn.Dropout(0.3)
    def forward(self, x, level): return self.drop(self.conv(x)) * level.view(-1, 1, 1, 1)


def _fit_toy(run_dir, steps, seed=0):
    torch.manual_seed(0)
    cfg = micro(max_steps=steps, checkpoint_every=3, seed=seed, n_timestep=100)
    return fit(_Net(), DiffusionObjective(cfg.noise_schedule(), 1), _Tiny(), cfg, run_dir)


def test_resume_mid_epoch_is_bit_for_bit(tmp_path):
    _fit_toy(tmp_path / 'a', 11)
    first = _fit_toy(tmp_path / 'b', 4)                    # checkpoints at 3 and 4, mid-epoch (20 positions / 5 items)
    second = _fit_toy(tmp_path / 'b', 11)
    assert (first.step, second.resumed_from, second.step) == (4, 4, 11)
    assert_identical(tmp_path / 'a', tmp_path / 'b')
    steps = [int(r['step']) for r in tr.read_csv_log(tmp_path / 'b' / 'metrics.csv')]
    assert steps == list(range(1, 12))                     # no step lost or logged twice
    header = (tmp_path / 'b' / 'metrics.csv').read_text().splitlines()[0]
    assert header == 'step,loss,lr,images_per_s,grad_norm,elapsed_s'


def test_resume_of_the_unet_with_dropout_and_ema(tmp_path):
    cfg = micro(max_steps=6, checkpoint_every=2, dropout=0.1, ema_start=2)
    train(cfg, tmp_path / 'a')
    train(dataclasses.replace(cfg, max_steps=3), tmp_path / 'b')
    assert train(cfg, tmp_path / 'b').resumed_from == 3
    assert_identical(tmp_path / 'a', tmp_path / 'b')


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    _fit_toy(tmp_path / 'a', 3); _fit_toy(tmp_path / 'b', 3); _fit_toy(tmp_path / 'c', 3, seed=1)
    assert_identical(tmp_path / 'a', tmp_path / 'b')
    wa, wc = weights(tmp_path / 'a'), weights(tmp_path / 'c')
    assert not torch.equal(wa['model.safetensors']['conv.weight'], wc['model.safetensors']['conv.weight'])


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = micro(max_steps=10, checkpoint_every=3)
    model = build_model(cfg)
    calls = {'n': 0}
    def poison(module, args, output):                      # NaN from the 5th forward pass on
        calls['n'] += 1
        return output * float('nan') if calls['n'] >= 5 else output
    model.register_forward_hook(poison)
    train_data, _ = open_datasets(cfg)
    with pytest.raises(NonFiniteLossError, match='step 5.*last good checkpoint \\(step 3\\)'):
        fit(model, tr.get_method('sr3').make_objective(cfg), train_data, cfg, tmp_path / 'nan')   # what train() fits
    assert checkpoint_steps(tmp_path / 'nan') == [3]
    train(dataclasses.replace(cfg, max_steps=3), tmp_path / 'good')
    good, kept = weights(tmp_path / 'good'), weights(tmp_path / 'nan')
    for k, v in good['model.safetensors'].items(): assert torch.equal(v, kept['model.safetensors'][k])
    assert all(r['step'] <= 4 for r in tr.read_csv_log(tmp_path / 'nan' / 'metrics.csv'))


def test_nan_in_the_cli_is_one_line_and_status_1(tmp_path, monkeypatch, capsys):
    from sr3lit.cli import main
    def explode(cfg, run_dir, **kw): raise NonFiniteLossError('the loss became nan at step 7; training stopped.')
    monkeypatch.setattr(tr, 'train', explode)
    assert main(['train', '--preset', 'micro', '--out', str(tmp_path / 'x')]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'nan at step 7' in err[0]


# ---------------------------------------------------------------- checkpoints

def test_a_crash_while_committing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    net = nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    save_checkpoint(tmp_path, 1, net, opt)
    before = (tmp_path / 'model.safetensors').read_bytes()
    with torch.no_grad(): net.weight.add_(1)
    real_replace = os.replace
    def crash_on_commit(src, dst):
        if Path(dst).name.startswith('step-'): raise KeyboardInterrupt   # killed at the commit
        return real_replace(src, dst)
    monkeypatch.setattr(os, 'replace', crash_on_commit)
    with pytest.raises(KeyboardInterrupt): save_checkpoint(tmp_path, 2, net, opt)
    monkeypatch.setattr(os, 'replace', real_replace)
    assert checkpoint_steps(tmp_path) == [1] and latest_checkpoint(tmp_path).name == 'step-00000001'
    assert (tmp_path / 'model.safetensors').read_bytes() == before
    state = tr.load_checkpoint(latest_checkpoint(tmp_path), nn.Linear(3, 2))
    assert state['step'] == 1


def test_keep_checkpoints_and_exported_copies(tmp_path):
    net = nn.Linear(3, 2)
    for step in (1, 2, 3): save_checkpoint(tmp_path, step, net, keep=2)
    assert checkpoint_steps(tmp_path) == [2, 3]
    top, inside = tmp_path / 'model.safetensors', latest_checkpoint(tmp_path) / 'model.safetensors'
    assert not os.path.samefile(top, inside) and top.read_bytes() == inside.read_bytes()   # issue 14 case 4: copies, not links


# ---------------------------------------------------------------- configuration

@pytest.mark.parametrize('name', list(tr.PRESETS))
def test_every_preset_round_trips_through_json(name):
    cfg = make_config(name)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_report_and_reference_presets():
    dog, faces = make_config('afhq-dog-16-128'), make_config('faces-16-128')
    # the report: L1, T=2000, linear 1e-6..1e-2, Adam at a constant 1e-5, 16->128
    assert (dog.loss_p, dog.n_timestep, dog.linear_start, dog.linear_end) == (1, 2000, 1e-6, 1e-2)
    assert (dog.optimizer, dog.lr, dog.warmup_steps, dog.lr_size, dog.hr_size) == ('adam', 1e-5, 0, 16, 128)
    # the reference's config/sr_sr3_16_128.json
    assert (faces.lr, faces.batch_size, faces.ema_decay, faces.ema_start, faces.max_steps) == (1e-4, 4, 0.9999, 5000, 1_000_000)
    from sr3lit.unet import UNet, count_parameters
    with torch.device('meta'): assert count_parameters(UNet(**faces.unet_kwargs())) == 97_807_491


def test_overrides_are_typed_and_checked():
    cfg = make_config('tiny', overrides=['lr=5e-4', 'channel_mults=[1, 2]', 'attn_res=', 'hflip=no', 'adam_betas=0.5,0.9'])
    assert (cfg.lr, cfg.channel_mults, cfg.attn_res, cfg.hflip, cfg.adam_betas) == (5e-4, (1, 2), (), False, (0.5, 0.9))
    for bad, message in (('nope=1', "unknown config key 'nope'"), ('batch_size=2.5', 'needs an integer'),
                         ('amp=fp8', "amp must be"), ('hflip=maybe', 'true or false')):
        with pytest.raises(ValueError, match=message): make_config('tiny', overrides=[bad])


# ---------------------------------------------------------------- the commands

@pytest.fixture(scope='module')
def killed_and_resumed(tmp_path_factory):
    "A CLI run SIGKILLed after its checkpoint at step >= 4, then the same command again; and the same run in one go."
    base = tmp_path_factory.mktemp('kill')
    args = ['train', '--preset', 'micro', '--out', base / 'run', '--max-steps', 24, '--checkpoint-every', 2,
            '--set', 'dropout=0.1', '--set', 'val_every=0', '--quiet', '--device', 'cpu']
    proc = subprocess.Popen([SR3LIT, *map(str, args)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None and not any(s >= 4 for s in checkpoint_steps(base / 'run')):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    killed_at = max(checkpoint_steps(base / 'run'))
    resumed = cli(*args)
    train(micro(max_steps=24, checkpoint_every=2, dropout=0.1), base / 'reference')
    return dict(run=base / 'run', reference=base / 'reference', returncode=proc.returncode, killed_at=killed_at,
                stdout=resumed.stdout)


def test_sigkill_then_same_command_gives_the_uninterrupted_weights(killed_and_resumed):
    r = killed_and_resumed
    assert r['returncode'] == -signal.SIGKILL and 4 <= r['killed_at'] < 24
    assert f"continued from step {r['killed_at']}" in r['stdout']
    assert not list((r['run'] / 'checkpoints').glob('.step-*'))          # leftovers of the kill were cleaned
    assert_identical(r['run'], r['reference'])


def test_train_then_sample_writes_pngs_with_the_same_names(killed_and_resumed, tmp_path):
    lr_dir = tmp_path / 'lr'; (lr_dir / 'sub').mkdir(parents=True)
    rng = torch.Generator().manual_seed(0)
    for name, (w, h) in {'a.png': (8, 8), 'b.jpg': (9, 6), 'sub/c.png': (20, 11)}.items():
        Image.fromarray((torch.rand(h, w, 3, generator=rng) * 255).byte().numpy()).save(lr_dir / name)
    out = tmp_path / 'sr'
    r = cli('sample', '--model', killed_and_resumed['run'], '--input', lr_dir, '--out', out, '--steps', 4, '--quiet',
            '--sampler', 'ddim', '--device', 'cpu')
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob('*.png'))
    assert written == ['a.png', 'b.png', 'sub/c.png'], r.stdout
    assert [Image.open(out / n).size for n in written] == [(32, 32), (36, 24), (80, 44)]   # x4, tiled where larger
    summary = json.loads((out / 'sample.json').read_text())
    assert summary['images'] == 3 and summary['steps'] == 4
    # the same seed gives the same images; a single file works as input too
    cli('sample', '--model', killed_and_resumed['run'], '--input', lr_dir / 'a.png', '--out', tmp_path / 'one',
        '--steps', 4, '--quiet', '--sampler', 'ddim', '--device', 'cpu')
    assert (tmp_path / 'one' / 'a.png').read_bytes() == (out / 'a.png').read_bytes()


def test_bad_input_is_one_line(tmp_path, capsys):
    from sr3lit.cli import main
    run = tmp_path / 'run'
    assert main(['train', '--preset', 'micro', '--out', str(run), '--max-steps', '1', '--quiet']) == 0
    capsys.readouterr()
    for argv, message in ((['train', '--preset', 'nope', '--out', str(tmp_path / 'y')], 'unknown preset'),
                          (['train', '--preset', 'micro', '--out', str(tmp_path / 'y'), '--set', 'lrate=1'], "unknown config key 'lrate'"),
                          (['train', '--preset', 'micro', '--out', str(run), '--set', 'lr=0.5'], 'different config'),
                          (['train', '--preset', 'micro', '--out', str(run), '--method', 'gan'], 'unknown method'),
                          (['sample', '--model', str(tmp_path), '--input', str(tmp_path), '--out', str(tmp_path / 'o')], 'neither a run folder'),
                          (['sample', '--model', str(run), '--input', str(tmp_path / 'none'), '--out', str(tmp_path / 'o')], 'does not exist')):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    # a longer run in the same folder continues it
    assert main(['train', '--preset', 'micro', '--out', str(run), '--max-steps', '2', '--quiet']) == 0
    assert 'continued from step 1' in capsys.readouterr().out


def test_ddp_two_cpu_processes_match_one_process(tmp_path):
    steps = 3
    r = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', SR3LIT,
                        'train', '--preset', 'micro', '--out', str(tmp_path / 'ddp'), '--max-steps', str(steps),
                        '--device', 'cpu', '--quiet', '--set', 'val_every=0'],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    state = torch.load(latest_checkpoint(tmp_path / 'ddp') / tr.STATE_FILE, weights_only=True)
    assert state['step'] == steps and state['extra']['world_size'] == 2
    assert len(tr.read_csv_log(tmp_path / 'ddp' / 'metrics.csv')) == steps      # rank 0 alone writes
    train(micro(max_steps=steps), tmp_path / 'one')                               # batch 4 on one process, 2+2 on two
    one, two = weights(tmp_path / 'one'), weights(tmp_path / 'ddp')
    diffs = torch.cat([(two[n][k] - one[n][k]).abs().flatten() for n in one for k in one[n]])
    # the gradients agree to float rounding (the all-reduce sums in another order); Adam divides by sqrt(v), so for
    # a weight whose gradient is ~0 that rounding can move its update by up to ~lr = 1e-3 a step (seen: 3e-4 on a few
    # dozen weights). A batch that differed would change every gradient, and move nearly every weight.
    assert diffs.max() < 1e-3 and (diffs > 1e-6).float().mean() < 0.01, (diffs.max(), (diffs > 1e-6).float().mean())


# ---------------------------------------------------------------- tiling

class _Pointwise(nn.Module):
    "A network that works pixel by pixel, and records the sizes it is called with."
    def __init__(self):
        super().__init__(); self.conv, self.sizes = nn.Conv2d(6, 3, 1), set()
    def forward(self, x, level):
        self.sizes.add(tuple(x.shape[-2:]))
        return torch.tanh(self.conv(x)) + level.view(-1, 1, 1, 1)


@given(h=st.integers(1, 70), w=st.integers(1, 70), tile=st.sampled_from([8, 16]), data=st.data())
@settings(max_examples=40, deadline=None)
def test_tiling_is_invisible_to_a_pointwise_network(h, w, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    net = _Pointwise()
    x, level = torch.randn(2, 6, h, w), torch.tensor([0.2, 0.7])
    with torch.no_grad():
        tiled = TiledModel(net, tile, overlap)(x, level)
        assert net.sizes == {(tile, tile)}                  # the network only ever sees whole tiles
        torch.testing.assert_close(tiled, net(x, level), rtol=0, atol=1e-5)


def test_tiled_unet_on_an_image_larger_than_its_crops():
    cfg = micro()
    net = build_model(cfg).eval()
    x, level = torch.randn(1, 6, 80, 48), torch.tensor([0.5])
    with torch.no_grad():
        out = TiledModel(net, 32, 8)(x, level)
        assert out.shape == (1, 3, 80, 48) and torch.isfinite(out).all()
        crop = x[..., :32, :32]
        assert torch.equal(TiledModel(net, 32, 8)(crop, level), net(crop, level))   # one tile: the network itself


def test_sigterm_writes_a_checkpoint_and_the_run_continues_exactly(tmp_path):
    cfg = micro(max_steps=8, checkpoint_every=100, dropout=0.1)
    train(cfg, tmp_path / 'a')
    model = build_model(cfg)
    calls = {'n': 0}
    def preempt(module, args, output):                     # the cluster says stop during step 3
        calls['n'] += 1
        if calls['n'] == 3: os.kill(os.getpid(), signal.SIGTERM)
    model.register_forward_hook(preempt)
    train_data, _ = open_datasets(cfg)
    stopped = fit(model, tr.get_method('sr3').make_objective(cfg), train_data, cfg, tmp_path / 'b')   # what train() fits
    assert (stopped.stopped_by, stopped.step, checkpoint_steps(tmp_path / 'b')) == ('SIGTERM', 3, [3])
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL          # the handler was removed again
    assert train(cfg, tmp_path / 'b').resumed_from == 3
    assert_identical(tmp_path / 'a', tmp_path / 'b')


def test_loader_processes_draw_the_same_batches(tmp_path):
    torch.manual_seed(0)
    cfg = micro(max_steps=4, checkpoint_every=4, n_timestep=100, num_workers=2)
    fit(_Net(), DiffusionObjective(cfg.noise_schedule(), 1), _Tiny(), cfg, tmp_path / 'workers')
    _fit_toy(tmp_path / 'main', 4)
    for k, v in weights(tmp_path / 'main')['model.safetensors'].items():
        assert torch.equal(v, weights(tmp_path / 'workers')['model.safetensors'][k])


def test_a_reference_checkpoint_loads_and_samples(tmp_path):
    cfg = micro()
    net = build_model(cfg)
    state = {f'denoise_fn.{k}': v for k, v in net.state_dict().items()}
    state['betas'] = torch.from_numpy(cfg.noise_schedule().betas)        # the reference also saves its schedule
    torch.save(state, tmp_path / 'I10_E1_gen.pth')
    run = load_run(tmp_path / 'I10_E1_gen.pth', reference_config=cfg)
    assert run.step is None and run.method.name == 'sr3'
    for k, v in net.state_dict().items(): assert torch.equal(run.model.state_dict()[k], v)
    x_up = torch.rand(1, 3, 32, 32) * 2 - 1
    assert run.super_resolve(x_up, steps=3, generator=torch.Generator().manual_seed(0)).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match='not a reference'):
        load_run(tmp_path / 'I10_E1_gen.pth')                              # the 16->128 network does not fit it


def test_data_from_a_prepared_folder_or_plain_images(tmp_path):
    from sr3lit import data
    from sr3lit.cli import main
    data.write_embedded(tmp_path / 'root' / 'embedded_8_32', 8, 32, photo_size=64, progress=False)
    cfg = make_config('micro', overrides=dict(data_dir=str(tmp_path / 'root')))
    train_set, val_set = open_datasets(cfg)
    assert type(train_set).__name__ == type(val_set).__name__ == 'PreparedSR' and train_set.split == 'train'
    photos = tmp_path / 'photos'; (photos / 'train').mkdir(parents=True); (photos / 'test').mkdir()
    for i in range(3): Image.new('RGB', (40, 36), (60 * i, 90, 200)).save(photos / ('test' if i == 2 else 'train') / f'{i}.png')
    assert main(['train', '--preset', 'micro', '--out', str(tmp_path / 'run'), '--data', str(photos), '--max-steps', '2', '--quiet']) == 0
    cfg = load_run(tmp_path / 'run').config
    assert (cfg.dataset, cfg.data_dir) == ('folder', str(photos))
    train_set, val_set = open_datasets(cfg)
    assert (len(train_set), len(val_set)) == (2, 1)
    with pytest.raises(ValueError, match='sr3lit prepare afhq-dog'):
        open_datasets(make_config('afhq-dog-16-128', overrides=dict(data_dir=str(tmp_path / 'nothing'))))



def test_train_photos_choose_what_the_embedded_training_data_is_cut_from(tmp_path):
    from sr3lit import data, images
    from sr3lit.checkpoint import read_run_config
    cfg = make_config('tiny', overrides=dict(train_photos='coffee,quokka'))
    crops, _ = open_datasets(cfg)
    sizes = {tuple(im.shape[1:]) for im in crops.images}                  # every photograph at every scale it is cut at
    for name in ('coffee', 'quokka'):
        w, h = images.embedded_photo(name).size
        for side in (192, 256, 320, 384):                                 # base 8 x 32 times 0.75, 1, 1.25, 1.5
            assert (side, round(w * side / h)) in sizes, (name, side)
    assert len(crops.images) == 8
    one = make_config('tiny', overrides=dict(train_photos='coffee'))
    photo = images.embedded_photo('coffee').resize((384, 256), Image.BICUBIC)    # 600x400 -> shorter side 256
    assert any(torch.equal(im, torch.from_numpy(np.array(photo)).permute(2, 0, 1)) for im in open_datasets(one)[0].images)
    fixed, _ = open_datasets(make_config('tiny', overrides=dict(train_photos='quokka', random_crops=False)))
    assert len(fixed) > 0 and all(n.startswith('quokka_') for n in fixed.names)
    assert make_config('tiny').train_photos == data.EMBEDDED_SPLITS['train'] and 'quokka' in make_config('tiny').train_photos
    # a run made before the setting existed trained without the quokka, and reads so
    values = make_config('micro').to_dict(); values.pop('train_photos')
    (tmp_path / 'config.json').write_text(json.dumps(values))
    assert read_run_config(tmp_path).train_photos == ('astronaut', 'coffee', 'rocket', 'motorcycle', 'china', 'flower', 'camera')
    for bad, message in (('coffee,lena', 'must name embedded photographs'), ('chelsea', 'leave out the test photographs')):
        with pytest.raises(ValueError, match=message): make_config('tiny', overrides=dict(train_photos=bad))


def test_training_without_imgaug_is_one_line(tmp_path, capsys, monkeypatch):
    import importlib.util
    from sr3lit import images
    from sr3lit.cli import main
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'imgaug' else find_spec(name, *a))
    monkeypatch.setattr(images, '_PHOTO_CACHE', {})                  # the quokka as if never read
    tr._embedded_crops.cache_clear(); tr._embedded.cache_clear()
    try:
        assert main(['train', '--preset', 'micro', '--out', str(tmp_path / 'run'), '--max-steps', '1', '--quiet']) == 2
    finally: tr._embedded_crops.cache_clear(); tr._embedded.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install imgaug' in err[0], err
    # without the quokka among its photographs, the same run needs no imgaug
    assert main(['train', '--preset', 'micro', '--out', str(tmp_path / 'run2'), '--max-steps', '1', '--quiet',
                 '--set', 'train_photos=coffee,camera']) == 0

# --- chapter 13: which noise levels the loss teaches (loss_weighting) --------------------------------------------

def _weighting_batch(n=16, size=8):
    g = torch.Generator().manual_seed(3)
    hr = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    return {'HR': hr, 'x_up': hr.flip(-1)}

def _weighting_setup():
    "The report's schedule, a small conv net called as the U-Net is (noise-level dependent), and a batch."
    from sr3lit.schedules import NoiseSchedule
    torch.manual_seed(0)
    net = nn.Conv2d(6, 3, 3, padding=1)
    return NoiseSchedule.make('linear', 2000), (lambda x, level: net(x) * level.view(-1, 1, 1, 1)), _weighting_batch()

@pytest.mark.parametrize('p', [1, 2])
def test_edm_weighting_is_karras_loss_on_the_denoised_estimate(p):
    """'edm' weights the noise error so that it equals Karras et al.'s loss lambda(sigma)*|D - y0|^2 (p=2), or its
    square root's analogue sqrt(lambda)*|D - y0| (p=1), computed here in their variance-exploding variables."""
    sched, model, batch = _weighting_setup()
    seeds = [derive_seed(1, 'sample', j) for j in range(16)]
    obj = DiffusionObjective(sched, p, weighting='edm', sigma_data=0.5)
    loss = obj(model, batch, SampleRNG(seeds)).item()
    level, z = obj.draw(batch, SampleRNG(seeds))
    g = (level ** 2).view(-1, 1, 1, 1)
    y_t = (g.sqrt() * batch['HR'] + (1 - g).sqrt() * z).float()
    with torch.no_grad(): eps_hat = model(torch.cat([batch['x_up'], y_t], 1), level.float()).double()
    d = (y_t.double() - (1 - g).sqrt() * eps_hat) / g.sqrt()               # the denoised estimate D
    sigma2 = (1 - g) / g                                                    # VE noise variance of the same level
    lam = (sigma2 + 0.25) / (sigma2 * 0.25)                                 # Karras et al. (2022), Table 1, sigma_data 0.5
    err = (d - batch['HR'].double()).abs()
    expected = ((lam * err ** 2) if p == 2 else (lam.sqrt() * err)).flatten(1).mean(1).mean().item()
    assert loss == pytest.approx(expected, rel=1e-4)

def test_sr3_weighting_is_algorithm_1_unchanged():
    from sr3lit.loss import diffusion_loss
    sched, model, batch = _weighting_setup()
    seeds = [derive_seed(2, 'sample', j) for j in range(16)]
    obj = DiffusionObjective(sched, 1, weighting='sr3')
    level, z = obj.draw(batch, SampleRNG(seeds))
    direct = diffusion_loss(model, batch['x_up'], batch['HR'], sched, 1, noise=z, noise_level=level)
    assert obj(model, batch, SampleRNG(seeds)).item() == direct.item()
    assert tr.noise_level_weight(level, 'sr3').eq(1).all()
    with pytest.raises(ValueError, match='weighting must be one of'): DiffusionObjective(sched, 1, weighting='snr')

def test_edm_weight_grows_with_noise_and_is_one_without_it():
    levels = torch.tensor([1 - 1e-12, 0.9, 0.5, 0.1, 1e-3], dtype=torch.float64)
    w = tr.noise_level_weight(levels, 'edm', 0.5, 2)
    assert w[0] == pytest.approx(1.0, abs=1e-6)                 # no noise: eps_hat's error is F's
    assert (w.diff() > 0).all()                                 # more noise, more weight
    gamma = levels[-1] ** 2
    assert w[-1].item() == pytest.approx(((gamma * 0.25 + 1 - gamma) / (0.25 * gamma)).item(), rel=1e-12)
    assert tr.noise_level_weight(levels, 'edm', 0.5, 1).pow(2).sub(w).abs().max() < 1e-6 * w.max()

def test_loss_weighting_setting(tmp_path):
    assert TrainConfig().loss_weighting == 'edm' and make_config('afhq-dog-16-128').loss_weighting == 'sr3'
    with pytest.raises(ValueError, match='loss_weighting'): TrainConfig(loss_weighting='uniform')
    from sr3lit.checkpoint import read_run_config
    values = TrainConfig().to_dict(); del values['loss_weighting']
    (tmp_path / 'config.json').write_text(json.dumps(values))
    assert read_run_config(tmp_path).loss_weighting == 'sr3'     # a run made before the setting: Algorithm 1's loss


# --- chapter 13: where the training draws land (lognormal_fraction) -------------------------------------------------

def _log_sigma(level: torch.Tensor) -> torch.Tensor:
    "ln sigma of the variance-exploding view, sigma^2 = (1 - gamma) / gamma, from the network's input sqrt(gamma)."
    g = level.double() ** 2
    return 0.5 * torch.log((1 - g) / g)

def test_lognormal_draw_has_karras_mean_and_spread_inside_the_schedule():
    from sr3lit.schedules import NoiseSchedule
    sched = NoiseSchedule.make('linear', 2000)
    levels = tr.sample_noise_level_lognormal(sched, 100_000, torch.Generator().manual_seed(0), mean=-1.2, std=1.2)
    g = levels ** 2
    assert (g >= sched.gammas[-1] * (1 - 1e-12)).all() and (g <= sched.gammas[0] * (1 + 1e-12)).all()
    ls = _log_sigma(levels)
    core = ls[(ls > -5.5) & (ls < 4.5)]                       # the clamp only moves the far tails (below 2e-4 of the mass)
    assert len(core) > 99_900
    assert core.mean().item() == pytest.approx(-1.2, abs=0.02) and core.std().item() == pytest.approx(1.2, abs=0.02)
    shifted = _log_sigma(tr.sample_noise_level_lognormal(sched, 100_000, torch.Generator().manual_seed(0), mean=0.5, std=0.3))
    assert shifted.mean().item() == pytest.approx(0.5, abs=0.01) and shifted.std().item() == pytest.approx(0.3, abs=0.01)

def test_lognormal_fraction_mixes_the_draws_per_image():
    sched, _, _ = _weighting_setup()
    n = 3000
    batch = {'HR': torch.zeros(n, 3, 1, 1), 'x_up': torch.zeros(n, 3, 1, 1)}
    seeds = [derive_seed(4, 'sample', j) for j in range(n)]
    # a log-normal far from where Algorithm 1 draws (sigma near e^-5 = 0.0067): its share is visible directly
    shares = {}
    for fraction in (0.0, 0.3, 1.0):
        obj = DiffusionObjective(sched, 2, weighting='edm', lognormal=(fraction, -5.0, 0.1))
        shares[fraction] = ((_log_sigma(obj.draw(batch, SampleRNG(seeds))[0]) - (-5.0)).abs() < 0.5).double().mean().item()
    t_near = ((torch.as_tensor(sched.gammas) > 1 / (1 + math.exp(-2 * 4.5))) & (torch.as_tensor(sched.gammas) < 1 / (1 + math.exp(-2 * 5.5))))
    p_alg1 = t_near.double().mean().item()                       # Algorithm 1's own mass in that band (uniform t)
    assert shares[1.0] == 1.0
    assert shares[0.0] == pytest.approx(p_alg1, abs=0.01)
    assert shares[0.3] == pytest.approx(0.3 + 0.7 * p_alg1, abs=5 * math.sqrt(0.3 * 0.7 / n))
    # fraction 0 is Algorithm 1's draw, number for number, whatever the other two settings
    base = DiffusionObjective(sched, 2, weighting='edm').draw(batch, SampleRNG(seeds))
    other = DiffusionObjective(sched, 2, weighting='edm', lognormal=(0.0, 3.0, 2.0)).draw(batch, SampleRNG(seeds))
    assert torch.equal(base[0], other[0]) and torch.equal(base[1], other[1])
    with pytest.raises(ValueError, match='lognormal fraction'): DiffusionObjective(sched, 2, lognormal=(1.5, -1.2, 1.2))

def test_lognormal_setting(tmp_path):
    assert TrainConfig().lognormal_fraction == 0.5 and make_config('afhq-dog-16-128').lognormal_fraction == 0.0
    with pytest.raises(ValueError, match='lognormal_fraction'): TrainConfig(lognormal_fraction=2.0)
    with pytest.raises(ValueError, match='lognormal_std'): TrainConfig(lognormal_std=0.0)
    obj = tr.get_method('sr3').make_objective(make_config('tiny', overrides={'lognormal_fraction': 0.25, 'lognormal_mean': -1.0}))
    assert obj.lognormal == (0.25, -1.0, 1.2)
    from sr3lit.checkpoint import read_run_config
    values = TrainConfig().to_dict()
    for k in ('lognormal_fraction', 'lognormal_mean', 'lognormal_std'): del values[k]
    (tmp_path / 'config.json').write_text(json.dumps(values))
    assert read_run_config(tmp_path).lognormal_fraction == 0.0     # a run made before the setting: Algorithm 1's draw


# --- chapter 13: input perturbation (DDPM-IP) -------------------------------------------------------------------------

@pytest.mark.parametrize('k', [0.0, 0.1, 0.3])
def test_input_perturbation_adds_k_xi_to_the_input_noise_and_keeps_z_as_the_target(k):
    sched, _, _ = _weighting_setup()
    n = 2000
    batch = {'HR': torch.zeros(n, 3, 1, 1, dtype=torch.float64), 'x_up': torch.zeros(n, 3, 1, 1, dtype=torch.float64)}
    seeds = [derive_seed(5, 'sample', j) for j in range(n)]
    # with y0 = 0, y_t = sqrt(1 - g) (z + k xi): a network that reads the noise off its input errs by exactly k xi
    read_noise = lambda x, level: x[:, 3:] / (1 - level.double().view(-1, 1, 1, 1) ** 2).sqrt()
    loss = DiffusionObjective(sched, 2, weighting='sr3', input_perturbation=k)(read_noise, batch, SampleRNG(seeds)).item()
    if k == 0: assert loss < 1e-20
    else: assert loss == pytest.approx(k ** 2, abs=5 * k ** 2 * math.sqrt(2 / (3 * n)))      # E (k xi)^2 = k^2
    # the levels and z are those of Algorithm 1 whatever k is
    plain = DiffusionObjective(sched, 2, weighting='edm').draw(batch, SampleRNG(seeds))
    other = DiffusionObjective(sched, 2, weighting='edm', input_perturbation=k).draw(batch, SampleRNG(seeds))
    assert torch.equal(plain[0], other[0]) and torch.equal(plain[1], other[1])


def test_input_perturbation_setting(tmp_path):
    assert TrainConfig().input_perturbation == 0.0
    with pytest.raises(ValueError, match='input_perturbation'): TrainConfig(input_perturbation=-0.1)
    with pytest.raises(ValueError, match='input_perturbation'): DiffusionObjective(None, 2, input_perturbation=-1.0)
    obj = tr.get_method('sr3').make_objective(make_config('tiny', overrides={'input_perturbation': 0.1}))
    assert obj.input_perturbation == 0.1 and 'input_perturbation=0.1' in repr(obj)
    from sr3lit.checkpoint import read_run_config
    values = TrainConfig().to_dict()
    del values['input_perturbation']
    (tmp_path / 'config.json').write_text(json.dumps(values))
    assert read_run_config(tmp_path).input_perturbation == 0.0     # a run made before the setting: Algorithm 1


def test_the_tiny_datasets_travel_to_spawned_loader_processes():
    # the tiny preset loads in a worker process; where processes are spawned (macOS, Windows) the dataset is pickled
    import pickle
    from sr3lit.training import StepSeededDataset, open_datasets
    cfg = make_config('tiny')
    assert cfg.num_workers >= 1 and make_config('micro').num_workers == 0
    train_data, val_data = open_datasets(cfg)
    for data in (train_data, val_data):
        wrapped = StepSeededDataset(data, seed=3)
        copy = pickle.loads(pickle.dumps(wrapped))
        a, b = wrapped[(5, 1, 2)], copy[(5, 1, 2)]
        assert a.keys() == b.keys() and {'HR', 'x_up', 'LR'} <= a.keys()
        for k, v in a.items():
            assert torch.equal(v, b[k]) if torch.is_tensor(v) else v == b[k]


def test_a_channels_last_run_trains_saves_and_samples_in_its_layout(tmp_path):
    cfg = micro(max_steps=3, checkpoint_every=3, n_timestep=20, channels_last=True)
    train(cfg, tmp_path / 'nhwc')
    run = load_run(tmp_path / 'nhwc')
    convs = [m.weight for m in run.model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    saved = load_file(tmp_path / 'nhwc' / 'ema.safetensors')                 # the files hold the same weights, in any layout
    for k, v in run.model.state_dict().items(): assert torch.equal(v, saved[k])
    x_up = torch.rand(2, 3, 32, 32) * 2 - 1
    nhwc = run.super_resolve(x_up, steps=5, generator=torch.Generator().manual_seed(1))
    run.model.to(memory_format=torch.contiguous_format)
    nchw = run.super_resolve(x_up, steps=5, generator=torch.Generator().manual_seed(1))
    assert (nhwc - nchw).abs().max() < 1e-4                                   # the layout changes float rounding only


def test_fit_runs_each_step_on_the_threads_it_is_given_and_restores_them(tmp_path, monkeypatch):
    seen, step = [], tr.optimisation_step
    def recording(s, *args, **kwargs):
        seen.append((s.step, torch.get_num_threads()))
        return step(s, *args, **kwargs)
    monkeypatch.setattr(tr, 'optimisation_step', recording)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        train(micro(max_steps=5), tmp_path / 'r', threads=lambda step: 1 if step < 3 else 2)
        assert seen == [(0, 1), (1, 1), (2, 1), (3, 2), (4, 2)]
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)                           # restored also when the plan ends on another count
        train(micro(max_steps=7), tmp_path / 'r', threads=lambda step: 2)
        assert seen[5:] == [(5, 2), (6, 2)] and torch.get_num_threads() == 1
    finally: torch.set_num_threads(before)
