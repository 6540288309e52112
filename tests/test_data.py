"Tests for sr3lit.data: image conversion, LR/HR pairs, bicubic resampling, datasets, atomic preparation (extraction: test_download.py)."
import io
import json
import struct
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st
from PIL import Image

from sr3lit import data
from sr3lit.data import (DataError, ImageFolderSR, PreparedSR, check_scale, downsample, embedded_dataset,
                         embedded_patches, load_rgb, make_lr_hr, prepare_folder, resize_center_crop,
                         to_pil, to_rgb8, to_tensor, upsample, write_embedded)

RNG = np.random.default_rng(0)


def noise_image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def smooth_image(w, h, seed=0):
    "A random but smooth picture (upsampled noise), so resampling errors are representative of photographs."
    small = np.random.default_rng(seed).integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((w, h), Image.BILINEAR)


def png16(a: np.ndarray) -> bytes:
    "A 16-bit PNG written byte by byte (Pillow cannot write 16-bit RGB), so the reader is tested on the real format."
    a = a if a.ndim == 3 else a[..., None]
    h, w, c = a.shape
    def chunk(kind, body): return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))
    raw = b''.join(b'\x00' + a[i].astype('>u2').tobytes() for i in range(h))
    header = struct.pack('>IIBBBBB', w, h, 16, {1: 0, 3: 2, 4: 6}[c], 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')


# ---------------------------------------------------------------- scale and sizes

@given(st.integers(1, 64), st.integers(2, 16))
def test_integer_scales_accepted(lr, scale):
    assert check_scale(lr, lr * scale) == scale


@given(st.integers(2, 64), st.integers(1, 15), st.data())
def test_non_integer_scale_is_a_clear_error(lr, whole, draw):
    hr = whole * lr + draw.draw(st.integers(1, lr - 1))          # strictly between two multiples of lr
    with pytest.raises(DataError, match='must be an integer'): check_scale(lr, hr)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([(4, 16), (8, 32), (16, 128), (32, 128), (4, 32)]), st.integers(1, 300), st.integers(1, 300))
def test_make_lr_hr_sizes(sizes, w, h):
    lr_size, hr_size = sizes
    lr, hr, sr = make_lr_hr(noise_image(w, h), lr_size, hr_size)
    assert (lr.size, hr.size, sr.size) == ((lr_size,) * 2, (hr_size,) * 2, (hr_size,) * 2)
    assert lr.mode == hr.mode == sr.mode == 'RGB'


# ---------------------------------------------------------------- agreement with the reference recipe (torchvision)

@settings(max_examples=30, deadline=None)
@given(st.integers(8, 260), st.integers(8, 260), st.sampled_from([8, 16, 33, 64, 128]))
def test_resize_center_crop_matches_torchvision(w, h, size):
    from torchvision.transforms import InterpolationMode, functional as TF
    img = noise_image(w, h, seed=w * 1000 + h)
    theirs = TF.center_crop(TF.resize(img, size, InterpolationMode.BICUBIC), size)
    assert np.array_equal(np.asarray(resize_center_crop(img, size)), np.asarray(theirs))


def test_lr_from_source_is_the_reference_recipe_and_close_to_lr_from_hr():
    from torchvision.transforms import InterpolationMode, functional as TF
    ref = lambda im, s: TF.center_crop(TF.resize(im, s, InterpolationMode.BICUBIC), s)
    img = smooth_image(300, 451)
    lr, hr, sr = make_lr_hr(img, 16, 128, lr_from='source')
    assert np.array_equal(np.asarray(lr), np.asarray(ref(img, 16)))
    assert np.array_equal(np.asarray(sr), np.asarray(ref(ref(img, 16), 128)))
    ours = np.asarray(make_lr_hr(img, 16, 128)[0], dtype=float)
    assert np.abs(ours - np.asarray(lr, dtype=float)).mean() < 2      # same picture, rounding-level differences
    with pytest.raises(DataError): make_lr_hr(img, 16, 128, lr_from='elsewhere')


