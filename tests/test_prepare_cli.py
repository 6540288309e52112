"""The download code against a local HTTP server on 127.0.0.1 (ranges, cut connections, wrong checksums), and the
`sr3lit prepare` command end to end: each source, and each kind of bad input one by one."""
import contextlib
import hashlib
import io
import json
import os
import re
import subprocess
import struct
import sys
import threading
import zipfile
import zlib
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sr3lit import data
from sr3lit import download as downloads      # the module; `download` is its function
from sr3lit.cli import SUBCOMMANDS, main
from sr3lit.data import DataError
from sr3lit.download import ChecksumError, DownloadError, RemoteFile, download


# ---------------------------------------------------------------- a local server with byte ranges

class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        srv = self.server
        name = self.path.lstrip('/').split('?')[0]
        rng = self.headers.get('Range')
        srv.requests.append((name, rng))
        body = srv.files.get(name)
        if body is None:
            self.send_error(404, 'Not Found'); return
        start = 0
        if rng and srv.ranges:
            start = int(re.fullmatch(r'bytes=(\d+)-', rng).group(1))
            if start >= len(body):
                self.send_response(416); self.send_header('Content-Range', f'bytes */{len(body)}')
                self.send_header('Content-Length', '0'); self.end_headers(); return
            self.send_response(206); self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header('Content-Length', str(len(payload)))
        self.send_header('Accept-Ranges', 'bytes' if srv.ranges else 'none')
        self.end_headers()
        cut = srv.cut_after.pop(name, None)             # serve only this many bytes once, then hang up
        self.wfile.write(payload if cut is None else payload[:cut])
        self.wfile.flush()

    def log_message(self, *args): pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    srv.files, srv.requests, srv.cut_after, srv.ranges = {}, [], {}, True
    srv.url = f'http://127.0.0.1:{srv.server_address[1]}'
    thread = threading.Thread(target=srv.serve_forever, kwargs={'poll_interval': 0.02}, daemon=True); thread.start()
    yield srv
    srv.shutdown(); srv.server_close()


def sha(b): return hashlib.sha256(b).hexdigest()


