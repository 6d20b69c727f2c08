"""hrnet18_ocr64 on SBD with the reference hyper-parameters (SPEC §5.1).

Command (SBD in DATA/SBD, the ImageNet weights and the reference sample weights downloaded):

    fbrs-jax train --config experiments/train_hrnet18_ocr64_sbd.py --workdir runs/train_hrnet18_ocr64_sbd \\
        --set data_root=DATA --set imagenet_init=PATH/hrnetv2_w18_imagenet_pretrained.pth \\
        --set sample_weights=PATH/sbd_samples_weights.pkl

The SBD folder is written once as an array_record TFDS build in ~/tensorflow_datasets.
Expected: a model at the released one's level; f-BRS-B NoC@85 / NoC@90 of the released
weights (reference README): GrabCut 1.86 / 2.18, Berkeley 2.07 / 3.96, SBD 4.70 / 7.65.
120 epochs took the reference days on 2-4 GPUs.
"""
from fbrs_jax.train.config import TrainConfig, sbd_config


def get_config() -> TrainConfig:
    return sbd_config('hrnet18_ocr64')