def test_lr_is_pil_bicubic_of_hr_and_sr_of_lr():
    lr, hr, sr = make_lr_hr(smooth_image(200, 150), 8, 32)
    assert np.array_equal(np.asarray(lr), np.asarray(hr.resize((8, 8), Image.BICUBIC)))
    assert np.array_equal(np.asarray(sr), np.asarray(lr.resize((32, 32), Image.BICUBIC)))


# ---------------------------------------------------------------- bicubic kernel, PIL and torch

def keys_kernel(s, a=-0.5):
    s = np.abs(s)
    return np.where(s <= 1, (a + 2) * s**3 - (a + 3) * s**2 + 1,
                    np.where(s < 2, a * s**3 - 5 * a * s**2 + 8 * a * s - 4 * a, 0.0))


@pytest.mark.parametrize('factor', [2, 4, 8])
def test_pil_upsampling_of_an_impulse_is_the_keys_kernel(factor):
    "An impulse upsampled by PIL (float mode, no rounding) traces Keys' cubic with a=-1/2 at the output positions."
    n = 9
    row = np.zeros((1, n), np.float32); row[0, n // 2] = 1.0
    up = np.asarray(Image.fromarray(row, 'F').resize((n * factor, 1), Image.BICUBIC))[0]
    centres = (np.arange(n * factor) + 0.5) / factor            # output positions in input pixel units
    expected = keys_kernel(centres - (n // 2 + 0.5))            # away from the borders no renormalisation is needed
    assert np.allclose(up, expected, atol=1e-5)


@pytest.mark.parametrize('lr_size,hr_size', [(16, 128), (8, 32), (32, 128)])
def test_upsample_matches_pil(lr_size, hr_size):
    lr = make_lr_hr(smooth_image(256, 256, seed=lr_size), lr_size, hr_size)[0]
    pil = np.asarray(lr.resize((hr_size, hr_size), Image.BICUBIC), dtype=float)
    exact = np.asarray(to_pil(upsample(to_tensor(lr), hr_size, pil_exact=True)), dtype=float)
    approx = np.asarray(to_pil(upsample(to_tensor(lr)[None], hr_size)), dtype=float)
    plain = np.asarray(to_pil(F.interpolate(to_tensor(lr)[None], size=hr_size, mode='bicubic')), dtype=float)
    assert np.abs(exact - pil).max() <= 1 and (exact != pil).mean() < 0.002
    assert np.abs(approx - pil).mean() < 0.5
    assert np.abs(plain - pil).mean() > 2 * np.abs(approx - pil).mean()   # plain torch bicubic is a different filter


def test_downsample_matches_pil_and_keeps_range_shape_dtype():
    hr = smooth_image(64, 64, seed=3)
    t = to_tensor(hr)
    lr = np.asarray(to_pil(downsample(t, 16, pil_exact=True)), dtype=float)
    assert np.abs(lr - np.asarray(hr.resize((16, 16), Image.BICUBIC), dtype=float)).max() <= 1
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    y = upsample(x, (16, 24))
    assert y.shape == (2, 3, 16, 24) and y.dtype == x.dtype and y.abs().max() <= 1
    assert upsample(x.half(), 16).dtype == torch.float16
    with pytest.raises(TypeError): upsample(torch.zeros(3, 8, 8, dtype=torch.uint8), 16)
    with pytest.raises(ValueError): upsample(torch.zeros(8, 8), 16)


# ---------------------------------------------------------------- tensors

@settings(max_examples=20, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_to_tensor_to_pil_round_trip(w, h, seed):
    img = noise_image(w, h, seed)
    t = to_tensor(img)
    assert t.shape == (3, h, w) and t.dtype == torch.float32 and -1 <= t.min() and t.max() <= 1
    assert np.array_equal(np.asarray(to_pil(t)), np.asarray(img))
    assert np.array_equal(np.asarray(to_pil(t[None])), np.asarray(img))


def test_to_tensor_affine_map():
    img = Image.fromarray(np.array([[[0, 255, 51]]], dtype=np.uint8))
    assert torch.allclose(to_tensor(img)[:, 0, 0], torch.tensor([-1.0, 1.0, 51 / 255 * 2 - 1]))
    assert np.asarray(to_pil(torch.full((3, 1, 1), 5.0)))[0, 0].tolist() == [255, 255, 255]   # clamped


# ---------------------------------------------------------------- image modes and bad files

def test_16bit_grayscale_png_is_rescaled(tmp_path):
    k = np.arange(256, dtype=np.uint16).reshape(16, 16)
    (tmp_path / 'g16.png').write_bytes(png16(k * 257))
    img = load_rgb(tmp_path / 'g16.png')
    assert img.mode == 'RGB' and np.array_equal(np.asarray(img)[..., 0], k) and np.array_equal(np.asarray(img)[..., 2], k)
    (tmp_path / 'g16b.png').write_bytes(png16(k * 257 + 128))         # rounds to the nearest level
    assert np.array_equal(np.asarray(load_rgb(tmp_path / 'g16b.png'))[..., 1], np.clip(np.round((k * 257 + 128) / 257), 0, 255))


def test_16bit_rgb_png_within_one_level(tmp_path):
    k = RNG.integers(0, 65536, (8, 8, 3)).astype(np.uint16)
    (tmp_path / 'rgb16.png').write_bytes(png16(k))
    got = np.asarray(load_rgb(tmp_path / 'rgb16.png'), dtype=float)
    assert np.abs(got - k / 257).max() <= 1


def test_modes_converted_to_rgb():
    gray = Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint8), 'L')
    assert np.asarray(to_rgb8(gray))[0].tolist() == [[0] * 3, [128] * 3, [255] * 3]
    assert np.asarray(to_rgb8(Image.new('1', (2, 1), 1)))[0].tolist() == [[255] * 3] * 2
    rgba = Image.fromarray(np.array([[[0, 0, 255, 0], [0, 0, 255, 255], [0, 0, 255, 64]]], dtype=np.uint8), 'RGBA')
    out = np.asarray(to_rgb8(rgba), dtype=int)[0]
    assert out[0].tolist() == [255, 255, 255] and out[1].tolist() == [0, 0, 255]
    assert abs(out[2, 0] - 255 * (1 - 64 / 255)) <= 1 and out[2, 2] == 255           # alpha blend over white
    la = Image.fromarray(np.array([[[100, 255], [100, 0]]], dtype=np.uint8), 'LA')
    assert np.asarray(to_rgb8(la))[0].tolist() == [[100] * 3, [255] * 3]
    pal = Image.fromarray(np.array([[0, 1, 2]], dtype=np.uint8), 'P')
    pal.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255]); pal.info['transparency'] = 2
    assert np.asarray(to_rgb8(pal))[0].tolist() == [[255, 0, 0], [0, 255, 0], [255, 255, 255]]
    cmyk = Image.new('CMYK', (1, 1), (0, 0, 0, 0))
    assert np.asarray(to_rgb8(cmyk))[0, 0].tolist() == [255, 255, 255]


