"""Tests of sr3lit.unet: the SR3 U-Net against an independent functional re-implementation, the reference
checkpoint's layout, the checkpoint loader, shapes, gradients and input validation."""
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from sr3lit.unet import (UNET_PRESETS, NoiseLevelEncoding, SelfAttention, UNet, count_parameters, load_janspiry,
                         unet_from_preset, unet_summary)

MANIFEST = json.loads((Path(__file__).parent / 'reference' / 'janspiry_sr3_16_128_state_dict.json').read_text())
PREFIX = 'denoise_fn.'


pytestmark = pytest.mark.usefixtures('one_thread')   # tests/conftest.py


SMALL = dict(inner_channel=8, norm_groups=4, channel_mults=(1, 2), attn_res=(8,), res_blocks=2, dropout=0.2,
             image_size=16)


# ---------------------------------------------------------------------------------------------------------------
# An independent re-implementation: plain functions applied to the state-dict tensors, following the layer plan of
# the reference implementation (Janspiry/Image-Super-Resolution-via-Iterative-Refinement, model/sr3_modules/unet.py)
# as documented there, not the module code under test.

def layer_plan(cfg):
    "The reference's layer sequence: ('conv'|'res'|'down'|'up', in_ch, out_ch, with_attn) for downs, mid, ups."
    c, mults, res = cfg['inner_channel'], cfg['channel_mults'], cfg['image_size']
    attn_res = cfg['attn_res']
    downs, skips, ch = [('conv', cfg['in_channel'], c, False)], [c], c
    for i, m in enumerate(mults):
        for _ in range(cfg['res_blocks']):
            downs.append(('res', ch, c * m, res in attn_res)); ch = c * m; skips.append(ch)
        if i < len(mults) - 1:
            downs.append(('down', ch, ch, False)); skips.append(ch); res //= 2
    mid = [('res', ch, ch, True), ('res', ch, ch, False)]
    ups = []
    for i in reversed(range(len(mults))):
        for _ in range(cfg['res_blocks'] + 1):
            ups.append(('res', ch + skips.pop(), c * mults[i], res in attn_res)); ch = c * mults[i]
        if i > 0:
            ups.append(('up', ch, ch, False)); res *= 2
    return downs, mid, ups


def functional_unet(sd, cfg, x, noise_level, film=False, noise_scale=1.0):
    G = cfg['norm_groups']

    def group_norm(h, p): return F.group_norm(h, G, sd[p + '.weight'], sd[p + '.bias'], eps=1e-5)
    def swish(h): return h * torch.sigmoid(h)
    def linear(e, p): return e @ sd[p + '.weight'].T + sd[p + '.bias']
    def conv(h, p, **kw): return F.conv2d(h, sd[p + '.weight'], sd.get(p + '.bias'), **kw)
    def block(h, p): return conv(swish(group_norm(h, p + '.block.0')), p + '.block.3', padding=1)

    def resnet(h, e, p, c_in, c_out):
        a = block(h, p + '.block1')
        cond = linear(e, p + '.noise_func.noise_func.0')
        if film:
            a = a * (1 + cond[:, :c_out, None, None]) + cond[:, c_out:, None, None]
        else:
            a = a + cond[:, :, None, None]
        a = block(a, p + '.block2')
        return a + (conv(h, p + '.res_conv') if c_in != c_out else h)

    def attention(h, p):
        B, C, H, W = h.shape
        qkv = conv(group_norm(h, p + '.norm'), p + '.qkv').reshape(B, 3 * C, H * W)
        q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
        logits = torch.einsum('bcn,bcm->bnm', q, k) / math.sqrt(C)
        weights = torch.exp(logits - logits.amax(-1, keepdim=True))
        weights = weights / weights.sum(-1, keepdim=True)            # softmax over the key positions m
        out = torch.einsum('bnm,bcm->bcn', weights, v).reshape(B, C, H, W)
        return conv(out, p + '.out') + h

    def unit(h, e, p, spec):
        _, c_in, c_out, with_attn = spec
        h = resnet(h, e, p + '.res_block', c_in, c_out)
        return attention(h, p + '.attn') if with_attn else h

    half = cfg['inner_channel'] // 2
    freqs = torch.exp(-math.log(1e4) * torch.arange(half, dtype=torch.float32) / half)
    angles = noise_scale * noise_level[:, None] * freqs[None]
    e = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    e = linear(swish(linear(e, 'noise_level_mlp.1')), 'noise_level_mlp.3')

    downs, mid, ups = layer_plan(cfg)
    skips = []
    for i, spec in enumerate(downs):
        if spec[0] == 'conv': x = conv(x, f'downs.{i}', padding=1)
        elif spec[0] == 'down': x = conv(x, f'downs.{i}.conv', stride=2, padding=1)
        else: x = unit(x, e, f'downs.{i}', spec)
        skips.append(x)
    for i, spec in enumerate(mid): x = unit(x, e, f'mid.{i}', spec)
    for i, spec in enumerate(ups):
        if spec[0] == 'up': x = conv(F.interpolate(x, scale_factor=2, mode='nearest'), f'ups.{i}.conv', padding=1)
        else: x = unit(torch.cat([x, skips.pop()], dim=1), e, f'ups.{i}', spec)
    return block(x, 'final_conv')


