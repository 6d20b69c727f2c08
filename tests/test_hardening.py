"""Hardening: a fuzzed checkpoint reader, odd image files read as OpenCV reads them, one clear
error for every bad input, and nothing finished lost when an evaluation is killed or the disk
fills up.

The fuzz run here is short (``FBRS_FUZZ_EXAMPLES``, default 150 mutated files); a long one:

    FBRS_FUZZ_EXAMPLES=20000 python -m pytest tests/test_hardening.py -k fuzz -q
"""
import io
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from conftest import FIXTURES, REPO, make_grabcut
from fbrs_jax.cli import main
from fbrs_jax.convert.pth import CheckpointError, read_state_dict
from fbrs_jax.data.readers import DatasetError, open_dataset, read_rgb
from fbrs_jax.clicks import Click

SIZES = ((40, 50), (30, 20), (36, 36), (24, 44), (40, 40), (32, 48))
FUZZ_EXAMPLES = int(os.environ.get('FBRS_FUZZ_EXAMPLES', '150'))
ZIP_MEMBERS = {i.filename: zipfile.ZipFile(FIXTURES / 'tiny_zip.pth').read(i.filename)
               for i in zipfile.ZipFile(FIXTURES / 'tiny_zip.pth').infolist()}
LEGACY = (FIXTURES / 'tiny_legacy.pth').read_bytes()
EXPECTED = {k: v.copy() for k, v in read_state_dict(FIXTURES / 'tiny_zip.pth').items()}
OPCODES = b'().0123N}]cqhbsRXKJMtu\x80\x85\x86\x87\x8a\x8c\x94\x95'   # pickle opcodes worth splicing in


def _mutate(data: bytes, edits, inserts, cut) -> bytes:
    b = bytearray(data)
    for pos, value in edits:
        b[pos % len(b)] = value
    for pos, chunk in inserts:
        b[pos % (len(b) + 1):pos % (len(b) + 1)] = chunk
    return bytes(b[:cut] if cut is not None else b)


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(target='zip bytes', edits=[(3085, 64)], inserts=[], cut=None)   # central-directory version 6.4
@example(target='pickle in zip', edits=[(0, 70)], inserts=[], cut=None)   # FLOAT opcode: a newline in the error
@given(target=st.sampled_from(['pickle in zip', 'storage in zip', 'zip bytes', 'legacy']),
       edits=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6),
       inserts=st.lists(st.tuples(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=4)
                                  | st.sampled_from([bytes([o]) for o in OPCODES])), max_size=3),
       cut=st.none() | st.integers(0, 1 << 12))
def test_fuzzed_checkpoints_give_a_state_dict_or_a_checkpoint_error(target, edits, inserts, cut):
    """Mutated valid files (byte edits, spliced opcodes, truncation; the zip's pickle and a
    storage re-zipped so their CRCs hold): the reader returns arrays or raises its own one-line
    error - and a valid file read afterwards is unchanged (nothing in the reader was modified)."""
    if target == 'legacy':
        data = _mutate(LEGACY, edits, inserts, cut)
    elif target == 'zip bytes':
        data = _mutate(_zip(ZIP_MEMBERS), edits, inserts, cut)
    else:
        member = 'tiny_zip/data.pkl' if target == 'pickle in zip' else 'tiny_zip/data/0'
        data = _zip(dict(ZIP_MEMBERS, **{member: _mutate(ZIP_MEMBERS[member], edits, inserts, cut)}))
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / 'fuzzed.pth'
        path.write_bytes(data)
        try:
            sd = read_state_dict(path)
        except CheckpointError as e:
            assert '\n' not in str(e)
        else:
            assert all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in sd.items())
    again = read_state_dict(FIXTURES / 'tiny_zip.pth')
    assert list(again) == list(EXPECTED) and all(np.array_equal(again[k], EXPECTED[k]) for k in EXPECTED)


def test_truncated_zip_is_named_as_such(tmp_path):
    data = (FIXTURES / 'tiny_zip.pth').read_bytes()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='truncated or corrupt zip archive'):
        read_state_dict(tmp_path / 'cut.pth')


