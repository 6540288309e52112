"Properties of the image metrics (sr3lit.metrics), checked against scikit-image, scipy, PIL and closed forms."
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings, strategies as st
from PIL import Image
from skimage import color, data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sr3lit.metrics import (ALEXNET_WEIGHTS, INCEPTION_FID_WEIGHTS, INCEPTION_TORCHVISION_WEIGHTS, LPIPS,
                            LPIPS_LINEAR_WEIGHTS, consistency, fid_from_features, frechet_distance, inception_features,
                            high_frequency_ratio_by_colour, load_inception, load_lpips, psnr, sample_diversity, ssim, ssim_map)

WANG = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)


def numpy_pixels(x, y_channel=False, crop=0, quantize=True):
    "One [-1, 1] CHW image as the HWC float64 array scikit-image should see, made with numpy and skimage only."
    p = np.clip((x.double().numpy().transpose(1, 2, 0) + 1) * 127.5, 0, 255)
    if quantize: p = np.round(p).astype(np.uint8)
    if y_channel: p = color.rgb2ycbcr(p if quantize else p / 255)[..., :1]
    return p[crop:p.shape[0] - crop, crop:p.shape[1] - crop].astype(np.float64)


def skimage_scores(sr, hr, **mode):
    "Per-image (PSNR, SSIM) from scikit-image, Wang et al.'s settings."
    ps, ss = [], []
    for s, h in zip(sr, hr):
        a, b = numpy_pixels(s, **mode), numpy_pixels(h, **mode)
        ps.append(peak_signal_noise_ratio(b, a, data_range=255))
        ss.append(structural_similarity(a, b, channel_axis=-1, **WANG))
    return np.array(ps), np.array(ss)


modes = st.fixed_dictionaries(dict(y_channel=st.booleans(), crop=st.integers(0, 4), quantize=st.booleans()))


@given(st.integers(1, 3), st.integers(19, 40), st.integers(19, 40), modes, st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_psnr_and_ssim_match_skimage_on_random_images(B, H, W, mode, seed):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(B, 3, H, W, generator=g) * 2 - 1
    sr = (hr + 0.3 * torch.randn(B, 3, H, W, generator=g)).clamp(-1.2, 1.2)  # correlated, some values clipped
    kw = dict(y_channel=mode['y_channel'], crop_border=mode['crop'], quantize=mode['quantize'])
    ref_psnr, ref_ssim = skimage_scores(sr, hr, **mode)
    got_psnr, got_ssim = psnr(sr, hr, **kw), ssim(sr, hr, **kw)
    assert got_psnr.shape == got_ssim.shape == (B,) and got_psnr.dtype == torch.float64
    np.testing.assert_allclose(got_psnr.numpy(), ref_psnr, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got_ssim.numpy(), ref_ssim, atol=1e-4, rtol=0)


@pytest.fixture(scope='module')
def photo_pairs():
    "Real pairs: 128x128 crops of three scikit-image photographs and their 4x bicubic round trips."
    hrs = [data.astronaut()[:128, 192:320], data.chelsea()[50:178, 150:278], data.coffee()[130:258, 240:368]]
    hr = torch.from_numpy(np.stack(hrs)).permute(0, 3, 1, 2).double() / 127.5 - 1
    lr = F.interpolate(hr, size=(32, 32), mode='bicubic', antialias=True, align_corners=False).clamp(-1, 1)  # as 8-bit LR files
    sr = F.interpolate(lr, size=(128, 128), mode='bicubic', align_corners=False)
    return sr, hr, lr


@pytest.mark.parametrize('mode', [dict(), dict(y_channel=True, crop=4), dict(quantize=False), dict(y_channel=True)])
def test_psnr_and_ssim_match_skimage_on_photographs(photo_pairs, mode):
    sr, hr, _ = photo_pairs
    kw = dict(y_channel=mode.get('y_channel', False), crop_border=mode.get('crop', 0), quantize=mode.get('quantize', True))
    ref_psnr, ref_ssim = skimage_scores(sr, hr, **mode)
    np.testing.assert_allclose(psnr(sr, hr, **kw).numpy(), ref_psnr, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ssim(sr, hr, **kw).numpy(), ref_ssim, atol=1e-4, rtol=0)
    assert (ref_psnr > 15).all() and (ref_ssim > 0.3).all()           # a real, imperfect upscaling


def test_psnr_closed_form_and_identical_images():
    hr = torch.randint(30, 200, (3, 3, 12, 12)).double() / 127.5 - 1
    d = torch.tensor([1.0, 3.0, 25.0], dtype=torch.float64)
    got = psnr(hr + d.view(3, 1, 1, 1) / 127.5, hr)
    np.testing.assert_allclose(got.numpy(), 20 * np.log10(255 / d.numpy()), atol=1e-9)
    assert torch.isinf(psnr(hr, hr)).all() and (psnr(hr, hr) > 0).all()
    assert torch.isinf(psnr(hr, hr, y_channel=True, crop_border=2)).all()


def test_ssim_identity_symmetry_and_bounds():
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 3, 24, 30, generator=g) * 2 - 1, torch.rand(2, 3, 24, 30, generator=g) * 2 - 1
    np.testing.assert_allclose(ssim(a, a).numpy(), 1.0, atol=1e-12)
    np.testing.assert_allclose(ssim(a, b).numpy(), ssim(b, a).numpy(), atol=1e-12)
    m = ssim_map(a, b)
    assert m.shape == (2, 3, 14, 20) and (m <= 1 + 1e-12).all() and (m >= -1 - 1e-12).all()
    assert ssim_map(a, b, y_channel=True, crop_border=2).shape == (2, 1, 10, 16)