def png16(a: np.ndarray) -> bytes:
    "A 16-bit grayscale PNG written byte by byte."
    def chunk(kind, body): return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))
    raw = b''.join(b'\x00' + row.astype('>u2').tobytes() for row in a)
    header = struct.pack('>IIBBBBB', a.shape[1], a.shape[0], 16, 0, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')


BLOB = np.random.default_rng(0).bytes(200_000)
QUICK = dict(progress=False, retry_wait=0, timeout=10)


# ---------------------------------------------------------------- download()

def test_download_verified_and_renamed(server, tmp_path):
    server.files['blob.bin'] = BLOB
    dest = download(f'{server.url}/blob.bin', tmp_path / 'blob.bin', size=len(BLOB), sha256=sha(BLOB),
                    md5=hashlib.md5(BLOB).hexdigest(), **QUICK)
    assert dest.read_bytes() == BLOB and not (tmp_path / 'blob.bin.part').exists()
    assert server.requests == [('blob.bin', None)]
    download(f'{server.url}/blob.bin', dest, size=len(BLOB), sha256=sha(BLOB), **QUICK)   # already there: no request
    assert len(server.requests) == 1


def test_truncated_download_resumes_and_completes(server, tmp_path):
    server.files['blob.bin'] = BLOB; server.cut_after['blob.bin'] = 70_000
    dest = download(f'{server.url}/blob.bin', tmp_path / 'blob.bin', size=len(BLOB), sha256=sha(BLOB), retries=2, **QUICK)
    assert dest.read_bytes() == BLOB
    assert server.requests == [('blob.bin', None), ('blob.bin', 'bytes=70000-')]


def test_truncated_download_keeps_part_and_next_run_resumes(server, tmp_path):
    server.files['blob.bin'] = BLOB; server.cut_after['blob.bin'] = 50_000
    with pytest.raises(DownloadError, match='run again to resume') as e:
        download(f'{server.url}/blob.bin', tmp_path / 'blob.bin', size=len(BLOB), sha256=sha(BLOB), retries=0, **QUICK)
    assert '\n' not in str(e.value)
    assert (tmp_path / 'blob.bin.part').read_bytes() == BLOB[:50_000] and not (tmp_path / 'blob.bin').exists()
    download(f'{server.url}/blob.bin', tmp_path / 'blob.bin', size=len(BLOB), sha256=sha(BLOB), retries=0, **QUICK)
    assert (tmp_path / 'blob.bin').read_bytes() == BLOB and server.requests[-1] == ('blob.bin', 'bytes=50000-')


def test_resume_of_an_existing_part_file(server, tmp_path):
    server.files['blob.bin'] = BLOB
    (tmp_path / 'blob.bin.part').write_bytes(BLOB[:123_456])
    download(f'{server.url}/blob.bin', tmp_path / 'blob.bin', sha256=sha(BLOB), **QUICK)
    assert (tmp_path / 'blob.bin').read_bytes() == BLOB and server.requests == [('blob.bin', 'bytes=123456-')]


def test_complete_part_file_is_verified_without_data_transfer(server, tmp_path):
    server.files['blob.bin'] = BLOB
    (tmp_path / 'blob.bin.part').write_bytes(BLOB)
    download(f'{server.url}/blob.bin', tmp_path / 'blob.bin', sha256=sha(BLOB), **QUICK)   # size unknown: 416 answer
    assert (tmp_path / 'blob.bin').read_bytes() == BLOB
    assert server.requests == [('blob.bin', f'bytes={len(BLOB)}-')]


def test_server_without_ranges_restarts_from_zero(server, tmp_path):
    server.files['blob.bin'] = BLOB; server.ranges = False
    (tmp_path / 'blob.bin.part').write_bytes(b'stale bytes from somewhere else')
    download(f'{server.url}/blob.bin', tmp_path / 'blob.bin', size=len(BLOB), sha256=sha(BLOB), **QUICK)
    assert (tmp_path / 'blob.bin').read_bytes() == BLOB


def test_wrong_checksum_is_an_error_and_nothing_is_kept(server, tmp_path):
    server.files['blob.bin'] = BLOB
    with pytest.raises(ChecksumError, match=f'sha256 {sha(BLOB)}, expected 0{{64}}'):
        download(f'{server.url}/blob.bin', tmp_path / 'blob.bin', sha256='0' * 64, **QUICK)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_is_an_error(server, tmp_path):
    server.files['blob.bin'] = BLOB
    with pytest.raises(ChecksumError, match='larger than the expected 1000 bytes'):
        download(f'{server.url}/blob.bin', tmp_path / 'blob.bin', size=1000, **QUICK)
    with pytest.raises(ChecksumError, match='has 200000 bytes, expected 300000'):
        download(f'{server.url}/blob.bin', tmp_path / 'blob.bin', size=300_000, **QUICK)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_part_fails_verification_then_is_discarded(server, tmp_path):
    server.files['blob.bin'] = BLOB
    (tmp_path / 'blob.bin.part').write_bytes(b'\0' * 1000)          # wrong bytes that look like a partial download
    with pytest.raises(ChecksumError):
        download(f'{server.url}/blob.bin', tmp_path / 'blob.bin', sha256=sha(BLOB), **QUICK)
    assert list(tmp_path.iterdir()) == []
    download(f'{server.url}/blob.bin', tmp_path / 'blob.bin', sha256=sha(BLOB), **QUICK)   # the next run starts over
    assert (tmp_path / 'blob.bin').read_bytes() == BLOB


def test_existing_final_file_that_fails_verification_is_not_trusted(server, tmp_path):
    (tmp_path / 'blob.bin').write_bytes(b'tampered')
    with pytest.raises(ChecksumError, match='not trusted'):
        download(f'{server.url}/blob.bin', tmp_path / 'blob.bin', sha256=sha(BLOB), **QUICK)


def test_http_errors(server, tmp_path):
    with pytest.raises(DownloadError, match='HTTP 404'):
        download(f'{server.url}/missing.zip', tmp_path / 'missing.zip', **QUICK)
    with pytest.raises(DownloadError, match='failed'):
        download('http://127.0.0.1:9/refused.zip', tmp_path / 'r.zip', retries=1, **QUICK)   # port 9: nothing listens
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- archives in the real layouts

def png(seed, w=96, h=80):
    small = np.random.default_rng(seed).integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    b = io.BytesIO(); Image.fromarray(small).resize((w, h), Image.BILINEAR).save(b, format='PNG'); return b.getvalue()


def make_zip(members: dict) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, 'w') as zf:
        for name, content in members.items(): zf.writestr(name, content)
    return b.getvalue()