def test_exif_orientation_applied(tmp_path):
    img = Image.fromarray(np.zeros((10, 20, 3), np.uint8))          # 20 wide, 10 high
    exif = Image.Exif(); exif[0x0112] = 6                              # "rotate 90 CW to view"
    img.save(tmp_path / 'rot.jpg', exif=exif)
    assert load_rgb(tmp_path / 'rot.jpg').size == (10, 20)


def png_bytes(img):
    b = io.BytesIO(); img.save(b, format='PNG'); return b.getvalue()


@pytest.mark.parametrize('content', [b'', b'garbage', b'\x89PNG\r\n\x1a\n' + b'\0' * 20, 'truncated'])
def test_unreadable_files_raise_one_line_data_error(tmp_path, content):
    if content == 'truncated': content = png_bytes(noise_image(64, 64))[:300]
    (tmp_path / 'bad.png').write_bytes(content)
    with pytest.raises(DataError, match='cannot read image') as e: load_rgb(tmp_path / 'bad.png')
    assert '\n' not in str(e.value)


# ---------------------------------------------------------------- datasets

def make_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(3): smooth_image(96 + 10 * i, 80, seed=i).save(root / f'img{i}.png')
    smooth_image(20, 20).save(root / 'small.png')
    (root / 'corrupt.jpg').write_bytes(b'\xff\xd8\xff nonsense')
    (root / 'notes.txt').write_text('not an image')
    (root / '__MACOSX').mkdir(); (root / '__MACOSX' / '._img0.png').write_bytes(b'resource fork')
    return root