def test_quantize_rounds_like_a_png_and_uint8_images_are_unchanged():
    u8 = torch.randint(0, 256, (2, 3, 16, 16)).double()
    x = u8 / 127.5 - 1
    half_level = x + 0.4 / 127.5                                  # less than half a grey level off every pixel
    assert torch.isinf(psnr(half_level, x)).all()                 # rounding gives back the same 8-bit image
    assert torch.isfinite(psnr(half_level, x, quantize=False)).all()


def test_y_channel_uses_bt601_studio_swing():
    # a grey pair (R = G = B) has Y = 16 + 219/255 * R: every error shrinks by 219/255, PSNR rises by 20 log10(255/219)
    g = torch.Generator().manual_seed(1)
    a, b = (torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64).expand(-1, 3, -1, -1) * 2 - 1 for _ in range(2))
    gain = psnr(a, b, y_channel=True, quantize=False) - psnr(a, b, quantize=False)
    assert gain.item() == pytest.approx(20 * math.log10(255 / 219), abs=1e-9)


@pytest.mark.parametrize('call, exc, words', [
    (lambda a: psnr(a.numpy(), a), TypeError, 'torch.Tensor'),
    (lambda a: psnr(a, a[:, :, :-1]), ValueError, 'same shape'),
    (lambda a: psnr(a[0], a[0]), ValueError, '(B, C, H, W)'),
    (lambda a: psnr((a * 100).long(), (a * 100).long()), TypeError, 'float'),
    (lambda a: psnr(a[:, :1], a[:, :1], y_channel=True), ValueError, 'RGB'),
    (lambda a: psnr(a, a, crop_border=10), ValueError, 'crop_border'),
    (lambda a: psnr(a, a, crop_border=-1), ValueError, 'crop_border'),
    (lambda a: ssim(a, a, crop_border=3), ValueError, 'at least 11x11'),
])
def test_bad_input_is_a_clear_error(call, exc, words):
    a = torch.rand(2, 3, 16, 20) * 2 - 1
    with pytest.raises(exc, match=words.replace('(', r'\(').replace(')', r'\)')):
        call(a)


