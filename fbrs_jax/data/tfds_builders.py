"""tensorflow-datasets builders for the evaluation sets, over a manual directory in the
reference layout and written as array_record (reading them back needs no TensorFlow).

The builders call the readers of ``readers.py``, the ones evaluation uses, so a prepared
dataset holds exactly what ``fbrs-jax evaluate`` sees, in the same order.

    builder = prepare('GrabCut', manual_dir='../shared/data/GrabCut', data_dir='~/tensorflow_datasets')
    source = builder.as_data_source(split='test')   # source[i] -> {'name', 'image', 'gt'}
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from .readers import READERS


class _InteractiveSegmentation(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """One example per evaluation sample: file name, uint8 RGB image, int32 mask (1 / 0 / -1)."""
    VERSION = tfds.core.Version('1.0.0')
    RELEASE_NOTES = {'1.0.0': 'Reference loaders of the f-BRS evaluation (SPEC 4.6).'}
    READER = ''
    MANUAL_DOWNLOAD_INSTRUCTIONS = ('Pass the dataset folder in the reference layout (e.g. GrabCut/ with '
                                    'data_GT/ and boundary_GT/) as manual_dir.')

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, disable_shuffling=True, features=tfds.features.FeaturesDict({
            'name': tfds.features.Text(),
            'image': tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8, encoding='zlib'),
            'gt': tfds.features.Tensor(shape=(None, None), dtype=np.int32, encoding='zlib'),
        }))

    def _split_generators(self, dl_manager):
        return {'test': self._generate_examples(dl_manager.manual_dir)}

    def _generate_examples(self, root):
        reader = READERS[self.READER](root)
        for i in range(len(reader)):
            sample = reader[i]
            yield i, {'name': sample.name, 'image': sample.image, 'gt': sample.gt}


def _builder(reader: str, name: str):
    return type(reader.replace('_', ''), (_InteractiveSegmentation,), {'READER': reader, 'name': name})


BUILDERS = {r: _builder(r, 'fbrs_' + r.lower()) for r in READERS}


def prepare(dataset: str, manual_dir, data_dir) -> tfds.core.DatasetBuilder:
    """Build (once) the array_record dataset of ``dataset`` from ``manual_dir``."""
    builder = BUILDERS[dataset](data_dir=str(data_dir), file_format='array_record')
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder
