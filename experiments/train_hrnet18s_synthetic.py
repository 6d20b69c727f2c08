"""The shipped model: HRNetV2-W18-small + OCR 64 trained from scratch on synthetic_shapes, on CPU.

Command (2 CPU cores, under an hour; writes runs/hrnet18s_synthetic/model, the converted model
committed as checkpoints/hrnet18s_ocr64_synthetic):

    fbrs-jax train --config experiments/train_hrnet18s_synthetic.py --workdir runs/hrnet18s_synthetic

Why this architecture: it is the smallest released one (17.4 MB of float32 values, under the
20 MB budget; ResNet-34 DeepLab is 93 MB), and HRNet keeps high-resolution features, which
suits the thin structures and touching objects of the procedural scenes.

Settings that differ from the SBD configs, and why: no ImageNet weights, so the backbone
learns at the full learning rate (1e-3); small crops and batch so that 1,000 steps fit the hour;
scale range 0.6-1.2, which covers the scales the synthetic evaluation shows the model (its
ZoomIn target is 240 for these 240x320 scenes); an epoch is 800 samples (100 steps) and the
step decay comes at epoch 8 of 10. Loss, sampler, augmentations and optimiser are the reference's.

Measured (2-core CPU):
- run 1 (lr 5e-4, scale 0.75-1.25, 1,200 steps, 57 min): training adaptive IoU 0.10 -> 0.35;
  NoBRS mean IoU 0.15 after 20 clicks with ZoomIn at 400.
- run 2 (this config, 1,000 steps, 56.6 min): training adaptive IoU 0.09 -> 0.375 (last epoch),
  eval-mode IoU 0.31 on training-style crops; on the synthetic eval split NoBRS mean IoU 0.14
  (click 1) -> 0.36 (click 20), NoC@85/90 20/20; f-BRS-B raises the final IoU of the first 10
  samples from 0.46 to 0.67 on average, NoC still 20. The evaluation takes ~5 min for NoBRS
  alone. Too weak to ship: the model needs many more samples than an hour of CPU gives at
  this resolution (next: half-resolution scenes for ~3x the steps and a 4x cheaper evaluation).
"""
from fbrs_jax.train.config import TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(arch='hrnet18s_ocr64', dataset='synthetic_shapes', crop_hw=(160, 224), scale_range=(0.6, 1.2),
                       batch_size=8, epochs=10, epoch_len=800, lr=1e-3, backbone_lr_mult=1.0, lr_milestones=(8,),
                       main_loss='nfl', aux_loss_weight=0.4, log_every=20, checkpoint_every=100,
                       export_dir='model')