def mini_div2k():
    train = make_zip({f'DIV2K_train_HR/{i:04d}.png': png(i) for i in range(1, 4)})
    valid = make_zip({f'DIV2K_valid_HR/{i:04d}.png': png(i) for i in (801, 802)})
    return {'DIV2K_train_HR.zip': train, 'DIV2K_valid_HR.zip': valid}


@pytest.fixture
def small_div2k(server, monkeypatch):
    "The real DIV2K entry with its archives, sizes and checksums replaced by small ones served locally."
    archives = mini_div2k()
    server.files.update(archives)
    files = tuple(replace(f, size=len(archives[f.filename]), sha256=sha(archives[f.filename])) for f in downloads.DATASETS['div2k'].files)
    monkeypatch.setitem(downloads.DATASETS, 'div2k', replace(downloads.DATASETS['div2k'], files=files))
    return server


def run(argv):
    "main() in-process; (status, stdout, stderr)."
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): status = main(argv)
    return status, out.getvalue(), err.getvalue()


def assert_one_line_error(status, err, *fragments):
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('sr3lit prepare: error: '), err
    assert 'Traceback' not in err
    for f in fragments: assert f in lines[0], (f, lines[0])


def test_prepare_dataset_downloads_extracts_and_prepares(small_div2k, tmp_path):
    status, out, err = run(['prepare', 'div2k', '--root', str(tmp_path), '--base-url', small_div2k.url,
                            '--lr', '8', '--hr', '32', '--quiet'])
    assert status == 0, err
    prepared = tmp_path / 'div2k_8_32'
    manifest = json.loads((prepared / 'manifest.json').read_text())
    assert {s: v['written'] for s, v in manifest['splits'].items()} == {'train': 3, 'test': 2}
    assert sorted(p.name for p in (prepared / 'test' / 'hr_32').iterdir()) == ['00801.png', '00802.png']
    assert len(data.PreparedSR(prepared, split='train')) == 3
    assert (tmp_path / 'downloads' / 'DIV2K_train_HR.zip').read_bytes() == small_div2k.files['DIV2K_train_HR.zip']
    assert not list((tmp_path / 'downloads').glob('*.part'))
    assert 'train: 3 images written' in out and str(prepared) in out
    # a second run reuses the verified downloads: nothing more is fetched
    n = len(small_div2k.requests)
    assert run(['prepare', 'div2k', '--root', str(tmp_path), '--base-url', small_div2k.url, '--lr', '8', '--hr', '32',
                '--quiet', '--out', str(tmp_path / 'again')])[0] == 0
    assert len(small_div2k.requests) == n


