"""The reference training click sampler ``MultiPointSampler`` (SPEC §5.3, T27), in numpy/scipy.

Morphology follows OpenCV's defaults: ``cv2.erode``/``cv2.dilate`` with a 3×3 ones kernel and
``n`` iterations equal one pass with a (2n+1)×(2n+1) rectangle, and the image outside counts as
foreground for erosion (objects never erode from the image edge) and as background for dilation.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import ndimage

NEGATIVE_STRATEGIES = ('bg', 'other', 'border')


def erode_rect(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``cv2.erode(mask, ones((3, 3)), iterations=iterations)`` for a boolean mask."""
    return ndimage.minimum_filter(mask, size=2 * iterations + 1, mode='constant', cval=True)


def dilate_rect(mask: np.ndarray, iterations: int) -> np.ndarray:
    """``cv2.dilate(mask, ones((3, 3)), iterations=iterations)`` for a boolean mask."""
    return ndimage.maximum_filter(mask, size=2 * iterations + 1, mode='constant', cval=False)


def geometric_probs(n: int, gamma: float) -> np.ndarray:
    """P(k) ∝ gamma**k for k in 0..n-1."""
    p = gamma ** np.arange(n, dtype=np.float64)
    return p / p.sum()


@dataclasses.dataclass(frozen=True)
class MultiPointSampler:
    """Training target and clicks for one augmented scene, as the reference sampler draws them."""

    max_num_points: int = 10
    prob_gamma: float = 0.7
    expand_ratio: float = 0.1
    positive_erode_prob: float = 0.9
    positive_erode_iters: int = 3
    negative_bg_prob: float = 0.1
    negative_other_prob: float = 0.4
    negative_border_prob: float = 0.5
    merge_objects_prob: float = 0.15
    max_num_merged_objects: int = 2

    def __post_init__(self):
        if not math.isclose(sum(self.negative_probs), 1.0):
            raise ValueError(f'negative strategy probabilities {self.negative_probs} do not sum to 1')

    @property
    def negative_probs(self) -> tuple[float, float, float]:
        return (self.negative_bg_prob, self.negative_other_prob, self.negative_border_prob)

    def sample(self, rng: np.random.Generator, instances: np.ndarray,
               valid_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``target`` float32 (H, W) 0/1 and ``points`` float32 (2N, 2) (row, col): N positive slots
        then N negative slots, unused slots (−1, −1). ``valid_ids`` are the non-ignored objects of
        ``instances`` (0 = background); ignored objects are background of the target and 'other'
        objects for the negatives."""
        valid_ids = list(valid_ids)
        if not valid_ids:
            target = np.zeros(instances.shape, bool)
            positives = self._pad(np.zeros((0, 2), np.int64))
            negative_pool = instances == 0
        else:
            num_merged = self._num_objects_to_select(rng, len(valid_ids))
            selected = rng.choice(valid_ids, size=num_merged, replace=False)
            masks = [instances == obj_id for obj_id in selected]
            target = np.logical_or.reduce(masks)
            pools = [self._positive_pool(rng, m) for m in masks]
            positives = self._positive_points(rng, pools)
            negative_pool = self._negative_pool(rng, instances, target, len(valid_ids), num_merged)
        negatives = self._pad(self._draw_points(rng, negative_pool, self._draw_count(rng, positive=False)))
        points = np.concatenate([positives, negatives]).astype(np.float32)
        return target.astype(np.float32), points

    def _num_objects_to_select(self, rng: np.random.Generator, num_valid: int) -> int:
        if num_valid > 1 and rng.random() < self.merge_objects_prob:
            return int(rng.integers(2, min(num_valid, self.max_num_merged_objects) + 1))
        return 1

    def _positive_pool(self, rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
        """The object eroded with prob ``positive_erode_prob`` if more than 10 pixels survive."""
        if rng.random() > self.positive_erode_prob:
            return mask
        eroded = erode_rect(mask, self.positive_erode_iters)
        return eroded if eroded.sum() > 10 else mask

    def _negative_pool(self, rng: np.random.Generator, instances: np.ndarray, target: np.ndarray,
                       num_valid: int, num_selected: int) -> np.ndarray:
        strategy = NEGATIVE_STRATEGIES[rng.choice(3, p=self.negative_probs)]
        if strategy == 'border':
            radius = int(np.ceil(self.expand_ratio * np.sqrt(target.sum())))
            return dilate_rect(target, radius) & ~target
        if strategy == 'other' and num_valid > num_selected:
            return (instances > 0) & ~target
        return ~target

    def _positive_points(self, rng: np.random.Generator, pools: list[np.ndarray]) -> np.ndarray:
        """One object: its sampled list. Merged objects: every object's first point plus a random
        subset of the others' remaining points, shuffled."""
        per_object = [self._pad(self._draw_points(rng, pool, self._draw_count(rng, positive=True)))
                      for pool in pools]
        if len(per_object) == 1:
            return per_object[0]
        firsts = np.stack([pts[0] for pts in per_object])
        rest = np.concatenate([pts[1:][pts[1:, 0] >= 0] for pts in per_object])
        num_extra = min(len(rest), self.max_num_points - len(firsts))
        extra = rest[rng.choice(len(rest), size=num_extra, replace=False)]
        return self._pad(rng.permutation(np.concatenate([firsts, extra])))

    def _draw_count(self, rng: np.random.Generator, positive: bool) -> int:
        """Positive: 1 + k, k in 0..N-1; negative: k in 0..N; P(k) ∝ prob_gamma**k."""
        if positive:
            return 1 + int(rng.choice(self.max_num_points, p=geometric_probs(self.max_num_points, self.prob_gamma)))
        n = self.max_num_points + 1
        return int(rng.choice(n, p=geometric_probs(n, self.prob_gamma)))

    @staticmethod
    def _draw_points(rng: np.random.Generator, pool: np.ndarray, count: int) -> np.ndarray:
        """``count`` (row, col) drawn uniformly with replacement from the pool; none if it is empty."""
        flat = np.flatnonzero(pool)
        if flat.size == 0:
            return np.zeros((0, 2), np.int64)
        picks = flat[rng.integers(0, flat.size, size=count)]
        return np.stack(np.divmod(picks, pool.shape[1]), axis=1)

    def _pad(self, points: np.ndarray) -> np.ndarray:
        out = np.full((self.max_num_points, 2), -1, np.int64)
        out[:len(points)] = points
        return out