@pytest.mark.parametrize('name', sorted(np.load(FIXTURES / 'odd_images' / 'expected.npz').files))
def test_odd_image_formats_read_as_opencv_reads_them(name):
    """Gray 8/16-bit, 16-bit RGB, RGBA, palette, CMYK JPEG and an EXIF-rotated JPEG against
    ``cv2.imread(f)[..., ::-1]`` (made by tests/fixtures/make_image_fixtures.py)."""
    expected = np.load(FIXTURES / 'odd_images' / 'expected.npz')[name]
    np.testing.assert_array_equal(read_rgb(FIXTURES / 'odd_images' / name), expected)


def test_dataset_folders_missing_files_are_listed(tmp_path):
    root = make_grabcut(tmp_path / 'GrabCut')
    (root / 'data_GT' / '.DS_Store').write_bytes(b'\x00')            # ignored, as are Thumbs.db
    assert len(open_dataset('GrabCut', tmp_path)) == 2
    (root / 'boundary_GT' / 'c.bmp').write_bytes(b'')
    with pytest.raises(DatasetError, match=r'no image in .*data_GT for the masks c\.bmp'):
        open_dataset('GrabCut', tmp_path)
    (root / 'boundary_GT' / 'c.bmp').unlink()
    for name in 'ab':
        (root / 'boundary_GT' / f'{name}.bmp').unlink()
    with pytest.raises(DatasetError, match=r'no mask in .*boundary_GT for a\.png, b\.bmp$'):
        open_dataset('GrabCut', tmp_path)
    for f in (root / 'data_GT').iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match='no images in'):
        open_dataset('GrabCut', tmp_path)


class _ConstantPredictor:
    """Predicts all background: enough to drive the protocol without a model."""
    def set_image(self, image):
        self.hw = image.shape[:2]

    def predict(self, clicks):
        return np.zeros(self.hw, np.float32)


@pytest.mark.parametrize('fill', [0, -1])
def test_gt_without_object_follows_the_reference_clicker(fill):
    """No object (all background) or only ignore pixels: the reference clicker's first click is
    negative at (0, 0) (no false negative, the first maximum of a zero distance map), later
    clicks the same again; IoU with an empty union is 0 here (the reference's 0/0 is NaN; both
    never reach a threshold, so NoC is the click limit either way)."""
    from fbrs_jax.eval.evaluate import evaluate_sample
    gt = np.full((12, 16), fill, np.int32)
    record = evaluate_sample(_ConstantPredictor(), np.zeros((12, 16, 3), np.uint8), gt, 3, 0.9, 0.49)
    assert record['clicks'] == [[0, 0, 0]] * 3 and record['ious'] == [0.0, 0.0, 0.0]


def test_bad_clicks_are_value_errors(api_model):
    import fbrs_jax
    p = fbrs_jax.make_predictor(api_model, 'NoBRS', zoom_in=None)
    with pytest.raises(ValueError, match='set_image'):
        p.predict([Click(1, 1, True)])
    p.set_image(np.zeros((20, 30, 3), np.uint8))
    cases = {'outside the 20x30 image': [Click(20, 5, True)], 'non-finite': [Click(float('nan'), 5, True)],
             'at least one click': [], 'not a number': [Click('a', 5, True)],
             'is_positive must be True or False': [Click(1, 5, 'yes')], 'triples': [(1, 2)]}
    for message, clicks in cases.items():
        with pytest.raises(ValueError, match=message):
            p.predict(clicks)
    with pytest.raises(ValueError, match='outside'):
        p.predict([Click(2, 2, True), Click(-1, 3, False)])


def test_cli_exit_codes_and_debug(tmp_path, capsys):
    assert main(['evaluate', '--mode', 'f-BRS-Z']) == 2                    # bad option value: usage
    assert main(['evaluate', '--datasets', 'Nowhere']) == 2
    assert main(['evaluate', '--checkpoint', str(tmp_path / 'none.pth')]) == 1   # data problem
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith('fbrs-jax: error: ') for line in err)
    with pytest.raises(ValueError):
        main(['evaluate', '--debug', '--checkpoint', str(tmp_path / 'none.pth')])


