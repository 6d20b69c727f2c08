"""Compile and run time of one model forward (jitted ``model.logits``) on the local device.

    python experiments/forward_timing.py --checkpoint ../shared/reference/weights/resnet34_dh128_synth.pth \
        --size 400 400 --out experiments/results/forward_r34_400_cpu.json

Writes JSON with the device, package versions and settings. Compile time (lower + compile)
is reported separately from the run times (median / p90 over ``--repeats`` warm calls).
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import jax

import fbrs_jax


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--size', type=int, nargs=2, default=(400, 400), metavar=('H', 'W'))
    p.add_argument('--clicks', type=int, default=5, help='clicks per group (K)')
    p.add_argument('--repeats', type=int, default=10)
    p.add_argument('--precision', default='highest', choices=['highest', 'high', 'default'])
    p.add_argument('--out')
    args = p.parse_args()

    model = fbrs_jax.load_model(args.checkpoint, precision=args.precision)
    h, w = args.size
    rs = np.random.RandomState(0)
    image = fbrs_jax.normalize(rs.randint(0, 256, (h, w, 3), dtype=np.uint8))[None]
    points = np.concatenate([rs.randint(0, min(h, w), (1, args.clicks, 2)),
                             rs.randint(0, min(h, w), (1, args.clicks, 2))], axis=1).astype(np.float32)
    fn = jax.jit(lambda v, i, pts: model.module.apply(v, i, pts, stop='logits')['logits'])
    t0 = time.perf_counter()
    compiled = fn.lower(model.variables, image, points).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(model.variables, image, points))
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(model.variables, image, points))
        times.append(time.perf_counter() - t0)
    result = {
        'benchmark': 'forward', 'model': model.arch.name, 'checkpoint_sha256': model.source.get('sha256'),
        'size_hw': [h, w], 'clicks_per_group': args.clicks, 'precision': args.precision,
        'compile_s': round(compile_s, 3), 'run_median_s': round(float(np.median(times)), 4),
        'run_p90_s': round(float(np.percentile(times, 90)), 4), 'repeats': args.repeats,
        'device': str(jax.devices()[0]), 'device_kind': jax.devices()[0].device_kind,
        'cpu_count': __import__('os').cpu_count(), 'platform': platform.platform(),
        'versions': {'jax': jax.__version__, 'jaxlib': jax.lib.__version__ if hasattr(jax.lib, '__version__') else None,
                     'flax': __import__('flax').__version__, 'numpy': np.__version__, 'fbrs_jax': fbrs_jax.__version__},
    }
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
