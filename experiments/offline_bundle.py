"""A folder to copy to a GPU/TPU machine without package access, from which the accelerator
suite runs with ``PYTHONPATH`` alone.

    python experiments/offline_bundle.py --out bundle --float16          # r34, 20 + 20 samples
    # on the machine (jax, flax, optax, orbax-checkpoint, numpy, scipy installed):
    PYTHONPATH=bundle/site python bundle/accelerator_suite.py --bundle bundle

What it writes:

- ``site/``: the ``fbrs_jax`` package, the shipped model (``site/checkpoints``, where the
  package looks for it) and, unpacked, the wheels of ``--wheels`` (default ``jaxopt,tqdm``:
  what a CUDA or TPU JAX image typically lacks; add ``pillow`` for an image without it),
  downloaded by ``pip download`` at the versions installed here (pure-Python wheels suit every
  platform; a binary one is for this interpreter and platform unless ``--pip-args`` says
  otherwise). ``--lean`` leaves out the package and the shipped model, for a machine that
  receives the repository too (``PYTHONPATH=REPO:bundle/site``).
- ``weights/``: ``--checkpoint`` (default ``../shared``'s r34) as given, or with ``--float16``
  a converted directory of its parameters rounded to float16 and stored byte-shuffled and
  compressed (``save_converted(..., half=True)``; batch-norm statistics kept; read back as
  float32; the rounding is recorded in the model's source and in the manifest).
- ``data/``: the first ``--samples`` of GrabCut and Berkeley in the reference layout.
- the suite and the scripts it runs (``accelerator_suite.py``, ``reference_on_device.py``,
  ``paper_table.py``, the shipped model's training config) and the committed CPU baseline.
- ``reference/``: with ``--ref-home``, the official source (``isegm`` only) and the import
  shims of ``../shared/reference/live``, for the suite's reference item.
- ``manifest.json``: what is in it and the size of each part.

Measured sizes are in ``experiments/results/README.md``.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
SUITE_FILES = ('accelerator_suite.py', 'reference_on_device.py', 'paper_table.py', 'train_hrnet18s_synthetic.py')


def size(path: pathlib.Path) -> int:
    return sum(p.stat().st_size for p in path.rglob('*') if p.is_file()) if path.is_dir() else path.stat().st_size


def add_wheels(names, site: pathlib.Path, wheels: pathlib.Path, pip_args) -> dict:
    """``pip download`` each distribution at its installed version and unpack it into ``site``;
    where pip cannot (no package index here), copy the installed distribution's files instead
    (then a binary one suits this interpreter and platform only)."""
    out = {}
    for name in names:
        version = metadata.version(name)
        proc = subprocess.run([sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:',
                               '-d', str(wheels), f'{name}=={version}', *pip_args], capture_output=True, text=True)
        if proc.returncode == 0:
            wheel = next(p for p in wheels.glob('*.whl')
                         if p.name.lower().startswith(name.lower().replace('-', '_') + '-'))
            with zipfile.ZipFile(wheel) as z:
                z.extractall(site)
            out[name] = {'version': version, 'wheel': wheel.name, 'bytes': wheel.stat().st_size}
            continue
        dist = metadata.distribution(name)
        files = [f for f in dist.files or () if not str(f).startswith('..') and '__pycache__' not in str(f)]
        for f in files:
            target = site / f
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f.locate(), target)
        out[name] = {'version': version, 'copied_from': str(dist.locate_file('')), 'files': len(files),
                     'pip': (proc.stderr.strip().splitlines() or ['failed'])[-1]}
    return out


def add_weights(checkpoint: pathlib.Path, dst: pathlib.Path, float16: bool) -> dict:
    if not float16:
        target = dst / checkpoint.name
        (shutil.copytree if checkpoint.is_dir() else shutil.copy2)(checkpoint, target)
        return {'file': target.name, 'float16': False}
    import numpy as np
    import jax
    import fbrs_jax
    from fbrs_jax.convert.loading import save_converted
    model = fbrs_jax.load_model(checkpoint)
    name = checkpoint.stem + '_float16'
    save_converted(model, str(dst / name), half=True)
    rounded = fbrs_jax.load_model(dst / name)
    error = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        for a, b in zip(jax.tree_util.tree_leaves(rounded.variables), jax.tree_util.tree_leaves(model.variables))
    )
    return {'file': name, 'float16': True, 'source_sha256': model.source.get('sha256'), 'max_abs_rounding': error}


def add_data(data_root: pathlib.Path, dst: pathlib.Path, samples: int) -> dict:
    from fbrs_jax.data.readers import open_dataset
    out = {}
    for dataset in ('GrabCut', 'Berkeley'):
        reader = open_dataset(dataset, data_root)
        root = data_root / dataset
        n = min(samples, len(reader))
        for image in reader.images[:n]:
            mask = reader.masks[image.name.split('.')[0]]
            for path in (image, mask):
                target = dst / dataset / path.relative_to(root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
        out[dataset] = n
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', required=True, type=pathlib.Path, help='the bundle folder (must not exist)')
    p.add_argument('--checkpoint', type=pathlib.Path,
                   default=REPO.parent / 'shared' / 'reference' / 'weights' / 'resnet34_dh128_synth.pth')
    p.add_argument('--float16', action='store_true', help='the weights rounded to float16 (about half the size)')
    p.add_argument('--data-root', type=pathlib.Path, default=REPO.parent / 'shared' / 'data')
    p.add_argument('--samples', type=int, default=12, help='samples of GrabCut and of Berkeley')
    p.add_argument('--wheels', default='jaxopt,tqdm', help='distributions to carry as unpacked wheels')
    p.add_argument('--pip-args', default='', help="more pip download arguments, e.g. '--platform "
                   "manylinux2014_x86_64 --python-version 3.12' for a binary wheel of another machine")
    p.add_argument('--lean', action='store_true',
                   help='without the fbrs_jax package and the shipped model (the machine gets the repository)')
    p.add_argument('--ref-home', type=pathlib.Path, default=None, help='REF_HOME of ../shared/reference/live')
    args = p.parse_args(argv)
    if args.out.exists():
        raise SystemExit(f'offline_bundle: {args.out} exists; choose a new folder')
    site, wheels = args.out / 'site', args.out / 'wheels'
    site.mkdir(parents=True)
    wheels.mkdir()
    manifest = {'bundle': 'fbrs_jax accelerator suite', 'python': sys.version.split()[0], 'lean': args.lean,
                'wheels': add_wheels([w for w in args.wheels.split(',') if w], site, wheels, args.pip_args.split())}
    if not args.lean:
        shutil.copytree(REPO / 'fbrs_jax', site / 'fbrs_jax', ignore=shutil.ignore_patterns('__pycache__'))
        shutil.copytree(REPO / 'checkpoints', site / 'checkpoints')
    shutil.rmtree(wheels)                            # unpacked in site/
    (args.out / 'weights').mkdir()
    manifest['weights'] = add_weights(args.checkpoint, args.out / 'weights', args.float16)
    manifest['data'] = add_data(args.data_root, args.out / 'data', args.samples)
    for name in SUITE_FILES:
        shutil.copy2(HERE / name, args.out / name)
    baseline = HERE / 'results' / 'accelerator_suite_cpu.json'
    if baseline.exists():
        shutil.copy2(baseline, args.out / baseline.name)
    if args.ref_home:
        shutil.copytree(args.ref_home / 'src' / 'isegm', args.out / 'reference' / 'src' / 'isegm',
                        ignore=shutil.ignore_patterns('__pycache__'))
        shutil.copy2(
            REPO.parent / 'shared' / 'reference' / 'live' / 'refshim.py', args.out / 'reference' / 'refshim.py'
        )
    parts = ['site', 'weights', 'data', 'reference']
    manifest['bytes'] = {part: size(args.out / part) for part in parts if (args.out / part).exists()}
    manifest['bytes']['total'] = size(args.out)
    (args.out / 'manifest.json').write_text(json.dumps(manifest, indent=1))
    print(json.dumps(manifest['bytes']))
    print(
        f'bundle in {args.out}: PYTHONPATH={args.out}/site python {args.out}/accelerator_suite.py --bundle {args.out}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
