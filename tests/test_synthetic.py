"""synthetic_shapes scenes and readers, SBD training scenes and sample weights, scene builders."""
import hashlib
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fbrs_jax.data.readers import DatasetError, SBDScenes, open_dataset, sbd_sample_weights
from fbrs_jax.data.synthetic import SPLIT_SEED_OFFSETS, SyntheticShapes, scene

HW = (60, 80)


def _digest(seed: int) -> str:
    image, instances = scene(seed, HW)
    return hashlib.sha256(image.tobytes() + instances.tobytes()).hexdigest()


def test_scene_is_deterministic_across_calls_and_processes():
    a, b = scene(7, HW), scene(7, HW)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(scene(8, HW)[0], a[0])
    code = 'from test_synthetic import _digest; print(_digest(7))'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(__file__))
    assert out.stdout.strip() == _digest(7)


def test_scene_objects_statistics():
    counts, touching = [], 0
    for seed in range(50):
        image, instances = scene(seed, HW)
        assert image.dtype == np.uint8 and image.shape == (*HW, 3)
        assert instances.dtype == np.int32 and instances.shape == HW
        k = instances.max()
        assert set(np.unique(instances)) <= set(range(k + 1))
        assert (np.bincount(instances.ravel(), minlength=k + 1)[1:] >= 20).all()   # ids 1..k all visible
        counts.append(k)
        for a, b in ((instances[1:], instances[:-1]), (instances[:, 1:], instances[:, :-1])):
            touching += bool(((a != b) & (a > 0) & (b > 0)).any())
    assert min(counts) >= 1 and max(counts) <= 7 and 3 <= np.mean(counts) <= 7
    assert touching >= 10


def test_eval_reader_and_disjoint_splits():
    reader = SyntheticShapes('eval', num=3, hw=HW)
    assert len(reader) == 3 and reader.name(2) == 'eval_00002' and reader.image_hw(0) == HW
    sample = reader[1]
    name, image, instances = reader.scene(1)
    assert sample.name == name == 'eval_00001'
    np.testing.assert_array_equal(sample.image, image)
    areas = np.bincount(instances.ravel())
    assert sample.gt.dtype == np.int32 and sample.gt.sum() == areas[1:].max()
    np.testing.assert_array_equal(sample.gt, instances == np.argmax(areas[1:]) + 1)
    np.testing.assert_array_equal(image, scene(SPLIT_SEED_OFFSETS['eval'] + 1, HW)[0])
    with pytest.raises(IndexError):
        reader[3]
    train = SyntheticShapes('train')
    assert len(train) == 10000 and train.name(5) == 'train_00005'
    assert {train.seed(i) for i in range(len(train))}.isdisjoint(reader.seed(i) for i in range(len(reader)))
    with pytest.raises(DatasetError, match='unknown synthetic_shapes split'):
        SyntheticShapes('test')


def test_open_dataset_without_folder():
    reader = open_dataset('synthetic_shapes', None)
    assert len(reader) == 30 and reader.name(0) == 'eval_00000' and reader.image_hw(0) == (120, 160)
    with pytest.raises(DatasetError, match='GrabCut needs a data root folder'):
        open_dataset('GrabCut', None)


def _write_sbd(root, names_by_split, instances):
    """An SBD folder: images img/<name>.jpg, instance maps inst/<name>.mat (GTinst), split lists."""
    from scipy.io import savemat
    (root / 'img').mkdir(parents=True)
    (root / 'inst').mkdir()
    for name, inst in instances.items():
        Image.fromarray(np.full((*inst.shape, 3), 90, np.uint8)).save(root / 'img' / f'{name}.jpg')
        gtinst = np.zeros((1, 1), dtype=[('Segmentation', 'O'), ('Boundaries', 'O'), ('Categories', 'O')])
        gtinst[0, 0] = (inst.astype(np.uint8), np.zeros(1), np.zeros(1))
        savemat(root / 'inst' / f'{name}.mat', {'GTinst': gtinst})
    for split, names in names_by_split.items():
        (root / f'{split}.txt').write_text('\n'.join(names) + '\n')
    return root


