"Tests for sr3lit.download's archive extraction: unsafe members refused, selected folders only, damaged archives."
import io
import tarfile
import zipfile

import pytest

from sr3lit.data import DataError
from sr3lit.download import extract_archive


def test_zip_slip_refused(tmp_path):
    for name in ('../evil.txt', '/abs/evil.txt', 'a/../../evil.txt', 'C:/evil.txt', '..\\evil.txt'):
        arc = tmp_path / 'a.zip'
        with zipfile.ZipFile(arc, 'w') as zf: zf.writestr('ok/1.txt', 'ok'); zf.writestr(name, 'bad')
        with pytest.raises(DataError, match='leaves the target folder'): extract_archive(arc, tmp_path / 'x' / 'out')
        assert not (tmp_path / 'evil.txt').exists() and not (tmp_path / 'x' / 'out').exists()


def test_zip_symlink_refused(tmp_path):
    arc = tmp_path / 'a.zip'
    with zipfile.ZipFile(arc, 'w') as zf:
        info = zipfile.ZipInfo('link'); info.external_attr = (0o120777 << 16); zf.writestr(info, '/etc/passwd')
    with pytest.raises(DataError, match='symbolic link'): extract_archive(arc, tmp_path / 'out')


@pytest.mark.parametrize('kind', ['sym', 'hard', 'abs', 'dotdot'])
def test_tar_unsafe_members_refused(tmp_path, kind):
    arc = tmp_path / 'a.tar'
    with tarfile.open(arc, 'w') as tf:
        if kind in ('sym', 'hard'):
            ti = tarfile.TarInfo('link'); ti.type = tarfile.SYMTYPE if kind == 'sym' else tarfile.LNKTYPE
            ti.linkname = '../../outside'; tf.addfile(ti)
        else:
            ti = tarfile.TarInfo('/tmp/evil' if kind == 'abs' else '../evil'); ti.size = 1; tf.addfile(ti, io.BytesIO(b'x'))
    with pytest.raises(DataError): extract_archive(arc, tmp_path / 'out')
    assert not (tmp_path / 'out').exists() and not (tmp_path / 'evil').exists()


def test_extract_selected_folders_and_formats(tmp_path):
    for suffix, mode in (('.tar.gz', 'w:gz'), ('.tar.bz2', 'w:bz2'), ('.zip', None)):
        arc = tmp_path / f'a{suffix}'
        members = {'afhq/train/dog/1.jpg': b'd', 'afhq/train/cat/2.jpg': b'c', 'afhq/val/dog/3.jpg': b'v'}
        if mode is None:
            with zipfile.ZipFile(arc, 'w') as zf:
                for n, b in members.items(): zf.writestr(n, b)
        else:
            with tarfile.open(arc, mode) as tf:
                for n, b in members.items():
                    ti = tarfile.TarInfo(n); ti.size = len(b); tf.addfile(ti, io.BytesIO(b))
        out = extract_archive(arc, tmp_path / f'out{suffix}', folders=['afhq/train/dog', 'afhq/val/dog/'])
        assert sorted(str(p.relative_to(out)) for p in out.rglob('*.jpg')) == ['afhq/train/dog/1.jpg', 'afhq/val/dog/3.jpg']


def test_damaged_or_unknown_archives(tmp_path):
    (tmp_path / 'x.zip').write_bytes(b'PK\x03\x04' + b'\0' * 50)
    (tmp_path / 'y.bin').write_bytes(b'hello')
    for name in ('x.zip', 'y.bin', 'missing.zip'):
        with pytest.raises(DataError): extract_archive(tmp_path / name, tmp_path / 'out')
    assert not (tmp_path / 'out').exists()
