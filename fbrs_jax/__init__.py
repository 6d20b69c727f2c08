"""fbrs_jax: f-BRS / BRS interactive segmentation in JAX/Flax."""
from .convert.loading import convert, load_model
from .convert.pth import CheckpointError
from .models.arch import Arch
from .models.model import Model, normalize

__version__ = '0.1.0'

__all__ = ['Arch', 'CheckpointError', 'Model', 'convert', 'load_model', 'normalize', '__version__']