def test_consistency_downsampler_is_pil_bicubic_and_closed_forms(photo_pairs):
    sr, hr, lr = photo_pairs
    # the LR made by antialiased bicubic equals PIL's bicubic resize, an independent implementation (float images
    # are not clipped by PIL; 8-bit ones are, as the LR is)
    hr01 = ((hr[0] + 1) / 2).float().numpy()
    pil = np.stack([np.asarray(Image.fromarray(ch, mode='F').resize((32, 32), Image.BICUBIC)) for ch in hr01]).clip(0, 1)
    np.testing.assert_allclose(((lr[0] + 1) / 2).numpy(), pil, atol=2e-5)
    assert consistency(hr, lr).max() < 1e-28                              # the reference is consistent with its LR
    inner = hr * 0.5                                                     # room to brighten without clipping
    lr_inner = F.interpolate(inner, size=(32, 32), mode='bicubic', antialias=True, align_corners=False)
    d = 0.05                                                             # in [0, 1] units: +2d in [-1, 1] units
    np.testing.assert_allclose(consistency(inner + 2 * d, lr_inner).numpy(), d**2, rtol=1e-9)
    bicubic = consistency(sr, lr)
    assert bicubic.shape == (3,) and (bicubic > 0).all() and (bicubic < 1e-2).all()


def test_consistency_bad_input():
    sr, lr = torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match='larger'): consistency(lr, sr)
    with pytest.raises(ValueError, match='batch and channels'): consistency(sr, lr[:1])


def c4(K):
    "E[sample std] / sigma for K normal draws (unbiased variance)."
    return math.sqrt(2 / (K - 1)) * math.exp(math.lgamma(K / 2) - math.lgamma((K - 1) / 2))


def test_sample_diversity_copies_and_noise():
    img = torch.rand(3, 3, 64, 64) * 2 - 1
    assert (sample_diversity(img.expand(4, -1, -1, -1, -1)) == 0).all()
    torch.manual_seed(0)
    K, s = 5, 0.05
    div = sample_diversity(s * torch.randn(K, 3, 3, 64, 64) + img)        # (B,) = (3,)
    assert div.shape == (3,)
    np.testing.assert_allclose(div.numpy(), 127.5 * c4(K) * s, rtol=0.02)
    # a tighter spread gives proportionally less diversity
    assert sample_diversity(0.5 * s * torch.randn(K, 1, 3, 64, 64)).item() < 0.55 * div.mean().item()


def test_sample_diversity_bad_input():
    with pytest.raises(ValueError, match='K=2'): sample_diversity(torch.zeros(1, 2, 3, 8, 8))
    with pytest.raises(ValueError, match='K, B, C, H, W'): sample_diversity(torch.zeros(2, 3, 8, 8))


def random_cov(rng, D, rank=None):
    A = rng.normal(size=(D, rank or D))
    return A @ A.T / D


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    D = 5
    mu, C, delta = rng.normal(size=D), random_cov(rng, D), rng.normal(size=D)
    assert frechet_distance(mu, C, mu, C) == pytest.approx(0, abs=1e-9)
    assert frechet_distance(mu, C, mu + delta, C) == pytest.approx((delta**2).sum(), abs=1e-9)
    a, b = rng.uniform(0.1, 2, D), rng.uniform(0.1, 2, D)
    expected = (delta**2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu, np.diag(a), mu + delta, np.diag(b)) == pytest.approx(expected, abs=1e-9)
    assert frechet_distance(0.0, 1.0, 2.0, 16.0) == pytest.approx(4 + 9, abs=1e-12)   # 1-D: (m1-m2)^2 + (s1-s2)^2


