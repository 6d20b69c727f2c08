"""Checkpoint reading (both torch formats, restricted unpickler), architecture detection and
the strict state-dict mapping for all released configurations."""
import io
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest

from conftest import FIXTURES, SHARED, requires_shared
from fbrs_jax import CheckpointError, load_model
from fbrs_jax.convert.pth import read_state_dict
from fbrs_jax.convert.state_dict import detect_arch, variables_from_state_dict
from fbrs_jax.models.arch import RELEASED
from fbrs_jax.models.model import build_module, variables_template

KEY_FILES = {name: SHARED / 'spec' / f'keys_{name}.txt' for name in RELEASED}
# SPEC §9.1: float values (parameters + BN statistics) of the released configurations.
FLOAT_TOTALS = {'resnet34_dh128': 23_361_100, 'resnet50_dh128': 31_452_492, 'resnet101_dh256': 58_542_028,
                'hrnet18_ocr64': 10_058_665, 'hrnet32_ocr128': 31_003_245}


def fake_state_dict(name, with_num_batches=True):
    sd = {}
    for line in KEY_FILES[name].read_text().splitlines():
        key, shape = line.split('\t')
        shape = tuple(int(v) for v in shape.strip('[]').split(',') if v.strip())
        if key.endswith('num_batches_tracked'):
            if with_num_batches:
                sd[key] = np.zeros((), np.int64)
        else:
            sd[key] = np.zeros(shape, np.float32)
    return sd


# ---------------------------------------------------------------- reading
def test_reads_both_torch_formats():
    expected = np.load(FIXTURES / 'tiny_expected.npz')
    for name in ('tiny_zip.pth', 'tiny_legacy.pth'):
        sd = read_state_dict(FIXTURES / name)
        assert list(sd) == ['a.weight', 'a.bias', 'bn.num_batches_tracked', 'h.half']
        for k, v in sd.items():
            np.testing.assert_array_equal(v.astype(expected[k].dtype), expected[k], err_msg=f'{name} {k}')
        assert sd['a.bias'].shape == (3, 2)  # a transposed (non-contiguous) tensor


def _evil_zip(path, payload):
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('evil/data.pkl', payload)
        zf.writestr('evil/version', '3\n')


class _System:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


class _Eval:
    def __reduce__(self):
        return eval, ('1+1',)


@pytest.mark.parametrize('wrap_zip', [True, False])
def test_malicious_pickle_is_refused_before_running(tmp_path, wrap_zip):
    marker = tmp_path / 'pwned'
    payload = pickle.dumps({'w': _System(f'touch {marker}')}, protocol=2)
    path = tmp_path / 'evil.pth'
    if wrap_zip:
        _evil_zip(path, payload)
    else:
        path.write_bytes(payload)
    with pytest.raises(CheckpointError, match=r"refused: the pickle names the global '(posix|os|nt)\.system'"):
        read_state_dict(path)
    assert not marker.exists()
    _evil_zip(path, pickle.dumps(_Eval(), protocol=2))
    with pytest.raises(CheckpointError, match=r'(builtins|__builtin__)\.eval'):
        read_state_dict(path)


def test_pickle_cannot_modify_the_objects_it_may_use(tmp_path):
    """BUILD on a whitelisted global (setting ``dtype`` on the FloatStorage stand-in, or
    ``__defaults__`` of a rebuild function) is refused, and later files still read correctly."""
    text = lambda b: b'X' + len(b).to_bytes(4, 'little') + b
    attacks = [b'ctorch\nFloatStorage\n}' + text(b'dtype') + text(b'junk') + b'sb0}.',
               b'ctorch._utils\n_rebuild_parameter\nN}' + text(b'__defaults__') + b'K\x07\x85s\x86b0}.']
    for i, body in enumerate(attacks):
        _evil_zip(tmp_path / f'build{i}.pth', b'\x80\x02' + body)
        with pytest.raises(CheckpointError, match='tries to modify'):
            read_state_dict(tmp_path / f'build{i}.pth')
    assert set(read_state_dict(FIXTURES / 'tiny_zip.pth'))