def _sbd_instances():
    inst = np.zeros((20, 24), np.uint8)
    inst[2:6, 2:6] = 5                                 # fill 1
    inst[np.arange(4, 20), np.arange(23, 7, -1)] = 2   # diagonal line: 16 / 256 < 0.08 -> buggy
    inst[0, 10:22] = 3                                 # thin but full bar: kept
    return inst


def test_sbd_scenes_remove_buggy_masks(tmp_path):
    inst = _sbd_instances()
    root = _write_sbd(tmp_path / 'SBD', {'train': ['x1'], 'val': ['x1']}, {'x1': inst})
    scenes = SBDScenes(root, 'train')
    assert len(scenes) == 1 and scenes.name(0) == 'x1'
    name, image, instances = scenes.scene(0)
    assert name == 'x1' and image.shape == (20, 24, 3) and instances.dtype == np.int32
    expected = inst.astype(np.int32)
    expected[expected == 2] = 0
    np.testing.assert_array_equal(instances, expected)
    assert [open_dataset('SBD', tmp_path).name(i) for i in range(3)] == ['x1_2', 'x1_3', 'x1_5']  # evaluation keeps it


def test_scene_builders_round_trip(tmp_path):
    from fbrs_jax.data.tfds_builders import PreparedScenes, SyntheticShapesConfig, prepare_scenes
    config = SyntheticShapesConfig(name='tiny', num_train=3, num_eval=2, hw=(40, 56))
    builder = prepare_scenes('synthetic_shapes', tmp_path / 'tfds', config=config)
    for split, num in (('train', 3), ('eval', 2)):
        prepared, generated = PreparedScenes(builder, split), SyntheticShapes(split, num, (40, 56))
        assert len(prepared) == num
        for i in range(num):
            assert prepared.name(i) == generated.name(i)
            for got, want in zip(prepared.scene(i), generated.scene(i)):
                np.testing.assert_array_equal(got, want)
    root = _write_sbd(tmp_path / 'SBD', {'train': ['x1', 'x2'], 'val': ['x2']},
                      {'x1': _sbd_instances(), 'x2': np.ones((20, 24), np.uint8)})
    sbd = prepare_scenes('SBD', tmp_path / 'tfds', manual_dir=root)
    prepared, reader = PreparedScenes(sbd, 'train'), SBDScenes(root, 'train')
    assert len(prepared) == 2 and len(PreparedScenes(sbd, 'val')) == 1
    for i in range(2):
        for got, want in zip(prepared.scene(i), reader.scene(i)):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize('protocol', [2, 4])
def test_sbd_sample_weights(tmp_path, protocol):
    path = tmp_path / 'weights.pkl'
    scores = [np.float32(0.9), 0.5, np.float32(0.99)]
    path.write_bytes(pickle.dumps([(1, 'b', scores[0]), (0, 'a', scores[1]), (2, 'c', scores[2])], protocol))
    probs = sbd_sample_weights(path)
    expected = (1 - np.array([scores[1], scores[0], scores[2]], np.float64)) ** 1.25
    np.testing.assert_allclose(probs, expected / expected.sum())


class _Exploit:
    def __reduce__(self):
        return os.system, ('echo pwned',)


def test_sbd_sample_weights_rejects_foreign_pickles(tmp_path):
    path = tmp_path / 'weights.pkl'
    path.write_bytes(pickle.dumps([(0, 'a', _Exploit())]))
    with pytest.raises(DatasetError, match='refused: the pickle names the global (posix|nt).system'):
        sbd_sample_weights(path)
    path.write_bytes(pickle.dumps({'a': 0.5}))
    with pytest.raises(DatasetError, match=r'not a list of \(index, image name, score\) tuples'):
        sbd_sample_weights(path)
    path.write_bytes(b'not a pickle')
    with pytest.raises(DatasetError, match='cannot read sample weights'):
        sbd_sample_weights(path)