@given(st.integers(1, 8), st.integers(0, 2**31 - 1), st.booleans())
@example(3, 10336, True)                                # a singular product on which scipy's sqrtm returns NaN
@settings(max_examples=40, deadline=None)
def test_frechet_distance_matches_scipy_sqrtm(D, seed, low_rank):
    import scipy.linalg
    rng = np.random.default_rng(seed)
    c1, c2 = random_cov(rng, D, rank=max(1, D // 2) if low_rank else None), random_cov(rng, D)
    m1, m2 = rng.normal(size=D), rng.normal(size=D)
    with warnings.catch_warnings():                     # scipy warns that a singular product may be inaccurate
        warnings.simplefilter('ignore')
        ref = ((m1 - m2) ** 2).sum() + np.trace(c1 + c2 - 2 * np.real(scipy.linalg.sqrtm(c1 @ c2)))
    if not np.isfinite(ref):                            # scipy's sqrtm gives NaN on some singular products: there, the
        roots = np.sqrt(np.clip(np.real(np.linalg.eigvals(c1 @ c2)), 0, None))   # trace of the root is the sum of the
        ref = ((m1 - m2) ** 2).sum() + np.trace(c1 + c2) - 2 * roots.sum()       # roots of c1 c2's (real, >= 0) eigenvalues
    got = frechet_distance(m1, c1, m2, c2)
    assert got == pytest.approx(ref, abs=1e-6 * (1 + abs(ref)))
    assert got == pytest.approx(frechet_distance(m2, c2, m1, c1), abs=1e-6 * (1 + abs(ref)))   # symmetric (round-off near zero eigenvalues is amplified by the sqrt)
    assert got >= -1e-9


def test_fid_from_features_converges_to_the_gaussians_distance():
    rng = np.random.default_rng(1)
    L1, L2 = np.linalg.cholesky(random_cov(rng, 3)), np.linalg.cholesky(random_cov(rng, 3))
    m2 = np.array([0.3, 0.0, -0.4])
    f1 = rng.normal(size=(100_000, 3)) @ L1.T
    f2 = rng.normal(size=(100_000, 3)) @ L2.T + m2
    expected = frechet_distance(np.zeros(3), L1 @ L1.T, m2, L2 @ L2.T)
    assert fid_from_features(f1, torch.from_numpy(f2)) == pytest.approx(expected, abs=0.02)
    assert fid_from_features(f1[:50_000], f1[50_000:]) == pytest.approx(0, abs=5e-3)
    with pytest.raises(ValueError, match='N1, D'): fid_from_features(f1, f2[:, :2])
    with pytest.raises(ValueError, match='at least 2'): fid_from_features(f1[:1], f2)


def test_missing_weights_name_the_files(tmp_path):
    for path in (None, tmp_path / 'nope.pth'):
        with pytest.raises(FileNotFoundError) as e: load_inception(path)
        assert INCEPTION_FID_WEIGHTS in str(e.value) and INCEPTION_TORCHVISION_WEIGHTS in str(e.value)
        with pytest.raises(FileNotFoundError, match=ALEXNET_WEIGHTS): load_lpips(path)
    trunk = tmp_path / ALEXNET_WEIGHTS
    torch.save({f'features.{k}': v for k, v in LPIPS().trunk.state_dict().items()}, trunk)
    with pytest.raises(FileNotFoundError, match=LPIPS_LINEAR_WEIGHTS):
        load_lpips(trunk, tmp_path / 'missing' / LPIPS_LINEAR_WEIGHTS)


def test_unrecognised_inception_file(tmp_path):
    torch.save({'fc.weight': torch.zeros(10, 4)}, tmp_path / 'w.pth')
    with pytest.raises(ValueError, match='neither'): load_inception(tmp_path / 'w.pth')


def test_fid_inception_file_without_pytorch_fid_says_what_to_install(tmp_path, monkeypatch):
    # the package's absence, simulated whether or not it is installed: a None entry in sys.modules makes the import fail
    import sys
    for name in ('pytorch_fid', 'pytorch_fid.inception'): monkeypatch.setitem(sys.modules, name, None)
    torch.save({'fc.weight': torch.zeros(1008, 1)}, tmp_path / INCEPTION_FID_WEIGHTS)
    with pytest.raises(ImportError, match='pip install pytorch-fid'): load_inception(tmp_path / INCEPTION_FID_WEIGHTS)


def test_torchvision_inception_file_gives_its_pool_features(tmp_path):
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).eval()
    torch.save(net.state_dict(), tmp_path / INCEPTION_TORCHVISION_WEIGHTS)
    model = load_inception(tmp_path / INCEPTION_TORCHVISION_WEIGHTS)
    images = torch.rand(2, 3, 64, 80) * 2 - 1
    feats = inception_features(model, images, batch_size=1)
    assert feats.shape == (2, 2048) and feats.dtype == np.float64
    # the same features from torchvision's network by hand: [-1, 1] input is what transform_input would produce
    pooled = {}
    net.avgpool.register_forward_hook(lambda m, i, o: pooled.setdefault('x', o.flatten(1)))
    with torch.no_grad(): net.transform_input = False; net(F.interpolate(images, size=(299, 299), mode='bilinear'))
    np.testing.assert_allclose(feats, pooled['x'].double().numpy(), rtol=1e-4, atol=1e-5)


def test_lpips_trunk_loads_torchvision_alexnet_and_computes_the_definition(tmp_path):
    import torchvision
    torch.manual_seed(0)
    alex = torchvision.models.alexnet(weights=None).features.eval()
    state = {f'features.{k}': v for k, v in alex.state_dict().items()}
    state['classifier.1.weight'] = torch.zeros(4, 4)                      # other keys in the file are ignored
    torch.save(state, tmp_path / ALEXNET_WEIGHTS)
    lin = {f'lin{i}.model.1.weight': torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))}
    torch.save(lin, tmp_path / LPIPS_LINEAR_WEIGHTS)
    model = load_lpips(tmp_path / ALEXNET_WEIGHTS, tmp_path / LPIPS_LINEAR_WEIGHTS)
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    got = model(x, y)
    # the definition, with torchvision's own module: normalised activations after each ReLU, weighted, averaged
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    def acts(z):
        out, h = [], (z - shift) / scale
        for i, layer in enumerate(alex[:12]):
            h = layer(h)
            if isinstance(layer, torch.nn.ReLU): out.append(h.clone())
        return out
    with torch.no_grad():
        expected = sum(
            (lin[f'lin{i}.model.1.weight'].view(1, -1, 1, 1)
             * (a / (a.norm(dim=1, keepdim=True) + 1e-10) - b / (b.norm(dim=1, keepdim=True) + 1e-10)) ** 2
             ).sum(1).mean((1, 2))
            for i, (a, b) in enumerate(zip(acts(x), acts(y))))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5)
    assert (model(x, x) == 0).all() and (got > 0).all()