def test_prepare_dataset_resumes_a_cut_download(small_div2k, tmp_path, monkeypatch):
    small_div2k.cut_after['DIV2K_train_HR.zip'] = 1000
    monkeypatch.setattr(downloads.time, 'sleep', lambda seconds: None)     # no waiting between retries in a test
    status, _, err = run(['prepare', 'div2k', '--root', str(tmp_path), '--base-url', small_div2k.url, '--lr', '8',
                          '--hr', '32', '--quiet'])
    # the first attempt hangs up after 1000 bytes; the retry asks for the rest
    assert status == 0, err
    assert ('DIV2K_train_HR.zip', 'bytes=1000-') in small_div2k.requests


def test_base_url_from_environment(small_div2k, tmp_path, monkeypatch):
    monkeypatch.setenv('SR3LIT_DATA_URL', small_div2k.url)
    assert run(['prepare', 'div2k', '--root', str(tmp_path), '--lr', '8', '--hr', '32', '--quiet'])[0] == 0


def test_real_registry_checksum_mismatch(server, tmp_path):
    "The real DIV2K entry against a local archive of the wrong size: a clear error, and nothing kept."
    server.files.update(mini_div2k())
    status, _, err = run(['prepare', 'div2k', '--root', str(tmp_path), '--base-url', server.url, '--quiet'])
    assert_one_line_error(status, err, 'DIV2K_train_HR.zip', 'expected 3530603713')
    assert not (tmp_path / 'div2k_16_128').exists()
    assert not list((tmp_path / 'downloads').iterdir())


def test_wrong_sha256_via_cli(small_div2k, tmp_path, monkeypatch):
    spec = downloads.DATASETS['div2k']
    bad = (replace(spec.files[0], sha256='f' * 64), spec.files[1])
    monkeypatch.setitem(downloads.DATASETS, 'div2k', replace(spec, files=bad))
    status, _, err = run(['prepare', 'div2k', '--root', str(tmp_path), '--base-url', small_div2k.url, '--quiet'])
    assert_one_line_error(status, err, 'sha256', 'expected ' + 'f' * 64)
    assert not list((tmp_path / 'downloads').iterdir()) and not (tmp_path / 'div2k_16_128').exists()


def test_afhq_layout_from_local_archive(tmp_path):
    arc = tmp_path / 'afhq.zip'
    arc.write_bytes(make_zip({'afhq/train/dog/flickr_dog_000001.jpg': png(1), 'afhq/train/dog/pixabay_dog_000002.jpg': png(2),
                              'afhq/train/cat/flickr_cat_000001.jpg': png(3), 'afhq/val/dog/flickr_dog_000043.jpg': png(4)}))
    # the registry's MD5 is for the real archive, so verification must refuse this one ...
    status, _, err = run(['prepare', 'afhq-dog', '--root', str(tmp_path / 'r'), '--archive', str(arc), '--quiet'])
    assert_one_line_error(status, err, 'afhq.zip has')
    # ... and --no-verify accepts it
    status, _, err = run(['prepare', 'afhq-dog', '--root', str(tmp_path / 'r'), '--archive', str(arc), '--no-verify',
                          '--lr', '8', '--hr', '32', '--quiet'])
    assert status == 0, err
    m = json.loads((tmp_path / 'r' / 'afhq-dog_8_32' / 'manifest.json').read_text())
    assert {s: v['written'] for s, v in m['splits'].items()} == {'train': 2, 'test': 1}       # cats left out
    assert not list((tmp_path / 'r' / 'extracted').rglob('*cat*.jpg'))


def test_ffhq_needs_archive_then_works_with_zip_or_folder(tmp_path):
    status, _, err = run(['prepare', 'ffhq', '--root', str(tmp_path)])
    assert_one_line_error(status, err, '--archive', 'github.com/NVlabs/ffhq-dataset')
    faces = {f'thumbnails128x128/{i // 1000 * 1000:05d}/{i:05d}.png': png(i, 128, 128) for i in range(3)}
    (tmp_path / 'ffhq.zip').write_bytes(make_zip(faces))
    assert run(['prepare', 'ffhq', '--root', str(tmp_path / 'r'), '--archive', str(tmp_path / 'ffhq.zip'), '--quiet'])[0] == 0
    assert len(data.PreparedSR(tmp_path / 'r' / 'ffhq_16_128', split='train')) == 3
    folder = tmp_path / 'celeba_folder'; folder.mkdir()
    for i in range(2): (folder / f'{i}.png').write_bytes(png(i, 128, 128))
    assert run(['prepare', 'celebahq', '--root', str(tmp_path / 'r'), '--archive', str(folder), '--quiet'])[0] == 0
    assert len(data.PreparedSR(tmp_path / 'r' / 'celebahq_16_128', split='test')) == 2