def _evaluate_args(checkpoint, data, out):
    return ['evaluate', '--checkpoint', checkpoint, '--mode', 'NoBRS', '--datasets', 'GrabCut',
            '--data-root', str(data), '--n-clicks', '2', '--out', str(out), '--quiet']


def _records(out):
    return [json.loads(x) for x in (out / 'GrabCut.jsonl').read_text().splitlines()]


@pytest.fixture(scope='module')
def grabcut_four(tmp_path_factory, r34_checkpoint):
    """Six small GrabCut-layout samples, their uninterrupted NoBRS results and the checkpoint."""
    root = tmp_path_factory.mktemp('killed')
    data = root / 'data'
    make_grabcut(data / 'GrabCut', sizes=SIZES)
    assert main(_evaluate_args(r34_checkpoint, data, root / 'whole')) == 0
    return data, _records(root / 'whole'), r34_checkpoint


def test_sigkill_mid_dataset_then_resume_gives_identical_results(grabcut_four, tmp_path):
    data, whole, checkpoint = grabcut_four
    out = tmp_path / 'killed'
    env = dict(os.environ, FBRS_JAX_CACHE=str(REPO / '.jax_cache'))
    proc = subprocess.Popen([sys.executable, '-m', 'fbrs_jax.cli', *_evaluate_args(checkpoint, data, out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not ((out / 'GrabCut.jsonl').exists() and (out / 'GrabCut.jsonl').read_text().count('\n') >= 1):
            assert proc.poll() is None and time.time() < deadline, 'evaluation ended before it could be killed'
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert 1 <= len(_records(out)) < len(SIZES)
    assert main(_evaluate_args(checkpoint, data, out)) == 0
    resumed = _records(out)
    assert [(r['index'], r['clicks'], r['ious']) for r in resumed] == [
        (r['index'], r['clicks'], r['ious']) for r in whole
    ]


def test_disk_full_while_writing_keeps_the_finished_samples(grabcut_four, tmp_path, monkeypatch, capsys):
    from fbrs_jax.eval import evaluate
    data, whole, checkpoint = grabcut_four
    out = tmp_path / 'full'
    real_append = evaluate.ResultsFile.append

    def append_until_full(self, record):
        if len(self.records) == 2:           # the third sample finds the disk full mid-line
            with open(self.path, 'a') as f:
                f.write(json.dumps(record)[:25])
            raise OSError(28, 'No space left on device')
        real_append(self, record)
    monkeypatch.setattr(evaluate.ResultsFile, 'append', append_until_full)
    assert main(_evaluate_args(checkpoint, data, out)) == 1
    assert 'No space left on device' in capsys.readouterr().err
    monkeypatch.setattr(evaluate.ResultsFile, 'append', real_append)
    assert main(_evaluate_args(checkpoint, data, out)) == 0
    assert [(r['clicks'], r['ious']) for r in _records(out)] == [(r['clicks'], r['ious']) for r in whole]


def test_unwritable_output_fails_before_evaluating(grabcut_four, tmp_path, capsys):
    data, _, checkpoint = grabcut_four
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    assert main(_evaluate_args(checkpoint, data, blocker / 'out')) == 1
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'file' in err


def test_changed_dataset_is_not_mixed_into_old_results(grabcut_four, tmp_path, capsys):
    data, _, checkpoint = grabcut_four
    copy = tmp_path / 'data'
    make_grabcut(copy / 'GrabCut', sizes=SIZES)
    out = tmp_path / 'out'
    assert main(_evaluate_args(checkpoint, copy, out)) == 0
    (copy / 'GrabCut' / 'data_GT' / 'a.png').rename(copy / 'GrabCut' / 'data_GT' / 'z.png')
    (copy / 'GrabCut' / 'boundary_GT' / 'a.bmp').rename(copy / 'GrabCut' / 'boundary_GT' / 'z.bmp')
    assert main(_evaluate_args(checkpoint, copy, out)) == 1
    assert 'another version of GrabCut' in capsys.readouterr().err
