"""resnet34_dh128 on SBD with the reference hyper-parameters (SPEC §5.1).

Command (SBD in DATA/SBD, the ImageNet weights and the reference sample weights downloaded):

    fbrs-jax train --config experiments/train_r34_dh128_sbd.py --workdir runs/train_r34_dh128_sbd \\
        --set data_root=DATA --set imagenet_init=PATH/gluon_resnet34_v1b.pth \\
        --set sample_weights=PATH/sbd_samples_weights.pkl

The SBD folder is written once as an array_record TFDS build in ~/tensorflow_datasets.
Expected: a model at the released one's level; f-BRS-B NoC@85 / NoC@90 of the released
weights (reference README): GrabCut 2.06 / 2.48, Berkeley 2.40 / 4.17, SBD 4.47 / 7.28.
120 epochs took the reference days on 2-4 GPUs.
"""
from fbrs_jax.train.config import TrainConfig, sbd_config


def get_config() -> TrainConfig:
    return sbd_config('resnet34_dh128')
