"""Python config files: a module whose ``get_config()`` returns the config object."""
from __future__ import annotations

import importlib.util
import os


def load_python_config(path: str, expected: type):
    """Run ``get_config()`` of a Python config file (trusted code, like any script you run)."""
    if not os.path.isfile(path):
        raise ValueError(f'config file not found: {path}')
    spec = importlib.util.spec_from_file_location('fbrs_config_' + os.path.basename(path).removesuffix('.py'), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, 'get_config'):
        raise ValueError(f'{path} has no get_config()')
    cfg = module.get_config()
    if not isinstance(cfg, expected):
        raise ValueError(f'{path}: get_config() must return a {expected.__name__}, got {type(cfg).__name__}')
    return cfg