def test_unsafe_archive_via_cli(tmp_path):
    (tmp_path / 'evil.zip').write_bytes(make_zip({'faces/1.png': png(1, 128, 128), '../../escape.png': png(2)}))
    status, _, err = run(['prepare', 'ffhq', '--root', str(tmp_path / 'r'), '--archive', str(tmp_path / 'evil.zip')])
    assert_one_line_error(status, err, 'leaves the target folder')
    assert not (tmp_path / 'escape.png').exists() and not (tmp_path / 'r' / 'ffhq_16_128').exists()


def test_archive_with_wrong_layout(tmp_path):
    (tmp_path / 'afhq.zip').write_bytes(make_zip({'something/else.png': png(1)}))
    status, _, err = run(['prepare', 'afhq-dog', '--root', str(tmp_path / 'r'), '--archive', str(tmp_path / 'afhq.zip'), '--no-verify'])
    assert_one_line_error(status, err, 'no images under afhq/train/dog', 'right archive')


def test_existing_output_refused_before_downloading(small_div2k, tmp_path):
    (tmp_path / 'div2k_16_128').mkdir(); (tmp_path / 'div2k_16_128' / 'old.txt').write_text('x')
    status, _, err = run(['prepare', 'div2k', '--root', str(tmp_path), '--base-url', small_div2k.url])
    assert_one_line_error(status, err, 'already exists', '--overwrite')
    assert small_div2k.requests == []


# ---------------------------------------------------------------- --from-folder and embedded, bad input one by one

def folder_with(tmp_path, files: dict) -> Path:
    src = tmp_path / 'src'; src.mkdir()
    for name, content in files.items(): (src / name).write_bytes(content)
    return src


def prepare_from(src, out, *extra):
    return run(['prepare', '--from-folder', str(src), '--out', str(out), '--lr', '8', '--hr', '32', '--quiet', *extra])


def read_manifest(out): return json.loads((out / 'manifest.json').read_text())


def test_from_folder_happy_path(tmp_path):
    src = folder_with(tmp_path, {f'{i}.png': png(i) for i in range(3)})
    status, out, _ = prepare_from(src, tmp_path / 'out')
    assert status == 0 and '3 images written, 0 skipped' in out
    assert (read_manifest(tmp_path / 'out')['written'], len(data.PreparedSR(tmp_path / 'out'))) == (3, 3)


def test_corrupt_image_skipped_and_counted(tmp_path):
    src = folder_with(tmp_path, {'good.png': png(1), 'corrupt.png': b'\x89PNG\r\n\x1a\nbroken'})
    status, out, _ = prepare_from(src, tmp_path / 'out')
    m = read_manifest(tmp_path / 'out')
    assert status == 0 and (m['written'], m['skipped_by_reason']) == (1, {'unreadable': 1})
    assert m['skipped_files'][0]['file'].endswith('corrupt.png') and '1 unreadable' in out


def test_truncated_image_skipped_and_counted(tmp_path):
    src = folder_with(tmp_path, {'good.png': png(1), 'cut.png': png(2)[:200]})
    assert prepare_from(src, tmp_path / 'out')[0] == 0
    assert read_manifest(tmp_path / 'out')['skipped_by_reason'] == {'unreadable': 1}
    assert sorted(p.name for p in (tmp_path / 'out' / 'hr_32').iterdir()) == ['0good.png']