def randomized(model, seed=0, std=0.2):
    "Give every parameter (norm scales included) random values so that no term can hide behind a default init."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters(): p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def full_cfg(**kw):
    cfg = dict(in_channel=6, out_channel=3, **SMALL)
    cfg.update(kw)
    return cfg


@pytest.mark.parametrize('kw,film,scale,impl,batch', [
    (dict(), False, 1.0, 'sdpa', 3),
    (dict(), False, 1.0, 'auto', 2),
    (dict(), False, 1.0, 'explicit', 1),
    (dict(), True, 1.0, 'sdpa', 2),
    (dict(), True, 1000.0, 'explicit', 2),
    (dict(channel_mults=(1, 2, 2), attn_res=(8, 16), res_blocks=1, image_size=32, dropout=0.0), False, 1000.0, 'sdpa', 2),
    (dict(in_channel=3, out_channel=1, channel_mults=(1, 1, 2), attn_res=(4,), res_blocks=1), True, 5000.0, 'sdpa', 2),
])
def test_matches_functional_reference(kw, film, scale, impl, batch):
    cfg = full_cfg(**kw)
    model = randomized(UNet(**cfg, use_affine_level=film, noise_scale=scale, attn_impl=impl)).eval()
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    torch.manual_seed(1)
    size = cfg['image_size']
    x, nl = torch.randn(batch, cfg['in_channel'], size, size), torch.rand(batch)
    with torch.no_grad():
        ours = model(x, nl)
        ref = functional_unet(sd, cfg, x, nl, film=film, noise_scale=scale)
    assert ours.shape == (batch, cfg['out_channel'], size, size)
    assert ref.abs().max() > 0.1                       # a non-trivial output
    assert torch.allclose(ours, ref, atol=1e-5, rtol=1e-5), (ours - ref).abs().max()


def test_reference_parameter_count_and_layout():
    with torch.device('meta'):
        model = UNet()
    assert count_parameters(model) == MANIFEST['n_params'] == 97_807_491
    expected = {k[len(PREFIX):]: tuple(v) for k, v in MANIFEST['state_dict_shapes'].items() if k.startswith(PREFIX)}
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == expected


def test_reference_preset_is_the_manifest_config():
    cfg = MANIFEST['config']
    preset = UNET_PRESETS['sr3-16-128']
    assert tuple(preset['channel_mults']) == tuple(cfg['channel_multiplier'])
    for key in ('in_channel', 'out_channel', 'inner_channel', 'norm_groups', 'res_blocks', 'dropout', 'image_size'):
        assert preset[key] == cfg[key], key
    assert tuple(preset['attn_res']) == tuple(cfg['attn_res'])


@pytest.fixture(scope='module')
def manifest_checkpoint():
    "A state dict with the reference's key names and shapes: random tensors, schedule buffers included."
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(tuple(shape), generator=g) * 0.02 for k, shape in MANIFEST['state_dict_shapes'].items()}


def test_load_janspiry_fills_every_parameter(manifest_checkpoint):
    model, buffers = load_janspiry(manifest_checkpoint, return_buffers=True)
    assert not model.training
    assert set(buffers) == {k for k in manifest_checkpoint if not k.startswith(PREFIX)}
    assert 'betas' in buffers
    state = model.state_dict()
    assert len(state) == sum(k.startswith(PREFIX) for k in manifest_checkpoint)
    for k, v in state.items():
        assert v.device.type == 'cpu' and torch.equal(v, manifest_checkpoint[PREFIX + k]), k
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        out = model(torch.randn(1, 6, 16, 16), torch.tensor([0.5]))
    assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()


