"""The official predictor on this machine's device (CUDA when torch sees a GPU), timed per click.

    python experiments/reference_on_device.py WEIGHTS.pth SCENE.npz MODE --source REF_SRC \\
        [--live ../shared/reference/live] [--clicks 10] [--repeats 3] --out OUT.json

Runs the official code (``REF_SRC`` holds its ``isegm`` package; ``--live`` the import shims of
``../shared/reference/live/refshim.py``) with the reference evaluation settings (flip, ZoomIn
400, threshold 0.49) on the one scene of ``SCENE.npz`` (``<name>__image``, ``<name>__gt_mask``):
``--clicks`` closed-loop clicks that never stop early, ``--repeats`` times. A click's clock
stops after ``torch.cuda.synchronize()``. Writes the median seconds per click over the repeats
after the first (the first warms up cuDNN; over all of them with one repeat), the device,
torch's version and the IoUs of the last pass.
"""
import argparse
import importlib
import json
import os
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('weights')
    ap.add_argument('scene')
    ap.add_argument('mode')
    ap.add_argument('--source', required=True, help='the official source tree (holding isegm/)')
    ap.add_argument('--live', default=str(HERE.parents[1] / 'shared' / 'reference' / 'live'))
    ap.add_argument('--clicks', type=int, default=10)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--out', required=True)
    a = ap.parse_args()
    os.environ['REF_SRC'] = a.source
    sys.path.insert(0, a.live)
    importlib.import_module("refshim")      # import shims, before any isegm import
    import numpy as np
    import torch
    from isegm.inference import utils
    from isegm.inference.clicker import Clicker
    from isegm.inference.predictors import get_predictor

    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    data = np.load(a.scene)
    name = sorted({k.split('__')[0] for k in data.files})[0]
    image, gt = data[f'{name}__image'], data[f'{name}__gt_mask']
    mean = torch.tensor([.485, .456, .406]).view(3, 1, 1)
    std = torch.tensor([.229, .224, .225]).view(3, 1, 1)
    image_nd = ((torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255 - mean) / std).to(device)
    model = utils.load_is_model(a.weights, device)
    passes = []
    for _ in range(a.repeats):
        predictor = get_predictor(model, a.mode, device, prob_thresh=0.49, zoom_in_params={'target_size': 400})
        clicker = Clicker(gt_mask=gt)
        pred = np.zeros_like(gt)
        seconds, ious = [], []
        with torch.no_grad():
            predictor.set_input_image(image_nd)
            for _ in range(a.clicks):
                clicker.make_next_click(pred)
                sync()
                t0 = time.perf_counter()
                probs = predictor.get_prediction(clicker)
                sync()
                seconds.append(time.perf_counter() - t0)
                pred = probs > 0.49
                ious.append(round(float(utils.get_iou(gt, pred)), 4))
        passes.append(seconds)
    timed = [t for p in (passes[1:] or passes) for t in p]
    result = {'mode': a.mode, 'device': str(torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'),
              'torch': torch.__version__, 'clicks': a.clicks, 'repeats': a.repeats,
              'median_s': float(np.median(timed)), 'seconds': passes, 'ious': ious}
    pathlib.Path(a.out).write_text(json.dumps(result))
    print(json.dumps({k: v for k, v in result.items() if k != 'seconds'}))


if __name__ == '__main__':
    main()
