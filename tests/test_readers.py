"""Dataset readers (reference layouts) and the TFDS builders over them."""
import numpy as np
import pytest
from PIL import Image

from conftest import SHARED, make_grabcut
from fbrs_jax.data.readers import DatasetError, open_dataset

DATA = SHARED / 'data'
requires_data = pytest.mark.skipif(not (DATA / 'GrabCut').is_dir(), reason=f'evaluation data not found at {DATA}')


def test_grabcut_layout_and_mask_values(tmp_path):
    reader = open_dataset('GrabCut', make_grabcut(tmp_path / 'GrabCut').parent)
    assert len(reader) == 2 and [reader.name(i) for i in range(2)] == ['a.png', 'b.bmp']
    s = reader[0]
    assert s.image.dtype == np.uint8 and s.image.shape == (40, 50, 3)
    assert s.gt.dtype == np.int32 and set(np.unique(s.gt)) == {-1, 0, 1}
    assert (s.gt == 1).sum() == 100 and (s.gt == -1).sum() == 12


def test_size_mismatch_and_missing_folders_are_clear_errors(tmp_path):
    make_grabcut(tmp_path / 'GrabCut', mask_size=(41, 50))
    reader = open_dataset('GrabCut', tmp_path)
    with pytest.raises(DatasetError, match=r'image and mask sizes differ for .*a\.png: 40x50 vs 41x50'):
        reader[0]
    with pytest.raises(DatasetError, match='dataset folder not found: .*Berkeley'):
        open_dataset('Berkeley', tmp_path)
    with pytest.raises(DatasetError, match='unknown dataset'):
        open_dataset('Pascal', tmp_path)


def test_sbd_instances(tmp_path):
    from scipy.io import savemat
    root = tmp_path / 'SBD'
    (root / 'img').mkdir(parents=True)
    (root / 'inst').mkdir()
    inst = np.zeros((12, 16), np.uint8)
    inst[1:4, 1:4], inst[6:9, 6:12] = 3, 1
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(root / 'img' / 'x1.jpg')
    gtinst = np.zeros((1, 1), dtype=[('Segmentation', 'O'), ('Boundaries', 'O'), ('Categories', 'O')])
    gtinst[0, 0] = (inst, np.zeros(1), np.zeros(1))
    savemat(root / 'inst' / 'x1.mat', {'GTinst': gtinst})
    (root / 'val.txt').write_text('x1\n')
    reader = open_dataset('SBD', tmp_path)
    assert [reader.name(i) for i in range(len(reader))] == ['x1_1', 'x1_3']
    assert reader[1].gt.sum() == 9 and reader[0].gt.sum() == 18


@requires_data
def test_real_sets_load_in_reference_order():
    grabcut, berkeley = open_dataset('GrabCut', DATA), open_dataset('Berkeley', DATA)
    assert (len(grabcut), len(berkeley)) == (50, 100)
    assert grabcut.name(0) == '106024.jpg' and berkeley.name(0) == '101085.jpg'
    s = berkeley[1]                       # 101087: stored rotated so that it matches its mask
    assert s.image.shape[:2] == s.gt.shape == (481, 321)
    gts = [grabcut[i].gt for i in range(len(grabcut))]
    assert all(set(np.unique(g)) <= {-1, 0, 1} for g in gts)
    assert sum(bool((g == -1).any()) for g in gts) == 42          # masks with the 128 ignore band


def test_tfds_builder_matches_the_reader(tmp_path):
    from fbrs_jax.data.tfds_builders import prepare
    root = make_grabcut(tmp_path / 'GrabCut')
    source = prepare('GrabCut', root, tmp_path / 'tfds').as_data_source(split='test')
    reader = open_dataset('GrabCut', tmp_path)
    assert len(source) == len(reader) == 2
    for i in range(2):
        assert source[i]['name'].decode() == reader.name(i)
        np.testing.assert_array_equal(source[i]['image'], reader[i].image)
        np.testing.assert_array_equal(source[i]['gt'], reader[i].gt)


@pytest.mark.parametrize('name', ['DAVIS', 'COCO_MVal'])
def test_union_mask_layouts(tmp_path, name):
    """img/ + gt/: maximum over the channels, > 0 -> object (all objects together)."""
    root = tmp_path / name
    (root / 'img').mkdir(parents=True)
    (root / 'gt').mkdir()
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(root / 'img' / 'x.jpg')
    gt = np.zeros((10, 12, 3), np.uint8)
    gt[1:3, 1:3, 0] = 200          # object 1 in the red channel
    gt[5:8, 5:9, 2] = 1            # object 2, dark blue
    Image.fromarray(gt).save(root / 'gt' / 'x.png')
    s = open_dataset(name, tmp_path)[0]
    assert s.gt.dtype == np.int32 and s.gt.sum() == 4 + 12 and set(np.unique(s.gt)) == {0, 1}
