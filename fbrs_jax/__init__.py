"""fbrs_jax: f-BRS / BRS interactive segmentation in JAX/Flax."""
from .convert.loading import convert, load_model
from .convert.pth import CheckpointError
from .models.arch import Arch
from .clicks import Click
from .inference.factory import MODES, make_predictor
from .models.model import Model, normalize

__version__ = '0.1.0'

__all__ = ['Arch', 'CheckpointError', 'Click', 'MODES', 'Model', 'convert', 'load_model', 'make_predictor',
           'normalize', '__version__']