def uniform(mode, value, size=(40, 40)):
    b = io.BytesIO(); Image.new(mode, size, value).save(b, format='PNG'); return b.getvalue()


def test_modes_converted_correctly(tmp_path):
    "Uniform images stay uniform under bicubic resizing, so the prepared HR pixels must equal the converted colour."
    pal = Image.new('P', (40, 40), 1); pal.putpalette([0, 0, 0, 10, 200, 30])
    b = io.BytesIO(); pal.save(b, format='PNG')
    src = folder_with(tmp_path, {
        'gray.png': uniform('L', 77), 'rgba.png': uniform('RGBA', (10, 20, 30, 255)), 'clear.png': uniform('RGBA', (10, 20, 30, 0)),
        'palette.png': b.getvalue(), 'deep.png': png16(np.full((40, 40), 257 * 123, np.uint16))})
    assert prepare_from(src, tmp_path / 'out')[0] == 0
    expected = {'0gray': (77, 77, 77), '0rgba': (10, 20, 30), 'clear': (255, 255, 255), 'palette': (10, 200, 30), '0deep': (123, 123, 123)}
    for stem, colour in expected.items():
        for sub in ('hr_32', 'lr_8', 'sr_8_32'):
            a = np.asarray(Image.open(tmp_path / 'out' / sub / f'{stem}.png'))
            assert a.shape[-1] == 3 and (a == colour).all(), (stem, sub, a[0, 0])


def test_small_images_skipped_or_upscaled(tmp_path):
    src = folder_with(tmp_path, {'big.png': png(1), 'small.png': png(2, 24, 24)})
    assert prepare_from(src, tmp_path / 'a')[0] == 0
    assert read_manifest(tmp_path / 'a')['skipped_by_reason'] == {'smaller than 32 px': 1}
    assert prepare_from(src, tmp_path / 'b', '--upscale-small')[0] == 0
    assert read_manifest(tmp_path / 'b')['written'] == 2


@pytest.mark.parametrize('lr,hr', [('12', '32'), ('32', '32'), ('0', '32')])
def test_bad_scale(tmp_path, lr, hr):
    src = folder_with(tmp_path, {'a.png': png(1)})
    status, _, err = run(['prepare', '--from-folder', str(src), '--out', str(tmp_path / 'out'), '--lr', lr, '--hr', hr])
    assert_one_line_error(status, err)
    assert not (tmp_path / 'out').exists()


def test_non_integer_size_rejected_by_the_parser(tmp_path):
    status, _, err = run(['prepare', 'embedded', '--out', str(tmp_path / 'o'), '--lr', '7.5'])
    assert_one_line_error(status, err, "invalid int value: '7.5'")


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / 'empty').mkdir(); (tmp_path / 'empty' / 'readme.txt').write_text('no images here')
    assert_one_line_error(*run(['prepare', '--from-folder', str(tmp_path / 'empty'), '--out', str(tmp_path / 'o')])[::2], 'no image files')
    assert_one_line_error(*run(['prepare', '--from-folder', str(tmp_path / 'nope'), '--out', str(tmp_path / 'o')])[::2], 'does not exist')
    assert not (tmp_path / 'o').exists()


def test_all_images_unusable(tmp_path):
    src = folder_with(tmp_path, {'a.png': b'junk', 'b.png': png(1, 16, 16)})
    status, _, err = prepare_from(src, tmp_path / 'out')
    assert_one_line_error(status, err, 'none of the 2 images', '1 unreadable', '1 smaller than 32 px')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['src']