def test_image_folder_dataset(tmp_path):
    ds = ImageFolderSR(make_folder(tmp_path / 'f'), 8, 32, split='test')
    assert len(ds) == 3 and {k: len(v) for k, v in ds.skipped.items()} == {'unreadable': 1, 'smaller than 32 px': 1}
    item = ds[0]
    assert set(item) == {'HR', 'x_up', 'LR', 'Index', 'path'}
    assert item['HR'].shape == item['x_up'].shape == (3, 32, 32) and item['LR'].shape == (3, 8, 8)
    # SR is the PIL bicubic upsampling of LR; LR the PIL bicubic downsampling of HR
    lr, hr = to_pil(item['LR']), to_pil(item['HR'])
    assert np.array_equal(np.asarray(to_pil(item['x_up'])), np.asarray(lr.resize((32, 32), Image.BICUBIC)))
    assert np.array_equal(np.asarray(lr), np.asarray(hr.resize((8, 8), Image.BICUBIC)))
    assert torch.equal(ds[1]['HR'], ds[1]['HR'])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch['HR'].shape == (2, 3, 32, 32) and len(batch['path']) == 2


def test_training_flip_is_shared_and_random(tmp_path):
    folder = make_folder(tmp_path / 'f')
    ref = ImageFolderSR(folder, 8, 32, split='test')[0]
    train = ImageFolderSR(folder, 8, 32, split='train')
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):
        item = train[0]
        flipped = not torch.equal(item['HR'], ref['HR'])
        seen.add(flipped)
        for k in ('HR', 'x_up', 'LR'): assert torch.equal(item[k], ref[k].flip(-1) if flipped else ref[k])
    assert seen == {True, False}


def test_random_and_center_crops(tmp_path):
    folder = tmp_path / 'f'; folder.mkdir()
    big = smooth_image(120, 90); big.save(folder / 'a.png')
    centre = ImageFolderSR(folder, 8, 32, split='test', crop='center')[0]['HR']
    assert np.array_equal(np.asarray(to_pil(centre)), np.asarray(big.crop((44, 29, 76, 61))))
    torch.manual_seed(1)
    crops = {tuple(to_pil(ImageFolderSR(folder, 8, 32, crop='random', flip=False)[0]['HR']).getpixel((0, 0))) for _ in range(6)}
    assert len(crops) > 1


def test_image_folder_errors(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataError, match='no usable images'): ImageFolderSR(tmp_path / 'empty', 8, 32)
    with pytest.raises(DataError, match='not a folder'): ImageFolderSR(tmp_path / 'missing', 8, 32)
    with pytest.raises(DataError, match='integer'): ImageFolderSR(tmp_path / 'empty', 12, 32)
    small = tmp_path / 'small'; small.mkdir(); smooth_image(16, 16).save(small / 'a.png')
    with pytest.raises(DataError, match='1 smaller than 32 px'): ImageFolderSR(small, 8, 32)
    assert len(ImageFolderSR(small, 8, 32, allow_upscale=True)) == 1


def write_reference_layout(root: Path, n=3, lr=8, hr=32):
    "Files as the reference's prepare_data.py names them, written here without sr3lit's writer."
    for sub in (f'hr_{hr}', f'lr_{lr}', f'sr_{lr}_{hr}'): (root / sub).mkdir(parents=True)
    for i in range(n):
        h = smooth_image(hr, hr, seed=i); l = h.resize((lr, lr), Image.BICUBIC)
        h.save(root / f'hr_{hr}' / f'{i:05d}.png'); l.save(root / f'lr_{lr}' / f'{i:05d}.png')
        l.resize((hr, hr), Image.BICUBIC).save(root / f'sr_{lr}_{hr}' / f'{i:05d}.png')


