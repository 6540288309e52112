"The one-step regression baseline (sr3lit.regression) as a second method of the trainer and the commands."
import dataclasses

import pytest
import torch
from hypothesis import given, settings, strategies as st
from PIL import Image

from sr3lit.regression import RegressionObjective, regression_predict
from sr3lit.config import make_config
from sr3lit.inference import load_run
from sr3lit.training import get_method


pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py


@given(p=st.sampled_from([1, 2]), b=st.integers(1, 4), seed=st.integers(0, 1000))
@settings(max_examples=20, deadline=None)
def test_objective_is_the_mean_p_error_of_the_prediction(p, b, seed):
    g = torch.Generator().manual_seed(seed)
    hr, up = torch.rand(b, 3, 4, 4, generator=g) * 2 - 1, torch.rand(b, 3, 4, 4, generator=g) * 2 - 1
    weight = torch.rand(3, 3, generator=g)
    model = lambda x, level: torch.einsum('oc,bchw->bohw', weight, x) + level.view(-1, 1, 1, 1)
    prediction = torch.einsum('oc,bchw->bohw', weight, up)                       # the noise level is 0
    expected = ((prediction - hr).abs() ** p).mean()
    torch.testing.assert_close(RegressionObjective(p)(model, {'x_up': up, 'HR': hr}), expected)
    torch.testing.assert_close(regression_predict(model, up), prediction.clamp(-1, 1))


def test_configure_drops_the_noisy_image_channels():
    method = get_method('regression')
    assert method.configure(make_config('afhq-dog-16-128')).in_channel == 3
    with pytest.raises(ValueError, match='in_channel must be 3'):
        method.configure(dataclasses.replace(make_config('micro'), in_channel=5))


def test_train_and_sample_with_the_commands(tmp_path, capsys):
    from sr3lit.cli import main
    run = tmp_path / 'run'
    assert main(['train', '--preset', 'micro', '--method', 'regression', '--out', str(run), '--max-steps', '4',
                 '--quiet', '--set', 'loss_p=2']) == 0
    loaded = load_run(run)
    assert (loaded.method.name, loaded.config.in_channel, loaded.config.loss_p, loaded.step) == ('regression', 3, 2, 4)
    assert loaded.model.in_channel == 3
    lr_dir = tmp_path / 'lr'; lr_dir.mkdir()
    Image.new('RGB', (8, 8), (200, 30, 90)).save(lr_dir / 'x.png')
    assert main(['sample', '--model', str(run), '--input', str(lr_dir), '--out', str(tmp_path / 'sr'), '--samples', '2', '--quiet']) == 0
    a, b = (Image.open(tmp_path / 'sr' / f'x_{k}.png') for k in (0, 1))
    assert a.size == (32, 32) and a.tobytes() == b.tobytes()                    # one step: deterministic
    # the same folder cannot continue as the other method
    capsys.readouterr()
    assert main(['train', '--preset', 'micro', '--out', str(run), '--max-steps', '5', '--quiet']) == 2
    assert 'different config' in capsys.readouterr().err


def test_regression_never_preconditions():
    "Without y_t, preconditioning would pass x_up straight through (c_skip = 1, c_out = 0 at sqrt(gamma) = 0)."
    from sr3lit.training import build_model
    cfg = get_method('regression').configure(make_config('tiny', overrides={'precondition': True}))
    assert not cfg.precondition
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    x_up = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad(): assert not torch.allclose(regression_predict(model, x_up), x_up)