def test_existing_output_needs_overwrite(tmp_path):
    src = folder_with(tmp_path, {'a.png': png(1)})
    assert prepare_from(src, tmp_path / 'out')[0] == 0
    before = {p: p.read_bytes() for p in (tmp_path / 'out').rglob('*.png')}
    assert_one_line_error(*prepare_from(src, tmp_path / 'out')[::2], 'already exists', '--overwrite')
    assert {p: p.read_bytes() for p in (tmp_path / 'out').rglob('*.png')} == before
    status, _, _ = run(['prepare', '--from-folder', str(src), '--out', str(tmp_path / 'out'), '--lr', '4', '--hr', '16', '--overwrite', '--quiet'])
    assert status == 0 and (tmp_path / 'out' / 'hr_16').is_dir() and not (tmp_path / 'out' / 'hr_32').exists()


def test_embedded_via_cli(tmp_path):
    status, out, err = run(['prepare', 'embedded', '--out', str(tmp_path / 'e'), '--lr', '8', '--hr', '32',
                            '--photo-size', '96', '--quiet'])
    assert status == 0, err
    m = read_manifest(tmp_path / 'e')
    for split in ('train', 'test'):
        assert len(data.PreparedSR(tmp_path / 'e', split=split)) == m['splits'][split]['written'] > 0
    assert run(['prepare', 'embedded', '--root', str(tmp_path), '--photo-size', '64', '--quiet'])[0] == 0
    assert (tmp_path / 'embedded_8_32' / 'manifest.json').exists()


@pytest.mark.parametrize('argv,fragment', [
    (['prepare'], 'give either a DATASET or --from-folder'),
    (['prepare', 'div2k', '--from-folder', 'x', '--out', 'y'], 'not both'),
    (['prepare', 'div2k'], 'needs --root'),
    (['prepare', 'embedded'], 'needs --out'),
    (['prepare', '--from-folder', 'x'], 'needs --out'),
    (['prepare', 'imagenet', '--root', 'r'], "invalid choice: 'imagenet'"),
    (['prepare', 'embedded', '--out', 'o', '--bogus'], 'unrecognized arguments: --bogus'),
    (['prepare', 'div2k', '--root', 'r', '--archive', 'a.zip'], 'has 2 archives'),
])
def test_usage_errors(argv, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = run(argv)
    assert_one_line_error(status, err, fragment)
    assert list(tmp_path.iterdir()) == []


def test_help_list_version_and_registry():
    assert 'prepare' in SUBCOMMANDS
    status, out, _ = run(['--help']); assert status == 0 and 'prepare' in out
    status, out, _ = run(['prepare', '--help'])
    assert status == 0 and '--from-folder' in out and '--overwrite' in out and 'div2k' in out
    status, out, _ = run(['prepare', '--list'])
    assert status == 0 and all(name in out for name in downloads.DATASETS)
    status, out, _ = run(['--version']); assert status == 0 and out.startswith('sr3lit ')
    status, _, err = run([]); assert status == 2 and 'choose a command' in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(DataError):
        main(['prepare', '--from-folder', str(tmp_path / 'nope'), '--out', str(tmp_path / 'o'), '--debug'])
    with pytest.raises(DataError):
        main(['--debug', 'prepare', '--from-folder', str(tmp_path / 'nope'), '--out', str(tmp_path / 'o')])


# ---------------------------------------------------------------- the installed command, as a user runs it

def sr3lit_command():
    exe = Path(sys.executable).with_name('sr3lit')
    return [str(exe)] if exe.exists() else [sys.executable, '-c', 'import sys; from sr3lit.cli import main; sys.exit(main())']


def test_console_script_error_without_traceback(tmp_path):
    src = tmp_path / 'src'; src.mkdir(); (src / 'a.png').write_bytes(png(1))
    bad = subprocess.run(sr3lit_command() + ['prepare', '--from-folder', str(src), '--out', str(tmp_path / 'o'),
                                             '--lr', '12', '--hr', '32'], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and 'Traceback' not in bad.stderr
    assert bad.stderr.strip() == 'sr3lit prepare: error: the scale hr/lr must be an integer, got 32/12 = 2.67'
    assert not (tmp_path / 'o').exists()
