"""What a results JSON records about the run: device, package versions, compilations, CPU time
stolen by the hypervisor."""
from __future__ import annotations

import os
import pathlib
import platform
import sys
import threading
from importlib import metadata

import jax

PACKAGES = ('fbrs_jax', 'jax', 'jaxlib', 'flax', 'optax', 'jaxopt', 'numpy', 'scipy')
STEAL_WARNING = 0.1    # evaluate warns when the hypervisor took more of the CPU than this


def enable_compilation_cache() -> None:
    """Persistent XLA cache (``$FBRS_JAX_CACHE`` or ~/.cache/fbrs_jax/xla) unless the embedding
    program chose one: later runs load compiled programs instead of compiling them."""
    if jax.config.jax_compilation_cache_dir:
        return
    path = os.environ.get('FBRS_JAX_CACHE') or str(pathlib.Path.home() / '.cache' / 'fbrs_jax' / 'xla')
    jax.config.update('jax_compilation_cache_dir', path)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


def pyplot():
    """matplotlib's pyplot (Agg), or None with a one-line note when matplotlib is not installed
    (plots are optional: a machine image may lack it)."""
    try:
        import matplotlib
    except ImportError:
        print('matplotlib is not installed: no plot written', file=sys.stderr)
        return None
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def environment() -> dict:
    """Device kind and count, platform, Python and package versions."""
    devices = jax.devices()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name.replace('_', '-'))
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {'backend': jax.default_backend(), 'device': devices[0].device_kind,
            'device_count': len(devices), 'machine': platform.machine(),
            'processor': platform.processor() or None, 'python': platform.python_version(),
            'packages': versions}


def cpu_ticks() -> tuple[int, int] | None:
    """(stolen, total) CPU ticks since boot from Linux's /proc/stat; None elsewhere."""
    try:
        fields = pathlib.Path('/proc/stat').read_text().split('\n', 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != 'cpu' or len(fields) < 9:
        return None
    ticks = [int(v) for v in fields[1:9]]   # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


def steal_fraction(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    """Share of the machine's CPU time between two ``cpu_ticks()`` that the hypervisor gave to
    other guests: wall-clock timings on a virtual machine stretch by about 1 / (1 - steal)."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    return (end[0] - start[0]) / (end[1] - start[1])


class CompileCounter:
    """Counts XLA backend compilations (and their seconds) and programs loaded from the
    persistent cache (and their seconds) while installed; one process-wide listener, counters
    read as deltas."""
    _lock = threading.Lock()
    _totals = {'compilations': 0, 'compile_s': 0.0, 'cache_hits': 0, 'load_s': 0.0}
    _installed = False
    _hit = threading.local()     # a cache hit was just reported on this thread

    def __init__(self):
        with self._lock:
            if not CompileCounter._installed:
                jax.monitoring.register_event_duration_secs_listener(self._on_duration)
                jax.monitoring.register_event_listener(self._on_event)
                CompileCounter._installed = True
        self._start = dict(self._totals)

    @classmethod
    def _on_duration(cls, event, duration, **_):
        # JAX times a persistent-cache load under the compilation event; the cache-hit event,
        # reported just before on the same thread, tells the two apart
        if event == '/jax/core/compile/backend_compile_duration':
            if getattr(cls._hit, 'pending', False):
                cls._hit.pending = False
                cls._totals['load_s'] += duration
            else:
                cls._totals['compilations'] += 1
                cls._totals['compile_s'] += duration

    @classmethod
    def _on_event(cls, event, **_):
        if event == '/jax/compilation_cache/cache_hits':
            cls._totals['cache_hits'] += 1
            cls._hit.pending = True

    def read(self) -> dict:
        return {k: self._totals[k] - self._start[k] for k in self._totals}

    def loaded_any(self) -> bool:
        """Whether a program was compiled or taken from the persistent cache since creation."""
        loads = self.read()
        return loads['compilations'] + loads['cache_hits'] > 0