@pytest.mark.parametrize('edit,message', [
    ('remove', "missing key 'denoise_fn.ups.4.attn.qkv.weight'"),
    ('extra', "unexpected key 'denoise_fn.ups.4.attn.extra'"),
    ('shape', "'denoise_fn.ups.4.attn.qkv.weight' has shape (1536, 512) but UNet("),
])
def test_load_janspiry_rejects_a_mismatched_file(manifest_checkpoint, edit, message):
    broken = dict(manifest_checkpoint)
    key = PREFIX + 'ups.4.attn.qkv.weight'
    if edit == 'remove': del broken[key]
    elif edit == 'extra': broken[PREFIX + 'ups.4.attn.extra'] = torch.zeros(1)
    else: broken[key] = torch.zeros(1536, 512)
    with pytest.raises(ValueError) as err:
        load_janspiry(broken)
    assert message in str(err.value)
    if edit == 'shape': assert '(1536, 512, 1, 1)' in str(err.value)


def test_load_janspiry_from_a_path_and_with_another_config(tmp_path):
    cfg = dict(inner_channel=8, norm_groups=4, channel_mults=(1, 2), attn_res=(8,), res_blocks=1, image_size=16)
    source = randomized(UNet(**cfg, dropout=0.0)).eval()
    path = tmp_path / 'I1000_E1_gen.pth'
    torch.save({'betas': torch.linspace(1e-6, 1e-2, 10), **{PREFIX + k: v for k, v in source.state_dict().items()}}, path)
    loaded = load_janspiry(str(path), **cfg)
    x, nl = torch.randn(2, 6, 16, 16), torch.rand(2)
    with torch.no_grad():
        assert torch.equal(loaded(x, nl), source(x, nl))
    bare = load_janspiry(source.state_dict(), **cfg)          # a bare UNet state dict (no prefix) loads too
    with torch.no_grad():
        assert torch.equal(bare(x, nl), source(x, nl))
    with pytest.raises(ValueError, match='noise_level_mlp.1.weight'):   # right file, wrong (default) configuration
        load_janspiry(path)
    with pytest.raises(TypeError, match='path or a state dict'):
        load_janspiry(42)


@pytest.mark.parametrize('size,kw', [
    (16, dict(channel_mults=(1, 2), attn_res=(8,))),
    (32, dict(channel_mults=(1, 2, 2), attn_res=(8,), use_affine_level=True)),
    (64, dict(channel_mults=(1, 2, 2, 2), attn_res=(16, 8), noise_scale=1000.0)),
    (32, dict(channel_mults=(1,), attn_res=())),
])
@pytest.mark.parametrize('batch', [1, 3])
def test_output_shapes(size, kw, batch):
    model = UNet(inner_channel=8, norm_groups=4, res_blocks=1, dropout=0.1, image_size=size, **kw)
    out = model(torch.randn(batch, 6, size, size), torch.rand(batch))
    assert out.shape == (batch, 3, size, size)
    # convolutional: other (non-square) sizes divisible by 2**(levels-1) work too
    f = 2 ** (len(kw['channel_mults']) - 1)
    assert model(torch.randn(batch, 6, 2 * f, 3 * f), torch.rand(batch)).shape == (batch, 3, 2 * f, 3 * f)


def test_attention_placement():
    model = UNet(inner_channel=8, norm_groups=4, channel_mults=(1, 2, 2), attn_res=(8,), res_blocks=1, image_size=32)
    attn = lambda layers: [getattr(l, 'with_attn', None) for l in layers]
    # downs: conv, res@32, down, res@16, down, res@8(attn); ups: 2x res@8(attn), up, 2x res@16, up, 2x res@32
    assert attn(model.downs) == [None, False, None, False, None, True]
    assert attn(model.mid) == [True, False]
    assert attn(model.ups) == [True, True, None, False, False, None, False, False]


