"""What the on-device L-BFGS-B costs next to jaxopt's L-BFGS and the host SciPy back end.

    python experiments/lbfgsb_cost.py --checkpoint ../shared/reference/weights/resnet34_dh128_synth.pth \\
        --out experiments/results/lbfgsb_cost_r34_cpu

Three measurements, one process (so the timings share a machine and a load):

1. Program size: the click program of f-BRS-B and RGB-BRS on the 400x600 benchmark scene
   (an optimised click on the full image), compiled for each on-device back end (no persistent
   compilation cache in this script): convolutions in the optimised HLO, compile seconds; beside them
   the convolutions of the NoBRS program (the network with flip) and of one objective
   value-and-gradient at the mode's tap (what one copy of the objective costs).
2. Warm f-BRS-B clicks on the benchmark scene (``fbrs-jax benchmark``: closed loop, 10 clicks,
   a compile pass then timed passes): median and p90 seconds per click, evaluations per click.
3. Warm f-BRS-B clicks on the first GrabCut images, teacher-forced with the reference's own
   click sequences (``closed_loop_r34_samples/reference``), so every back end makes the same
   clicks: seconds per warm click (clicks that compiled or loaded a program are left out).

Writes <out>.json and <out>.md.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import jax
import jax.numpy as jnp

import fbrs_jax
from fbrs_jax.data.readers import open_dataset
from fbrs_jax.eval.benchmark import benchmark_mode, scene
from fbrs_jax.eval.evaluate import timed_predict
from fbrs_jax.eval.runinfo import environment
from fbrs_jax.inference import step as steps

HERE = pathlib.Path(__file__).resolve().parent
SHARED = HERE.parents[1] / 'shared'
CLICKS = HERE / 'results' / 'closed_loop_r34_samples' / 'reference' / 'GrabCut_f-BRS-B.jsonl'


def convolutions(compiled) -> int:
    return sum(' convolution(' in line for line in compiled.as_text().splitlines())


def click_program(model, mode: str, backend: str, image, clicks):
    """Lower and compile the click program of ``clicks`` (the last click optimised): -> dict."""
    predictor = fbrs_jax.make_predictor(model, mode, solver=backend)
    predictor.set_image(image)
    for k in range(1, len(clicks)):
        predictor.predict(clicks[:k])
    plan, _ = predictor.plan(predictor.sample, clicks)
    args = predictor.program_args(plan)
    state = args[4]
    lowered = steps.run_batch.lower(*args)
    t0 = time.perf_counter()
    compiled = lowered.compile()
    out = {'convolutions': convolutions(compiled), 'compile_s': time.perf_counter() - t0}
    if plan.spec.kind != steps.StepKind.NOBRS:     # one objective value-and-gradient of this click
        values, _ = steps.host_problem(plan.spec, model.variables, plan.inp._replace(image=predictor.image[0]),
                                       jax.tree_util.tree_map(lambda a: a[0], state.cache), plan.recompute)
        args = steps.host_args(plan.spec, model.variables, values, plan.inp._replace(image=predictor.image[0]))
        fun = jax.value_and_grad(plan.spec.function, has_aux=True)
        x = jnp.zeros((plan.spec.refine.size,), jnp.float32)
        one = jax.jit(fun).lower(x, steps.no_mask(plan.spec), jnp.asarray(False), *args).compile()
        out['objective_convolutions'] = convolutions(one)
    return out


def program_sizes(model, sample, backends) -> list[dict]:
    clicks = [fbrs_jax.Click(int(0.55 * 400), int(0.45 * 600), True), fbrs_jax.Click(40, 40, False)]
    rows = []
    nobrs = click_program(model, 'NoBRS', 'jaxopt', sample.image, clicks)
    for mode in ('f-BRS-B', 'RGB-BRS'):
        for backend in backends:
            jax.clear_caches()
            row = {'mode': mode, 'backend': backend, **click_program(model, mode, backend, sample.image, clicks),
                   'nobrs_convolutions': nobrs['convolutions']}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def grabcut_replay(model, backend: str, data_root: str, n: int) -> dict:
    reader = open_dataset('GrabCut', data_root)
    records = [json.loads(line) for line in CLICKS.read_text().splitlines()][:n]
    seconds, evals, cold = [], [], 0
    predictor = fbrs_jax.make_predictor(model, 'f-BRS-B', solver=backend)
    for rec in records:
        sample = reader[rec['index']]
        clicks = [fbrs_jax.Click(r, c, bool(p)) for r, c, p in rec['clicks']]
        predictor.set_image(sample.image)
        for k in range(len(clicks)):
            _, s, e, was_cold = timed_predict(predictor, clicks[:k + 1])
            if was_cold:
                cold += 1
            else:
                seconds.append(s)
                evals.append(e)
    return {'images': len(records), 'warm_clicks': len(seconds), 'cold_clicks': cold,
            'mean_s': float(np.mean(seconds)), 'median_s': float(np.median(seconds)),
            'evals_per_click': float(np.mean(evals))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--backends', default='jaxopt,lbfgsb,scipy')
    p.add_argument('--data-root', default=str(SHARED / 'data'))
    p.add_argument('--grabcut-images', type=int, default=10)
    p.add_argument('--repeats', type=int, default=2)
    p.add_argument('--skip', default='', help='comma-separated parts to skip: programs,scene,grabcut')
    p.add_argument('--out', required=True)
    args = p.parse_args(argv)
    model = fbrs_jax.load_model(args.checkpoint)
    backends = args.backends.split(',')
    skip = set(filter(None, args.skip.split(',')))
    sample = scene(400, 600)
    out = pathlib.Path(args.out)
    result = {'experiment': 'lbfgsb_cost', 'checkpoint': args.checkpoint, 'environment': environment(),
              'precision': 'float32 network (highest), solver arithmetic as each back end',
              'programs': [], 'scene': {}, 'grabcut': {}}

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix('.json').write_text(json.dumps(result, indent=1))
        out.with_suffix('.md').write_text(markdown(result))

    if 'programs' not in skip:
        result['programs'] = program_sizes(model, sample, [b for b in backends if b != 'scipy'])
        save()
    for backend in backends:
        if 'scene' not in skip:
            jax.clear_caches()
            r = benchmark_mode(model, 'f-BRS-B', sample, 10, args.repeats, solver=backend)
            result['scene'][backend] = {k: r[k] for k in ('wall_s', 'wall_s_after_first_click', 'evals',
                                                          'evals_per_optimised_click', 'compile_s', 'compilations')}
            save()
            print(backend, 'scene', json.dumps(result['scene'][backend]), file=sys.stderr, flush=True)
        if 'grabcut' not in skip:
            jax.clear_caches()
            result['grabcut'][backend] = grabcut_replay(model, backend, args.data_root, args.grabcut_images)
            save()
            print(backend, 'grabcut', json.dumps(result['grabcut'][backend]), file=sys.stderr, flush=True)
    return 0


def markdown(r: dict) -> str:
    env = r['environment']
    lines = [f"On {env['device']} (jax {env['packages']['jax']}, {r['precision']}).", '']
    if r['programs']:
        lines += [
            '| mode | back end | convolutions in the click program | NoBRS program '
            '| one objective (value and gradient) | compile s |',
            '|---|---|---|---|---|---|',
        ]
        lines += [f"| {p['mode']} | {p['backend']} | {p['convolutions']} | {p['nobrs_convolutions']} | "
                  f"{p.get('objective_convolutions', '')} | {p['compile_s']:.1f} |" for p in r['programs']]
        lines.append('')
    if r['scene']:
        lines += [
            '| back end | scene 400x600: s per warm click, clicks 2-10 (median / p90) '
            '| evaluations per optimised click | compile s |',
            '|---|---|---|---|',
        ]
        for b, s in r['scene'].items():
            w = s['wall_s_after_first_click']
            lines.append(f"| {b} | {w['median']:.3f} / {w['p90']:.3f} | {s['evals_per_optimised_click']:.2f} | "
                         f"{s['compile_s']:.1f} |")
        lines.append('')
    if r['grabcut']:
        lines += [
            '| back end | GrabCut, reference clicks: s per warm click (mean / median) | warm clicks '
            '| evaluations per click |',
            '|---|---|---|---|',
        ]
        lines += [
            f"| {b} | {g['mean_s']:.3f} / {g['median_s']:.3f} "
            f"| {g['warm_clicks']} of {g['warm_clicks'] + g['cold_clicks']} | "
            f"{g['evals_per_click']:.2f} |"
            for b, g in r['grabcut'].items()
        ]
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    sys.exit(main())
