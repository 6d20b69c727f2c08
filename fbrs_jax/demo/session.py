"""One browser session of the demo: an image, its clicks, the finished objects, as the
reference's demo controller keeps them (``interactive_demo/controller.py`` of the official
code): a click adds to the current object; undo returns to the predictor's state before the
last click; finishing an object writes it into the instance mask with the next id (1, 2, 3, ...;
a later object overwrites an earlier one where they overlap); the instance mask shows the
current object with the id it will get.

Settings (mode, ZoomIn, clicks limit) apply from the next click: a new predictor that predicts
the whole click list afresh (its own zoom state and variables). Compiled programs are shared by
every session (they are cached per program shape, not per predictor)."""
from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from typing import Optional

import numpy as np

from ..clicks import Click
from ..eval.evaluate import zoom_in_params
from ..eval.runinfo import CompileCounter
from ..inference.factory import make_predictor
from ..inference.predictor import Predictor, PredictorState


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the page sets for the next click. ``zoom_target`` None: the image's default (128 for
    synthetic scenes, 400 otherwise, as ``fbrs-jax evaluate``); ``clicks_limit`` None: the mode's."""
    mode: str = 'f-BRS-B'
    zoom_in: bool = True
    zoom_target: Optional[int] = None
    clicks_limit: Optional[int] = None

    def __post_init__(self):        # the mode is checked where every mode name is: by the predictor factory
        if not isinstance(self.zoom_in, bool):
            raise ValueError(f'zoom_in must be true or false, got {self.zoom_in!r}')
        for name, low in (('zoom_target', 32), ('clicks_limit', 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not
                                      low <= value <= 4096):
                raise ValueError(f'{name} must be an integer from {low} to 4096 (or empty), got {value!r}')


class DemoSession:
    """The state of one browser session; its methods are called under ``lock``."""

    def __init__(self, model, image: np.ndarray, image_name: str, settings: Settings, dataset: str = ''):
        self.model, self.image, self.image_name = model, image, image_name
        self.zoom_default = zoom_in_params(dataset)
        self.objects = np.zeros(image.shape[:2], np.uint8)     # finished objects, ids 1, 2, ...
        self.object_count = 0
        self.clicks: list[Click] = []
        self.history: list[tuple[Predictor, PredictorState, Optional[np.ndarray]]] = []   # before each click
        self.probs: Optional[np.ndarray] = None
        self.key = secrets.token_hex(6)          # names this image (a new one gets a new key)
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.set_settings(settings)

    @property
    def hw(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]

    @property
    def prob_thresh(self) -> float:
        return self.predictor.spec.prob_thresh

    def set_settings(self, settings: Settings) -> None:
        """Use ``settings`` from the next click (the current clicks stay)."""
        s = settings
        zoom = None
        if s.zoom_in:
            zoom = dict(self.zoom_default)
            if s.zoom_target is not None:
                zoom = {'target_size': s.zoom_target, 'min_crop_size': min(zoom['min_crop_size'], s.zoom_target)}
        overrides = {} if s.clicks_limit is None else {'clicks_limit': s.clicks_limit}
        predictor = make_predictor(self.model, s.mode, zoom_in=zoom, **overrides)
        predictor.set_image(self.image)
        self.settings, self.predictor = settings, predictor

    def click(self, row: float, col: float, positive: bool) -> dict:
        """Add a click and predict; -> what it cost (wall and device ms, objective evaluations,
        whether a program was compiled or loaded from the persistent cache)."""
        h, w = self.hw
        if not (0 <= row < h and 0 <= col < w):
            raise ValueError(f'click at (x {col:g}, y {row:g}) lies outside the {w}x{h} image')
        self.history.append((self.predictor, self.predictor.get_state(), self.probs))
        self.clicks.append(Click(row, col, bool(positive)))
        counter = CompileCounter()
        t0 = time.perf_counter()
        try:
            self.probs = self.predictor.predict(self.clicks)
        except Exception:
            self.clicks.pop()
            self.history.pop()
            raise
        wall = time.perf_counter() - t0
        loads, stats = counter.read(), self.predictor.stats
        return {'clicks': len(self.clicks), 'mode': self.predictor.name, 'wall_ms': 1e3 * wall,
                'device_ms': 1e3 * self.predictor.last_device_s, 'evals': int(stats.num_evals),
                'iters': int(stats.num_iters), 'compiled': loads['compilations'] > 0,
                'compile_s': loads['compile_s'], 'cache_loaded': loads['cache_hits'] > 0,
                'net_hw': list(stats.net_hw), 'net_canvas': list(stats.net_canvas)}

    def undo(self) -> None:
        if not self.clicks:
            raise ValueError('no click to undo')
        predictor, state, self.probs = self.history.pop()
        self.clicks.pop()
        predictor.set_state(state)
        self.predictor = predictor

    def reset(self) -> None:
        """Forget the current object's clicks (finished objects stay)."""
        self.clicks, self.history, self.probs = [], [], None
        self.predictor.reset()

    def finish(self, thresh: float) -> int:
        """Write the current object into the instance mask; -> its id."""
        if self.probs is None:
            raise ValueError('no object to finish: click on it first')
        if self.object_count >= 255:
            raise ValueError('the instance mask holds 255 objects')
        self.object_count += 1
        self.objects[self.probs > thresh] = self.object_count
        self.reset()
        return self.object_count

    def instance_mask(self, thresh: float) -> np.ndarray:
        """Finished objects, and the current one with the id it will get."""
        mask = self.objects.copy()
        if self.probs is not None:
            mask[self.probs > thresh] = self.object_count + 1
        return mask
