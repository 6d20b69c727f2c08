"""MultiPointSampler against SPEC §5.3 / T27: count distributions, pools, erosion at the image
edge, negative strategies, merging, the no-object case."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fbrs_jax.train.sampler import MultiPointSampler, erode_rect

N = 10
DRAWS = 3000


def scene(shape=(80, 100), boxes=()):
    """int32 instances with ``boxes`` = [(id, r0, r1, c0, c1), ...]."""
    inst = np.zeros(shape, np.int32)
    for obj_id, r0, r1, c0, c1 in boxes:
        inst[r0:r1, c0:c1] = obj_id
    return inst


def draws(sampler, inst, valid_ids, seed=0, n=DRAWS):
    rng = np.random.default_rng(seed)
    return [sampler.sample(rng, inst, valid_ids) for _ in range(n)]


def used(points):
    return points[points[:, 0] >= 0].astype(int)


def truncated_geometric(n, gamma=0.7):
    p = gamma ** np.arange(n)
    return p / p.sum()


def assert_counts_follow(counts, probs):
    observed = np.bincount(counts, minlength=len(probs))
    assert len(observed) == len(probs)
    assert stats.chisquare(observed, probs * len(counts)).pvalue > 1e-3, observed


def test_output_format():
    target, points = MultiPointSampler().sample(np.random.default_rng(0), scene(boxes=[(1, 10, 30, 10, 30)]), [1])
    assert target.dtype == np.float32 and target.shape == (80, 100)
    assert set(np.unique(target)) == {0.0, 1.0} and target.sum() == 400
    assert points.dtype == np.float32 and points.shape == (2 * N, 2)
    for half in (points[:N], points[N:]):  # used slots first, then (-1, -1) padding
        k = int((half[:, 0] >= 0).sum())
        assert (half[k:] == -1).all()


def test_count_distributions():
    results = draws(MultiPointSampler(), scene(boxes=[(1, 20, 60, 30, 70)]), [1])
    positives = np.array([(p[:N, 0] >= 0).sum() for _, p in results])
    negatives = np.array([(p[N:, 0] >= 0).sum() for _, p in results])
    assert positives.min() >= 1
    assert_counts_follow(positives - 1, truncated_geometric(N))
    assert_counts_follow(negatives, truncated_geometric(N + 1))


def test_deterministic_by_seed():
    inst = scene(boxes=[(1, 10, 30, 10, 30), (2, 40, 70, 50, 90)])
    a, b = draws(MultiPointSampler(), inst, [1, 2], n=20), draws(MultiPointSampler(), inst, [1, 2], n=20)
    assert all((ta == tb).all() and (pa == pb).all() for (ta, pa), (tb, pb) in zip(a, b))


def test_erosion_never_erodes_from_the_image_edge():
    inst = scene((20, 20), [(1, 0, 8, 0, 12)])
    expected = np.zeros((20, 20), bool)
    expected[0:5, 0:9] = True  # 3 px from the inner sides only (zero padding would give [3:5, 3:9])
    np.testing.assert_array_equal(erode_rect(inst == 1, 3), expected)
    sampler = MultiPointSampler(positive_erode_prob=1.0)
    hits = np.zeros((20, 20), bool)
    for _, points in draws(sampler, inst, [1], n=400):
        r, c = used(points[:N]).T
        hits[r, c] = True
    np.testing.assert_array_equal(hits, expected)


def test_positives_inside_object_and_erosion_frequency():
    # Object 1: a 7×20 block whose 3× erosion keeps a 1×14 core (> 10 px) plus a 6 px wide strip
    # that erodes away entirely: an eroded draw has all positives in the core, a plain one rarely.
    inst = scene((60, 300), [(1, 10, 17, 10, 30), (1, 30, 36, 0, 300)])
    core = np.zeros_like(inst, bool)
    core[13, 13:27] = True
    np.testing.assert_array_equal(erode_rect(inst == 1, 3), core)
    first_in_core = []
    for _, points in draws(MultiPointSampler(), inst, [1]):
        r, c = used(points[:N]).T
        assert (inst[r, c] == 1).all()
        first_in_core.append(core[r[0], c[0]])
    expected = 0.9 + 0.1 * core.sum() / (inst == 1).sum()
    assert abs(np.mean(first_in_core) - expected) < 0.025


def test_small_object_keeps_its_full_mask():
    inst = scene((30, 30), [(1, 5, 12, 5, 12)])  # 7×7 erodes to 1 px (≤ 10): original kept
    hits = np.zeros((30, 30), bool)
    for _, points in draws(MultiPointSampler(positive_erode_prob=1.0), inst, [1], n=500):
        r, c = used(points[:N]).T
        hits[r, c] = True
    np.testing.assert_array_equal(hits, inst == 1)


def test_border_negatives_fill_the_dilation_ring():
    inst = scene((40, 40), [(1, 10, 30, 10, 30), (2, 32, 40, 0, 8)])  # area 400 -> 2 dilations
    ring = np.zeros_like(inst, bool)
    ring[8:32, 8:32] = True
    ring[10:30, 10:30] = False
    sampler = MultiPointSampler(negative_bg_prob=0.0, negative_other_prob=0.0, negative_border_prob=1.0,
                                merge_objects_prob=0.0)
    hits = np.zeros_like(ring)
    for target, points in draws(sampler, inst, [1, 2]):
        if target[15, 15]:
            r, c = used(points[N:]).T
            hits[r, c] = True
    np.testing.assert_array_equal(hits, ring)


def test_border_ring_stops_at_the_image_edge():
    inst = scene((30, 30), [(1, 0, 9, 0, 9)])  # area 81 -> 1 dilation
    sampler = MultiPointSampler(negative_bg_prob=0.0, negative_other_prob=0.0, negative_border_prob=1.0)
    hits = np.zeros((30, 30), bool)
    for _, points in draws(sampler, inst, [1], n=300):
        r, c = used(points[N:]).T
        hits[r, c] = True
    ring = np.zeros_like(hits)
    ring[:10, :10] = True
    ring[:9, :9] = False
    np.testing.assert_array_equal(hits, ring)


def test_negative_strategies_and_other_objects():
    # Objects 1 and 2 valid, 3 ignored (small): 'other' negatives land on 2 or 3, never on bg.
    inst = scene((120, 120), [(1, 20, 40, 20, 40), (2, 70, 100, 70, 100), (3, 100, 105, 10, 14)])
    ring = np.zeros_like(inst, bool)
    ring[18:42, 18:42] = True
    ring[20:40, 20:40] = False
    sampler = MultiPointSampler(merge_objects_prob=0.0)
    kinds, other_hits = [], set()
    for target, points in draws(sampler, inst, [1, 2], n=4000):
        r, c = used(points[N:]).T
        assert not target[r, c].any()
        if not target[30, 30] or len(r) == 0:
            continue
        if ring[r, c].all():
            kinds.append('border')
        elif (inst[r, c] > 1).all():
            kinds.append('other')
            other_hits.update(inst[r, c].tolist())
        else:
            kinds.append('bg')
    freq = [kinds.count(k) / len(kinds) for k in ('bg', 'other', 'border')]
    np.testing.assert_allclose(freq, (0.1, 0.4, 0.5), atol=0.05)
    assert other_hits == {2, 3}


def test_other_falls_back_to_bg_when_no_other_valid_object():
    inst = scene((60, 60), [(1, 10, 30, 10, 30), (3, 40, 44, 40, 44)])  # 3 is ignored
    sampler = MultiPointSampler(negative_bg_prob=0.0, negative_other_prob=1.0, negative_border_prob=0.0)
    labels = np.concatenate([inst[tuple(used(p[N:]).T)] for _, p in draws(sampler, inst, [1], n=300)])
    assert (labels != 1).all() and (labels == 0).mean() > 0.9


def test_merging_frequency_and_first_points():
    inst = scene((80, 120), [(1, 5, 35, 5, 45), (2, 45, 75, 60, 110)])
    union = inst > 0
    merged = 0
    for target, points in draws(MultiPointSampler(), inst, [1, 2]):
        pos = used(points[:N])
        labels = set(inst[pos[:, 0], pos[:, 1]].tolist())
        if (target > 0).sum() == union.sum():
            merged += 1
            np.testing.assert_array_equal(target > 0, union)
            assert labels == {1, 2} and 2 <= len(pos) <= N
        else:
            assert len(labels) == 1 and (target > 0).sum() == (inst == labels.pop()).sum()
    assert abs(merged / DRAWS - 0.15) < 0.025


def test_merge_needs_two_valid_objects():
    inst = scene((60, 60), [(1, 5, 25, 5, 25), (2, 30, 34, 30, 34)])  # 2 ignored
    for target, _ in draws(MultiPointSampler(merge_objects_prob=1.0), inst, [1], n=50):
        np.testing.assert_array_equal(target > 0, inst == 1)


def test_no_valid_object():
    inst = scene((40, 40), [(3, 10, 14, 10, 14)])  # only an ignored object
    negatives = []
    for target, points in draws(MultiPointSampler(), inst, [], n=500):
        assert not target.any() and (points[:N] == -1).all()
        negatives.append(used(points[N:]))
    negatives = np.concatenate(negatives)
    assert len(negatives) > 500 and (inst[negatives[:, 0], negatives[:, 1]] == 0).all()


@pytest.mark.parametrize('probs', [(0.1, 0.4, 0.4), (0.5, 0.5, 0.5)])
def test_rejects_bad_strategy_probs(probs):
    with pytest.raises(ValueError):
        MultiPointSampler(negative_bg_prob=probs[0], negative_other_prob=probs[1], negative_border_prob=probs[2])
