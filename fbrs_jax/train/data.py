"""Training batches: scene -> augmentation -> MultiPointSampler -> normalised arrays (SPEC §5.2).

Every sample is a pure function of (seed, step, slot), so a resumed run sees exactly the batches
an uninterrupted run would have seen. Batches are prepared on host threads ahead of the device.
"""
from __future__ import annotations

import concurrent.futures
import functools
from typing import Iterator, Optional

import numpy as np

from ..models.model import normalize
from .augment import augment
from .config import TrainConfig
from .sampler import MultiPointSampler


class TrainBatches:
    """Batches of ``{'image', 'points', 'target'}`` from an instance source (``scene(i)``)."""

    def __init__(self, source, cfg: TrainConfig, probs: Optional[np.ndarray] = None, train: bool = True):
        if len(source) == 0:
            raise ValueError('the training dataset is empty')
        if probs is not None and len(probs) != len(source):
            raise ValueError(f'{len(probs)} sample weights for {len(source)} scenes')
        self.source, self.cfg, self.probs, self.train = source, cfg, probs, train
        self.sampler = MultiPointSampler(max_num_points=cfg.max_num_points)
        self.epoch_len = cfg.epoch_len or len(source)

    def scene_index(self, step: int, slot: int, rng: np.random.Generator) -> int:
        """Weighted draw with replacement when sample weights are given (the reference ignores the
        loader's index then); otherwise a fresh permutation of the dataset per epoch."""
        if self.probs is not None:
            return int(rng.choice(len(self.probs), p=self.probs))
        g = step * self.cfg.batch_size + slot
        epoch, pos = divmod(g, self.epoch_len)
        return int(self._permutation(epoch)[pos % len(self.source)])

    @functools.lru_cache(maxsize=4)
    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.cfg.seed, 1, epoch]).permutation(len(self.source))

    def sample(self, step: int, slot: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.cfg.seed, 0, step, slot])
        scene = self.source.scene(self.scene_index(step, slot, rng))
        image, instances, valid_ids = augment(rng, scene.image, scene.instances, self.cfg.crop_hw,
                                              scale_range=self.cfg.scale_range,
                                              min_object_area=self.cfg.min_object_area, train=self.train)
        target, points = self.sampler.sample(rng, instances, valid_ids)
        return normalize(image), points, target

    def batch(self, step: int) -> dict[str, np.ndarray]:
        images, points, targets = zip(*(self.sample(step, s) for s in range(self.cfg.batch_size)))
        return {'image': np.stack(images), 'points': np.stack(points), 'target': np.stack(targets)}

    def iterate(self, start: int, stop: int, workers: int = 2) -> Iterator[tuple[int, dict]]:
        """(step, batch) for steps [start, stop), computed ``workers`` steps ahead on threads."""
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            pending = {s: pool.submit(self.batch, s) for s in range(start, min(stop, start + workers))}
            for step in range(start, stop):
                batch = pending.pop(step).result()
                nxt = step + workers
                if nxt < stop:
                    pending[nxt] = pool.submit(self.batch, nxt)
                yield step, batch
