"""tensorflow-datasets builders, written as array_record (reading them back needs no TensorFlow).

Evaluation sets, over a manual directory in the reference layout: the builders call the
readers of ``readers.py``, the ones evaluation uses, so a prepared dataset holds exactly what
``fbrs-jax evaluate`` sees, in the same order (synthetic_shapes, generated on the fly, has none).

    builder = prepare('GrabCut', manual_dir='../shared/data/GrabCut', data_dir='~/tensorflow_datasets')
    source = builder.as_data_source(split='test')   # source[i] -> {'name', 'image', 'gt'}

Training scenes (image + instance map), for the instance sources of ``readers.py``/``synthetic.py``:

    builder = prepare_scenes('synthetic_shapes', data_dir='~/tensorflow_datasets')
    scenes = PreparedScenes(builder, 'train')        # scenes.scene(i) -> Scene(name, image, instances)
"""
from __future__ import annotations

import dataclasses

import numpy as np

try:
    import tensorflow_datasets as tfds
except ImportError:
    raise ImportError("the TFDS builders need tensorflow-datasets and array-record: "
                      "pip install 'fbrs-jax[tfds]'") from None

from . import synthetic
from .readers import FOLDERLESS, READERS, DatasetError, SBDScenes, Scene


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


BUILDERS = {r: _builder(r, 'fbrs_' + r.lower()) for r in READERS if r not in FOLDERLESS}


def prepare(dataset: str, manual_dir, data_dir) -> tfds.core.DatasetBuilder:
    """Build (once) the array_record dataset of ``dataset`` from ``manual_dir``."""
    builder = BUILDERS[dataset](data_dir=str(data_dir), file_format='array_record')
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


class _Scenes(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """One example per scene of an instance source: name, uint8 RGB image, int32 instance map."""
    VERSION = tfds.core.Version('1.0.0')
    # Where tfds looks for download checksums; finding it needs importlib_resources, which tfds
    # only requires before Python 3.9, and these builders download nothing.
    code_path = None

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, disable_shuffling=True, features=tfds.features.FeaturesDict({
            'name': tfds.features.Text(),
            'image': tfds.features.Tensor(shape=(None, None, 3), dtype=np.uint8, encoding='zlib'),
            'instances': tfds.features.Tensor(shape=(None, None), dtype=np.int32, encoding='zlib'),
        }))

    def _generate_examples(self, source):
        for i in range(len(source)):
            name, image, instances = source.scene(i)
            yield i, {'name': name, 'image': image, 'instances': instances}


@dataclasses.dataclass(eq=False)
class SyntheticShapesConfig(tfds.core.BuilderConfig):
    """Split sizes and image size (H, W) of a synthetic_shapes build."""
    num_train: int = synthetic.SPLIT_SIZES['train']
    num_eval: int = synthetic.SPLIT_SIZES['eval']
    hw: tuple[int, int] = synthetic.DEFAULT_HW


class SyntheticShapesScenes(_Scenes, skip_registration=True):
    """synthetic_shapes scenes, splits 'train' and 'eval'."""
    name = 'fbrs_synthetic_shapes'
    RELEASE_NOTES = {'1.0.0': 'Scenes of fbrs_jax.data.synthetic.scene.'}
    BUILDER_CONFIGS = [SyntheticShapesConfig(name='default')]

    def _split_generators(self, dl_manager):
        config = self.builder_config
        return {split: self._generate_examples(synthetic.SyntheticShapes(split, num, config.hw))
                for split, num in (('train', config.num_train), ('eval', config.num_eval))}


class SBDScenesBuilder(_Scenes, skip_registration=True):
    """SBD training scenes, splits 'train' and 'val', buggy masks removed (SPEC 5.2)."""
    name = 'fbrs_sbd_scenes'
    RELEASE_NOTES = {'1.0.0': 'Instance maps of SBDDataset (SPEC 5.2).'}
    MANUAL_DOWNLOAD_INSTRUCTIONS = 'Pass the SBD folder (img/, inst/, train.txt, val.txt) as manual_dir.'

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(SBDScenes(dl_manager.manual_dir, split)) for split in ('train', 'val')}


SCENE_BUILDERS = {'synthetic_shapes': SyntheticShapesScenes, 'SBD': SBDScenesBuilder}


def prepare_scenes(name: str, data_dir, manual_dir=None,
                   config: tfds.core.BuilderConfig | None = None) -> tfds.core.DatasetBuilder:
    """Build (once) the array_record scenes of ``name`` ('synthetic_shapes' or 'SBD', whose folder
    is ``manual_dir``); ``config`` e.g. ``SyntheticShapesConfig(name='small', num_train=100)``."""
    if name not in SCENE_BUILDERS:
        raise DatasetError(f'no scenes builder for {name!r}; choose from {", ".join(SCENE_BUILDERS)}')
    builder = SCENE_BUILDERS[name](data_dir=str(data_dir), config=config, file_format='array_record')
    download_config = tfds.download.DownloadConfig(manual_dir=None if manual_dir is None else str(manual_dir))
    builder.download_and_prepare(download_config=download_config)
    return builder


class PreparedScenes:
    """A split of a prepared scenes builder as an instance source."""

    def __init__(self, builder: tfds.core.DatasetBuilder, split: str):
        self.source = builder.as_data_source(split=split)

    def __len__(self) -> int:
        return len(self.source)

    def name(self, i: int) -> str:
        return self.source[i]['name'].decode()

    def scene(self, i: int) -> Scene:
        """Scene ``i`` as it was prepared."""
        example = self.source[i]
        return Scene(example['name'].decode(), example['image'], example['instances'])