@pytest.mark.parametrize('film', [False, True])
def test_gradients_reach_every_parameter(film):
    torch.manual_seed(0)
    model = UNet(inner_channel=8, norm_groups=4, channel_mults=(1, 2), attn_res=(8,), res_blocks=1, dropout=0.1,
                 image_size=16, use_affine_level=film)
    loss = model(torch.randn(2, 6, 16, 16), torch.rand(2)).square().mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_bad_inputs_give_clear_errors():
    model = UNet(**SMALL)
    x = torch.randn(2, 6, 16, 16)
    for bad in (torch.rand(3), torch.rand(2, 2), torch.rand(1, 2), torch.rand(2, 1, 1), torch.tensor(0.5)):
        with pytest.raises(ValueError, match=r'noise_level must have shape \(2,\)'):
            model(x, bad)
    with pytest.raises(TypeError, match='noise_level must be a tensor'):
        model(x, 0.5)
    with pytest.raises(ValueError, match='in_channel=6'):
        model(x[:, :3], torch.rand(2))
    with pytest.raises(ValueError, match='divisible by 2'):
        model(x[..., :15, :16], torch.rand(2))
    with pytest.raises(ValueError, match=r'\(B, 6, H, W\)'):
        model(x[0], torch.rand(2))
    assert torch.equal(model.eval()(x, torch.full((2, 1), 0.3)), model(x, torch.full((2,), 0.3)))  # (B, 1) accepted
    assert model(x, torch.full((2,), 0.3, dtype=torch.float64)).dtype == torch.float32


@pytest.mark.parametrize('kw,message', [
    (dict(inner_channel=24, norm_groups=32), 'norm_groups=32'),
    (dict(inner_channel=7, norm_groups=1), 'even'),
    (dict(channel_mults=()), 'channel_mults'),
    (dict(image_size=100), 'image_size=100'),
    (dict(dropout=1.0), 'dropout'),
    (dict(attn_impl='flash'), 'attn_impl'),
])
def test_bad_config_gives_clear_errors(kw, message):
    with pytest.raises(ValueError, match=message):
        UNet(**kw)


def test_channels_last_gives_the_same_output():
    model = randomized(UNet(**SMALL)).eval()
    x, nl = torch.randn(2, 6, 16, 16), torch.rand(2)
    with torch.no_grad():
        expected = model(x, nl)
        assert torch.allclose(model(x.to(memory_format=torch.channels_last), nl), expected, atol=1e-5, rtol=1e-5)
        model = model.to(memory_format=torch.channels_last)
        assert torch.allclose(model(x.to(memory_format=torch.channels_last), nl), expected, atol=1e-5, rtol=1e-5)


def test_sdpa_equals_explicit_softmax():
    torch.manual_seed(0)
    att = SelfAttention(64, norm_groups=32, attn_impl='sdpa')
    x = torch.randn(2, 64, 16, 16) * 3
    with torch.no_grad():
        fused = att(x)
        att.attn_impl = 'explicit'
        assert torch.allclose(fused, att(x), atol=1e-5)


def test_dropout_only_in_training():
    model = randomized(UNet(**SMALL))
    x, nl = torch.randn(2, 6, 16, 16), torch.rand(2)
    with torch.no_grad():
        assert not torch.equal(model.train()(x, nl), model(x, nl))
        assert torch.equal(model.eval()(x, nl), model(x, nl))


def test_each_image_depends_only_on_its_own_inputs():
    model = randomized(UNet(**SMALL)).eval()
    x, nl = torch.randn(3, 6, 16, 16), torch.tensor([0.1, 0.6, 0.99])
    with torch.no_grad():
        batch = model(x, nl)
        for i in range(3):
            assert torch.allclose(model(x[i:i + 1], nl[i:i + 1]), batch[i:i + 1], atol=1e-5)
        assert not torch.allclose(model(x, nl.flip(0)), batch, atol=1e-3)   # the noise level is used


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=5), st.sampled_from([2, 8, 64]),
       st.sampled_from([1.0, 1000.0]))
def test_noise_level_encoding_properties(levels, dim, scale):
    g = torch.tensor(levels, dtype=torch.float64)
    pe = NoiseLevelEncoding(dim, scale)(g)
    assert pe.shape == (len(levels), dim)
    half = dim // 2
    assert torch.allclose(pe[:, :half] ** 2 + pe[:, half:] ** 2, torch.ones(len(levels), half, dtype=torch.float64))
    # feature k oscillates at frequency scale * 1e4**(-k/half); feature 0 is sin(scale * g)
    assert torch.allclose(pe[:, 0], torch.sin(scale * g)) and torch.allclose(pe[:, half], torch.cos(scale * g))
    assert torch.allclose(pe, NoiseLevelEncoding(dim, 1.0)(scale * g))


def test_count_parameters_and_summary():
    model = UNet(**SMALL)
    n = sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == n
    for p in model.noise_level_mlp.parameters(): p.requires_grad_(False)
    frozen = sum(p.numel() for p in model.noise_level_mlp.parameters())
    assert count_parameters(model, trainable_only=True) == n - frozen
    table = unet_summary(model)
    assert f'{n:,}' in table.splitlines()[-1]
    assert '(1, 3, 16, 16)' in table and 'ResnetBlock+attn' in table
    assert len(table.splitlines()) == 1 + 1 + len(model.downs) + len(model.mid) + len(model.ups) + 1 + 1


def test_presets():
    with torch.device('meta'):
        counts = {name: count_parameters(unet_from_preset(name)) for name in UNET_PRESETS}
    assert counts['sr3-16-128'] == 97_807_491
    assert 1_000_000 <= counts["tiny"] <= 1_200_000 and counts["micro"] < counts["tiny"]
    model = unet_from_preset('tiny', dropout=0.0)
    size = UNET_PRESETS['tiny']['image_size']
    assert model(torch.randn(2, 6, size, size), torch.rand(2)).shape == (2, 3, size, size)
    with pytest.raises(ValueError, match='unknown UNet preset'):
        unet_from_preset('huge')


# ---------------------------------------------------------------- output preconditioning

@given(sqrt_gamma=st.floats(0.0, 1.0), sigma_data=st.floats(0.1, 2.0))
@settings(max_examples=30, deadline=None)
def test_precondition_coefficients_are_the_best_linear_predictor(sqrt_gamma, sigma_data):
    "c_skip = Cov(eps, y_t)/Var(y_t) and c_out^2 = Var(eps) - Cov^2/Var, written out from the second moments."
    from sr3lit.unet import precondition_coefficients
    gamma = sqrt_gamma ** 2
    var_y = gamma * sigma_data ** 2 + (1 - gamma)
    cov = math.sqrt(1 - gamma)                              # E[eps * y_t] with y_t = sqrt(g) y0 + sqrt(1-g) eps
    c_skip, c_out = precondition_coefficients(torch.tensor([sqrt_gamma], dtype=torch.float64), sigma_data)
    assert math.isclose(float(c_skip), cov / var_y, rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(float(c_out) ** 2, 1 - cov ** 2 / var_y, rel_tol=1e-9, abs_tol=1e-15)


def test_preconditioned_network_wraps_the_same_weights():
    torch.manual_seed(0)
    kw = dict(SMALL, dropout=0.0)
    plain, pre = UNet(**kw).eval(), UNet(**kw, precondition=True, sigma_data=0.7).eval()
    assert pre.state_dict().keys() == plain.state_dict().keys()
    pre.load_state_dict(plain.state_dict())
    x, level = torch.randn(4, 6, 16, 16), torch.tensor([0.0, 0.2, 0.7, 1.0])
    with torch.no_grad(): F_out, out = plain(x, level), pre(x, level)
    g = level.double() ** 2
    var = g * 0.49 + 1 - g
    c_skip, c_out = (1 - g).sqrt() / var, 0.7 * g.sqrt() / var.sqrt()
    expected = c_skip.float().view(-1, 1, 1, 1) * x[:, 3:] + c_out.float().view(-1, 1, 1, 1) * F_out
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out[0], x[0, 3:])           # sqrt(gamma) = 0: pure noise in, y_t itself out
    torch.testing.assert_close(out[3], F_out[3])           # sqrt(gamma) = 1: the network alone


def test_precondition_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match='in_channel >= out_channel'):
        UNet(**dict(SMALL, in_channel=2), precondition=True)
    with pytest.raises(ValueError, match='sigma_data must be positive'):
        UNet(**SMALL, precondition=True, sigma_data=0.0)


def test_new_model_presets_precondition_and_the_reference_does_not():
    assert UNET_PRESETS['tiny']['precondition'] and UNET_PRESETS['small']['precondition']
    assert not UNET_PRESETS['sr3-16-128'].get('precondition', False)
    with torch.device('meta'): assert not UNet().precondition