def test_lpips_matches_the_lpips_package(tmp_path):
    lpips = pytest.importorskip('lpips')
    ref = lpips.LPIPS(net='alex', pnet_rand=True, verbose=False)      # random trunk (no download), packaged linear weights
    torch.save({f'features.{k}': v for k, v in ref.net.state_dict().items()
                for k in [k.split('.', 1)[1]]}, tmp_path / ALEXNET_WEIGHTS)
    model = load_lpips(tmp_path / ALEXNET_WEIGHTS)                     # linear weights found inside the lpips package
    x, y = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad(): expected = ref(x, y).flatten()
    np.testing.assert_allclose(model(x, y).numpy(), expected.numpy(), rtol=1e-5)


def test_fid_inception_matches_pytorch_fid(tmp_path):
    pfid = pytest.importorskip('pytorch_fid.inception')
    import torchvision
    from unittest import mock
    torch.manual_seed(0)
    # pytorch-fid's network with random weights: its URL fetch and its weight loading are stubbed out
    with mock.patch.object(pfid, 'load_state_dict_from_url', lambda *a, **k: None), \
         mock.patch.object(torchvision.models.Inception3, 'load_state_dict', lambda self, *a, **k: None):
        inc = pfid.fid_inception_v3()
    torch.save(inc.state_dict(), tmp_path / INCEPTION_FID_WEIGHTS)    # the layout of pt_inception-2015-12-05-*.pth
    model = load_inception(tmp_path / INCEPTION_FID_WEIGHTS)
    with mock.patch.object(pfid, 'fid_inception_v3', lambda: inc):
        ref = pfid.InceptionV3([3], resize_input=True, normalize_input=True).eval()   # expects [0, 1] input
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad(): expected = ref((images + 1) / 2)[0].flatten(1)
    np.testing.assert_allclose(inception_features(model, images), expected.double().numpy(), rtol=1e-4, atol=1e-5)


def test_colour_detail_ratios_see_grey_noise_only_in_luminance():
    g = torch.Generator().manual_seed(4)
    hr = torch.rand(6, 3, 32, 32, generator=g, dtype=torch.float64) * 2 - 1
    same = high_frequency_ratio_by_colour(hr, hr, 4)
    assert all(abs(v - 1) < 1e-12 for v in same.values())
    grey_noise = 0.2 * torch.randn(6, 1, 32, 32, generator=g, dtype=torch.float64).expand(6, 3, 32, 32)
    noisy = high_frequency_ratio_by_colour(hr + grey_noise, hr, 4)
    assert noisy['luminance'] > 1.1
    assert abs(noisy['red-green'] - 1) < 1e-9 and abs(noisy['yellow-blue'] - 1) < 1e-9
