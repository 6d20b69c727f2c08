"""Training configuration: a dataclass, filled by ``get_config()`` of a Python config file."""
from __future__ import annotations

import dataclasses
from typing import Optional

from ..configs import load_python_config


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Defaults are the reference SBD settings of SPEC §5.1 for the r34 model."""
    arch: str = 'resnet34_dh128'          # a name of ``models.arch.RELEASED``
    dataset: str = 'SBD'                  # 'SBD' or 'synthetic_shapes'
    data_root: Optional[str] = None       # folder holding the dataset folder (SBD)
    tfds_dir: Optional[str] = None        # read scenes from array_record TFDS builds here (built once);
                                          # None: SBD folder / synthetic generator directly (same scenes)
    sample_weights: Optional[str] = None  # SBD ``sbd_samples_weights.pkl`` (sampling ∝ (1-score)^1.25)
    imagenet_init: Optional[str] = None   # gluon ResNet / HRNet classification .pth for the backbone
    crop_hw: tuple[int, int] = (320, 480)
    scale_range: tuple[float, float] = (0.75, 1.25)
    min_object_area: int = 80
    max_num_points: int = 10
    batch_size: int = 28
    epochs: int = 120
    epoch_len: Optional[int] = None       # samples per epoch; None = the dataset size
    lr: float = 5e-4
    backbone_lr_mult: float = 0.1
    lr_milestones: tuple[int, ...] = (100,)   # epochs
    lr_gamma: float = 0.1
    main_loss: str = 'nfl'                # 'nfl' (alpha 0.5, gamma 2) or 'bce'
    aux_loss_weight: float = 0.0          # HRNet auxiliary BCE (0.4 in the reference)
    seed: int = 0
    log_every: int = 10                   # steps
    checkpoint_every: int = 100           # steps (and at the end)
    keep_checkpoints: int = 2
    export_dir: Optional[str] = None      # converted model written at the end (relative to the workdir)

    def steps_per_epoch(self, dataset_len: int) -> int:
        return max(1, (self.epoch_len or dataset_len) // self.batch_size)


def sbd_config(arch: str, **overrides) -> TrainConfig:
    """The reference's SBD training of a released architecture (SPEC §5.1): the ``TrainConfig``
    defaults (crop 320x480, 120 epochs, Adam 5e-4 with the backbone at x0.1, decay at epoch 100,
    NFL) with the family's batch and auxiliary loss (DeepLab: 28, none; HRNet: 32, 0.4), SBD read
    from its array_record TFDS build in ~/tensorflow_datasets; ``overrides`` replace fields."""
    from ..models.arch import RELEASED
    if arch not in RELEASED:
        raise ValueError(f'unknown architecture {arch!r}; released: {", ".join(RELEASED)}')
    hrnet = RELEASED[arch].family == 'hrnet'
    base = dict(arch=arch, dataset='SBD', batch_size=32 if hrnet else 28, aux_loss_weight=0.4 if hrnet else 0.0,
                checkpoint_every=300, tfds_dir='~/tensorflow_datasets')
    return TrainConfig(**{**base, **overrides})


def load_config(path: str) -> TrainConfig:
    """Run ``get_config()`` of a Python training config file."""
    return load_python_config(path, TrainConfig)


def override(cfg: TrainConfig, assignments: list[str]) -> TrainConfig:
    """Apply ``KEY=VALUE`` overrides; values are Python literals, otherwise taken as strings."""
    import ast
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    changes = {}
    for item in assignments:
        key, sep, text = item.partition('=')
        if not sep or key not in fields:
            raise ValueError(f'bad override {item!r}: use KEY=VALUE with KEY one of {", ".join(sorted(fields))}')
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        changes[key] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(cfg, **changes)