def test_unreadable_files_give_clear_errors(tmp_path):
    good = (FIXTURES / 'tiny_zip.pth').read_bytes()
    cases = {
        'truncated.pth': good[: len(good) // 2],
        'empty.pth': b'',
        'magic.pth': b'this is not a checkpoint at all',
        'legacy_truncated.pth': (FIXTURES / 'tiny_legacy.pth').read_bytes()[:-20],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            read_state_dict(tmp_path / name)
        assert name in str(e.value) and '\n' not in str(e.value)
    with pytest.raises(CheckpointError, match='is a directory'):
        read_state_dict(tmp_path)
    with pytest.raises(CheckpointError, match='does not exist'):
        read_state_dict(tmp_path / 'missing.pth')


def test_plain_pickle_of_a_list_is_not_a_state_dict(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as zf:
        zf.writestr('x/data.pkl', pickle.dumps([1, 2, 3], protocol=2))
    (tmp_path / 'list.pth').write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match='not a state dict'):
        read_state_dict(tmp_path / 'list.pth')


# ---------------------------------------------------------------- architectures
@requires_shared
@pytest.mark.parametrize('name', list(RELEASED))
def test_detection_and_strict_mapping_for_every_released_key_set(name):
    for with_nbt in (True, False):  # released ResNet files lack num_batches_tracked
        sd = fake_state_dict(name, with_nbt)
        arch = detect_arch(sd)
        assert arch == RELEASED[name], (name, with_nbt)
    template = variables_template(build_module(arch))
    variables = variables_from_state_dict(template, sd)
    n_values = sum(int(np.prod(v.shape)) for c in variables.values() for v in _leaves(c))
    n_keys = sum(1 for k in sd)
    assert n_keys == sum(1 for c in variables.values() for _ in _leaves(c))
    if name in FLOAT_TOTALS:
        assert n_values == FLOAT_TOTALS[name]


def _leaves(tree):
    for v in tree.values():
        if isinstance(v, dict):
            yield from _leaves(v)
        else:
            yield v


@requires_shared
def test_mapping_errors_name_the_offending_key():
    template = variables_template(build_module(RELEASED['resnet34_dh128']))
    sd = fake_state_dict('resnet34_dh128')
    key = 'feature_extractor.aspp.project.0.weight'

    bad = dict(sd)
    del bad[key]
    with pytest.raises(CheckpointError, match=f'missing tensor {key}'):
        variables_from_state_dict(template, bad)
    bad = dict(sd)
    bad[key] = np.zeros((128, 641, 1, 1), np.float32)
    with pytest.raises(CheckpointError, match=rf'{key} has shape \(128, 641, 1, 1\)'):
        variables_from_state_dict(template, bad)
    bad = dict(sd)
    bad[key] = sd[key].copy()
    bad[key][0, 0, 0, 0] = np.nan
    with pytest.raises(CheckpointError, match=f'{key} contains NaN'):
        variables_from_state_dict(template, bad)
    bad = dict(sd)
    bad['head.layers.3.weight'] = np.zeros((1,), np.float32)
    with pytest.raises(CheckpointError, match='unexpected tensor head.layers.3.weight'):
        variables_from_state_dict(template, bad)
    with pytest.raises(CheckpointError, match='unknown architecture'):
        detect_arch({'foo.weight': np.zeros(3, np.float32)})


# ---------------------------------------------------------------- converted directories
@requires_shared
def test_converted_directory_reloads_bit_identical(tmp_path, r34_model):
    from fbrs_jax.convert.loading import save_converted
    save_converted(r34_model, tmp_path / 'conv')
    again = load_model(tmp_path / 'conv')
    assert again.arch == r34_model.arch
    assert again.source['sha256'] == r34_model.source['sha256']
    img = np.random.RandomState(0).randn(1, 40, 48, 3).astype(np.float32)
    pts = np.array([[[10, 12], [30, 30], [5, 40], [-1, -1]]], np.float32)
    assert np.array_equal(np.asarray(again.logits(img, pts)), np.asarray(r34_model.logits(img, pts)))
    with pytest.raises(CheckpointError, match='already holds converted weights'):
        save_converted(r34_model, tmp_path / 'conv')
    shutil.rmtree(tmp_path / 'conv' / 'variables')
    with pytest.raises(CheckpointError, match='cannot restore variables'):
        load_model(tmp_path / 'conv')
    with pytest.raises(CheckpointError, match='not a converted model directory'):
        load_model(tmp_path)


def test_half_converted_directory_round_trip(tmp_path):
    """``save_converted(half=True)``: the parameters read back as their float16 rounding, the
    batch-norm statistics unchanged, the rounding recorded; a damaged file is a CheckpointError."""
    import jax
    from fbrs_jax.convert.loading import HALF_FILE, SHIPPED_CHECKPOINT, save_converted
    model = load_model(SHIPPED_CHECKPOINT)
    save_converted(model, tmp_path / 'half', half=True)
    half = load_model(tmp_path / 'half')
    assert half.source['rounded'] == 'float16'
    for part in ('params', 'batch_stats'):
        for a, b in zip(
            jax.tree_util.tree_leaves(model.variables[part]), jax.tree_util.tree_leaves(half.variables[part])
        ):
            a, b = np.asarray(a), np.asarray(b)
            assert b.dtype == np.float32 and b.shape == a.shape
            np.testing.assert_array_equal(b, a.astype(np.float16).astype(np.float32) if part == 'params' else a)
    assert (tmp_path / 'half' / HALF_FILE).stat().st_size < 0.55 * sum(
        np.asarray(v).nbytes for v in jax.tree_util.tree_leaves(model.variables))
    data = (tmp_path / 'half' / HALF_FILE).read_bytes()
    (tmp_path / 'half' / HALF_FILE).write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='cannot restore variables'):
        load_model(tmp_path / 'half')