def test_prepared_dataset_reads_reference_layout(tmp_path):
    write_reference_layout(tmp_path / 'd')
    ds = PreparedSR(tmp_path / 'd', split='val')
    assert (ds.lr_size, ds.hr_size, len(ds)) == (8, 32, 3)
    item = ds[2]
    assert np.array_equal(np.asarray(to_pil(item['HR'])), np.asarray(Image.open(tmp_path / 'd' / 'hr_32' / '00002.png')))
    assert item['LR'].shape == (3, 8, 8)
    assert 'LR' not in PreparedSR(tmp_path / 'd', 8, 32, need_LR=False, split='val')[0]
    assert len(PreparedSR(tmp_path / 'd', split='val', limit=2)) == 2


def test_prepared_dataset_errors(tmp_path):
    write_reference_layout(tmp_path / 'd')
    with pytest.raises(DataError, match='lacks sr_16_32/, lr_16/'): PreparedSR(tmp_path / 'd', 16, 32)
    (tmp_path / 'd' / 'sr_8_32' / '00001.png').unlink()
    with pytest.raises(DataError, match='different file names'): PreparedSR(tmp_path / 'd')
    with pytest.raises(DataError, match='does not exist'): PreparedSR(tmp_path / 'nothing')
    write_reference_layout(tmp_path / 'e')
    smooth_image(30, 30).save(tmp_path / 'e' / 'hr_32' / '00000.png')
    with pytest.raises(DataError, match='expected 32x32'): PreparedSR(tmp_path / 'e', split='val')[0]


# ---------------------------------------------------------------- preparation on disk

def test_prepare_folder_layout_counts_and_pixels(tmp_path):
    folder = make_folder(tmp_path / 'f')
    m = prepare_folder(folder, tmp_path / 'out', 8, 32)
    assert (m['written'], m['skipped']) == (3, 2)
    assert m['skipped_by_reason'] == {'unreadable': 1, 'smaller than 32 px': 1}
    assert json.loads((tmp_path / 'out' / 'manifest.json').read_text()) == m
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['hr_32', 'lr_8', 'manifest.json', 'sr_8_32']
    names = sorted(p.name for p in (tmp_path / 'out' / 'hr_32').iterdir())
    assert names == ['0img0.png', '0img1.png', '0img2.png']      # the reference's stem.zfill(5)
    lr, hr, sr = make_lr_hr(Image.open(folder / 'img1.png'), 8, 32)
    assert np.array_equal(np.asarray(Image.open(tmp_path / 'out' / 'sr_8_32' / '0img1.png')), np.asarray(sr))
    assert len(PreparedSR(tmp_path / 'out')) == 3


def test_prepare_folder_name_collisions(tmp_path):
    for sub in ('a', 'b'):
        (tmp_path / 'src' / sub).mkdir(parents=True); smooth_image(40, 40).save(tmp_path / 'src' / sub / 'x.png')
    prepare_folder(tmp_path / 'src', tmp_path / 'out', 8, 32)
    assert sorted(p.name for p in (tmp_path / 'out' / 'hr_32').iterdir()) == ['a__x.png', 'b__x.png']


def test_prepare_refuses_existing_output_and_overwrites_on_request(tmp_path):
    folder = make_folder(tmp_path / 'f')
    prepare_folder(folder, tmp_path / 'out', 8, 32)
    (tmp_path / 'out' / 'keep.txt').write_text('x')
    with pytest.raises(DataError, match='already exists'): prepare_folder(folder, tmp_path / 'out', 8, 32)
    assert (tmp_path / 'out' / 'keep.txt').exists()
    prepare_folder(folder, tmp_path / 'out', 4, 16, overwrite=True)
    assert not (tmp_path / 'out' / 'keep.txt').exists() and (tmp_path / 'out' / 'hr_16').is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['f', 'out']        # no temporary folders left behind
    (tmp_path / 'empty_out').mkdir()
    prepare_folder(folder, tmp_path / 'empty_out', 8, 32)                     # an empty folder counts as absent


