"""What the restricted unpicklers share (checkpoints in ``convert.pth``, the SBD sample weights in
``data.readers``): objects a pickle may reach but never modify. A subclass names the reader's
error type."""
from __future__ import annotations

from typing import Callable


class Frozen:
    """Objects the pickle can reach must not be modifiable by it: the BUILD opcode would
    otherwise set attributes on them and change how every later file is read."""
    __slots__ = ()
    error: type = ValueError

    def __setattr__(self, name, value):
        raise self.error('the pickle tries to modify an object it may only use')

    def __setstate__(self, state):
        raise self.error('the pickle tries to modify an object it may only use')


class CallOnly(Frozen):
    """A whitelisted function or class as a restricted unpickler hands it out: callable, nothing else."""
    __slots__ = ('_fn',)

    def __init__(self, fn: Callable):
        object.__setattr__(self, '_fn', fn)

    def __call__(self, *args):
        return self._fn(*args)