@pytest.mark.parametrize('exc', [KeyboardInterrupt, OSError('disk full')])
def test_interrupted_prepare_leaves_nothing(tmp_path, exc):
    folder = make_folder(tmp_path / 'f')
    calls = {'n': 0}
    real = Image.Image.save
    def failing_save(self, *a, **k):
        calls['n'] += 1
        if calls['n'] == 5: raise exc
        return real(self, *a, **k)
    with mock.patch.object(Image.Image, 'save', failing_save), pytest.raises(type(exc) if isinstance(exc, Exception) else exc):
        prepare_folder(folder, tmp_path / 'out', 8, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['f']


def test_prepare_folder_bad_inputs(tmp_path):
    (tmp_path / 'empty').mkdir()
    with pytest.raises(DataError, match='no image files'): prepare_folder(tmp_path / 'empty', tmp_path / 'o', 8, 32)
    with pytest.raises(DataError, match='does not exist'): prepare_folder(tmp_path / 'nope', tmp_path / 'o', 8, 32)
    with pytest.raises(DataError, match='integer'): prepare_folder(tmp_path / 'empty', tmp_path / 'o', 8, 36)
    bad = tmp_path / 'bad'; bad.mkdir(); (bad / 'a.png').write_bytes(b'x'); smooth_image(10, 10).save(bad / 'b.png')
    with pytest.raises(DataError, match='none of the 2 images'): prepare_folder(bad, tmp_path / 'o', 8, 32)
    assert not (tmp_path / 'o').exists()
    m = prepare_folder(bad, tmp_path / 'o', 4, 16, allow_upscale=True)
    assert (m['written'], m['skipped_by_reason']) == (1, {'unreadable': 1})


# ---------------------------------------------------------------- embedded data

def test_embedded_photos_offline_and_split_by_photograph():
    train, test = embedded_patches('train', 32), embedded_patches('test', 32)
    photo = lambda name: name.split('_y')[0]
    assert {photo(n) for n, _ in train} == set(data.EMBEDDED_SPLITS['train'])
    assert {photo(n) for n, _ in test} == set(data.EMBEDDED_SPLITS['test'])
    assert all(p.size == (32, 32) and p.mode == 'RGB' for _, p in train + test)
    assert all(np.asarray(p, dtype=float).std() >= 4 for _, p in train)
    assert len({n for n, _ in train}) == len(train)


@pytest.mark.parametrize('lr,hr', [(8, 32), (16, 128), (4, 32)])
def test_embedded_dataset_shapes(lr, hr):
    ds = embedded_dataset('test', hr, lr)
    item = ds[len(ds) - 1]
    assert item['HR'].shape == (3, hr, hr) and item['LR'].shape == (3, lr, lr) and item['x_up'].shape == (3, hr, hr)
    assert item['path'].startswith('embedded:')


def test_embedded_patch_grid():
    "astronaut (512x512) shrunk to 64 px and cut with stride 16 at 32 px gives a 3x3 grid."
    names = [n for n, _ in embedded_patches('train', 32, photo_size=64, stride=16, min_std=0) if n.startswith('astronaut')]
    assert names == [f'astronaut_y{y:04d}_x{x:04d}' for y in (0, 16, 32) for x in (0, 16, 32)]
    with pytest.raises(DataError): embedded_patches('valid', 32)
    with pytest.raises(DataError, match='integer'): embedded_dataset('train', 32, 12)


def test_write_embedded(tmp_path):
    m = write_embedded(tmp_path / 'e', 8, 32, photo_size=96)
    assert set(m['splits']) == {'train', 'test'} and m['written'] == sum(s['written'] for s in m['splits'].values())
    for split in ('train', 'test'):
        assert len(PreparedSR(tmp_path / 'e', split=split)) == m['splits'][split]['written'] == len(embedded_dataset(split, 32, 8, photo_size=96))
    with pytest.raises(DataError, match='already exists'): write_embedded(tmp_path / 'e', 8, 32)
