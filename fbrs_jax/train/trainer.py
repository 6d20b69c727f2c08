"""The training loop: jit-compiled data-parallel step, orbax checkpoints with resume, JSON-lines
metrics (SPEC §5).

Data parallelism: the batch is split over all devices along the mesh axis ``batch`` and the
state is replicated; one jit-compiled step computes the gradient of the global batch.
BatchNorm statistics are therefore taken over the whole batch (SyncBN, as the MXNet original
that trained the released ResNets; the PyTorch DataParallel reference uses per-GPU statistics).
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, NamedTuple, Optional

import numpy as np
import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ..models.arch import RELEASED, Arch
from ..models.canvas import resize_ac
from ..models.model import Model, build_module
from .config import TrainConfig
from .data import TrainBatches
from .losses import LOSSES, AdaptiveIoU, sigmoid_bce, threshold_ious

# HRNet parameters outside the backbone learning-rate group (the reference's keywords).
HRNET_HEAD_KEYWORDS = ('rgb_conv', 'aux_head', 'cls_head', 'conv3x3_ocr', 'ocr_distri_head')


class TrainState(NamedTuple):
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def parameter_groups(arch: Arch, params) -> Any:
    """'backbone' / 'head' label per parameter: DeepLab names containing ``backbone``; HRNet
    everything but the fusion block and the heads."""
    def label(path):
        name = '.'.join(path)
        if arch.family == 'deeplab':
            return 'backbone' if 'backbone' in name else 'head'
        return 'head' if any(k in name for k in HRNET_HEAD_KEYWORDS) else 'backbone'
    flat = traverse_util.flatten_dict(params)
    return traverse_util.unflatten_dict({k: label(k) for k in flat})


def learning_rate(cfg: TrainConfig, steps_per_epoch: int, mult: float = 1.0) -> optax.Schedule:
    """Step decay by ``lr_gamma`` at each milestone epoch (MultiStepLR stepped per epoch)."""
    return optax.piecewise_constant_schedule(
        cfg.lr * mult, {m * steps_per_epoch: cfg.lr_gamma for m in cfg.lr_milestones})


def make_optimizer(cfg: TrainConfig, arch: Arch, params, steps_per_epoch: int):
    """Adam (no weight decay) with the backbone group at ``backbone_lr_mult`` x the learning rate."""
    return optax.multi_transform(
        {'head': optax.adam(learning_rate(cfg, steps_per_epoch)),
         'backbone': optax.adam(learning_rate(cfg, steps_per_epoch, cfg.backbone_lr_mult))},
        parameter_groups(arch, params))


def init_variables(module, cfg: TrainConfig) -> dict:
    """Xavier-gaussian (magnitude 2) convolutions, zero biases, BatchNorm 1 / 0 (the layers' initialisers)."""
    image = jnp.zeros((1, *cfg.crop_hw, 3), jnp.float32)
    points = -jnp.ones((1, 2 * cfg.max_num_points, 2), jnp.float32)
    return jax.jit(module.init)(jax.random.PRNGKey(cfg.seed), image, points)


def batch_loss(module, cfg: TrainConfig, params, batch_stats, batch, dropout_key):
    """Main loss (+ HRNet auxiliary BCE at ``aux_loss_weight``) in training mode."""
    out, updates = module.apply({'params': params, 'batch_stats': batch_stats}, batch['image'], batch['points'],
                                train=True, stop='logits', mutable=['batch_stats'], rngs={'dropout': dropout_key})
    logits = out['logits'][..., 0]
    main = LOSSES[cfg.main_loss](logits, batch['target'])
    terms = {'main_loss': main}
    loss = main
    if cfg.aux_loss_weight:
        aux_logits = resize_ac(out['aux_logits'], batch['image'].shape[1:3])[..., 0]
        terms['aux_loss'] = sigmoid_bce(aux_logits, batch['target'])
        loss = loss + cfg.aux_loss_weight * terms['aux_loss']
    return loss, (terms, logits, updates['batch_stats'])


def make_train_step(module, cfg: TrainConfig, tx, mesh: Mesh, state_sharding) -> Callable:
    """``step(state, batch, key, thresholds) -> (state, metrics)``, jit-compiled and data parallel."""
    batch_sharding = NamedSharding(mesh, P('batch'))
    replicated = NamedSharding(mesh, P())

    def step(state: TrainState, batch, key, thresholds):
        grad_fn = jax.value_and_grad(lambda p: batch_loss(module, cfg, p, state.batch_stats, batch,
                                                          jax.random.fold_in(key, state.step)), has_aux=True)
        (loss, (terms, logits, batch_stats)), grads = grad_fn(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ious, any_gt = threshold_ious(logits, batch['target'], thresholds)
        metrics = dict(terms, loss=loss, ious=ious, any_gt=any_gt)
        return TrainState(state.step + 1, params, batch_stats, opt_state), metrics

    return jax.jit(step, in_shardings=(state_sharding, batch_sharding, replicated, replicated),
                   out_shardings=(state_sharding, replicated), donate_argnums=(0,))


def open_training_data(cfg: TrainConfig):
    """(instance source, sampling probabilities or None) of the configured dataset: its TFDS
    array_record build in ``cfg.tfds_dir`` when given, else the folder / generator itself."""
    from ..data import readers
    from ..data.synthetic import SyntheticShapes
    if cfg.dataset not in ('SBD', 'synthetic_shapes'):
        raise ValueError(f'unknown training dataset {cfg.dataset!r}; choose SBD or synthetic_shapes')
    sbd_root = None
    if cfg.dataset == 'SBD':
        if cfg.data_root is None:
            raise ValueError('the SBD config needs data_root (the folder holding SBD/)')
        sbd_root = os.path.join(os.path.expanduser(cfg.data_root), 'SBD')
    probs = readers.sbd_sample_weights(cfg.sample_weights) if cfg.sample_weights else None
    if cfg.tfds_dir:
        from ..data.tfds_builders import PreparedScenes, prepare_scenes
        builder = prepare_scenes(cfg.dataset, os.path.expanduser(cfg.tfds_dir), manual_dir=sbd_root)
        return PreparedScenes(builder, 'train'), probs
    if sbd_root is not None:
        return readers.SBDScenes(sbd_root, 'train'), probs
    return SyntheticShapes('train'), probs


def _log(line: str) -> None:
    print(line, flush=True)


class Trainer:
    """Owns the model, optimiser, mesh, checkpoint manager and metric state of one workdir."""

    def __init__(self, cfg: TrainConfig, workdir: str, source=None, probs=None, devices=None,
                 log: Callable[[str], None] = _log):
        if cfg.arch not in RELEASED:
            raise ValueError(f'unknown architecture {cfg.arch!r}; choose from {", ".join(RELEASED)}')
        self.cfg, self.workdir, self.log = cfg, os.path.abspath(workdir), log
        self.arch = RELEASED[cfg.arch]
        self.module = build_module(self.arch)
        if source is None:
            source, probs = open_training_data(cfg)
        self.batches = TrainBatches(source, cfg, probs)
        self.steps_per_epoch = cfg.steps_per_epoch(len(source))
        self.total_steps = cfg.epochs * self.steps_per_epoch
        devices = devices if devices is not None else jax.devices()
        if cfg.batch_size % len(devices):
            raise ValueError(f'batch size {cfg.batch_size} is not a multiple of the {len(devices)} devices')
        self.mesh = Mesh(np.asarray(devices), ('batch',))
        self.replicated = NamedSharding(self.mesh, P())
        variables = init_variables(self.module, cfg)
        if cfg.imagenet_init:
            from ..convert.imagenet import load_imagenet_backbone
            variables, n = load_imagenet_backbone(variables, self.arch, cfg.imagenet_init)
            log(f'ImageNet initialisation: {n} tensors from {cfg.imagenet_init}')
        self.tx = make_optimizer(cfg, self.arch, variables['params'], self.steps_per_epoch)
        state = TrainState(jnp.zeros((), jnp.int32), variables['params'], variables['batch_stats'],
                           self.tx.init(variables['params']))
        self.state = jax.device_put(state, self.replicated)
        self.metric = AdaptiveIoU()
        self.step_fn = make_train_step(self.module, cfg, self.tx, self.mesh,
                                       jax.tree_util.tree_map(lambda _: self.replicated, state))
        os.makedirs(self.workdir, exist_ok=True)
        self.metrics_path = os.path.join(self.workdir, 'metrics.jsonl')
        self.manager = ocp.CheckpointManager(
            os.path.join(self.workdir, 'checkpoints'),
            options=ocp.CheckpointManagerOptions(max_to_keep=cfg.keep_checkpoints, create=True))

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self) -> None:
        step = int(self.state.step)
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(self.state), metric=ocp.args.JsonSave(self.metric.state())))
        self.manager.wait_until_finished()

    def restore(self) -> int:
        """Resume from the newest checkpoint of the workdir (if any); returns the step."""
        step = self.manager.latest_step()
        if step is None:
            return 0
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, self.state)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), metric=ocp.args.JsonRestore()))
        self.state = TrainState(*restored['state'])
        self.metric.load_state(restored['metric'])
        self._truncate_metrics(step)
        self.log(f'resumed from step {step}')
        return step

    def _truncate_metrics(self, step: int) -> None:
        """Drop log lines written after the checkpoint: those steps run again."""
        if not os.path.exists(self.metrics_path):
            return
        with open(self.metrics_path) as f:
            lines = [ln for ln in f if ln.strip() and json.loads(ln).get('step', 0) <= step]
        with open(self.metrics_path, 'w') as f:
            f.writelines(lines)

    # -- loop ----------------------------------------------------------------------------------
    def _record(self, entry: dict) -> None:
        with open(self.metrics_path, 'a') as f:
            f.write(json.dumps(entry) + '\n')
        items = ' '.join(f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in entry.items())
        self.log(items)

    def fit(self, stop_step: Optional[int] = None) -> TrainState:
        """Train from the current state to ``stop_step`` (default: all epochs), checkpointing on the way."""
        cfg = self.cfg
        stop = self.total_steps if stop_step is None else min(stop_step, self.total_steps)
        start = int(self.state.step)
        key = jax.random.PRNGKey(cfg.seed)
        window: dict[str, list] = {}
        t_window = time.perf_counter()
        for step, batch in self.batches.iterate(start, stop):
            self.state, m = self.step_fn(self.state, batch, key, self.metric.thresholds())
            m = jax.device_get(m)
            if not np.isfinite(m['loss']):
                raise FloatingPointError(f'non-finite loss at step {step}')
            self.metric.update(m['ious'], m['any_gt'])
            for k in ('loss', 'main_loss', 'aux_loss'):
                if k in m:
                    window.setdefault(k, []).append(float(m[k]))
            done = step + 1
            epoch_end = done % self.steps_per_epoch == 0
            if done % cfg.log_every == 0 or epoch_end or done == stop:
                now = time.perf_counter()
                entry = {'step': done, 'epoch': done / self.steps_per_epoch}
                entry.update({k: float(np.mean(v)) for k, v in window.items()})
                entry.update(iou_ema=self.metric.ema_iou, iou_thresh=self.metric.thresh,
                             lr=float(learning_rate(cfg, self.steps_per_epoch)(step)),
                             s_per_step=(now - t_window) / len(window['loss']))
                if epoch_end:
                    entry['epoch_iou'] = self.metric.epoch_value()
                    self.metric.epoch_sum, self.metric.epoch_count = 0.0, 0
                self._record(entry)
                window, t_window = {}, now
            if done % cfg.checkpoint_every == 0 or done == stop:
                self.save()
        return self.state

    def model(self) -> Model:
        """The current weights as an inference ``Model``."""
        state = jax.device_get(self.state)
        variables = {'params': state.params, 'batch_stats': state.batch_stats}
        source = {'trained': self.cfg.arch, 'dataset': self.cfg.dataset, 'steps': int(state.step)}
        return Model(self.arch, self.module, variables, source)


def train(cfg: TrainConfig, workdir: str, stop_step: Optional[int] = None,
          log: Callable[[str], None] = _log) -> Trainer:
    """Train (resuming from ``workdir`` if it has checkpoints) and export the model when finished."""
    from ..convert.loading import save_converted
    trainer = Trainer(cfg, workdir, log=log)
    trainer.restore()
    trainer.fit(stop_step)
    if int(trainer.state.step) >= trainer.total_steps:
        export = os.path.join(trainer.workdir, cfg.export_dir or 'model')
        save_converted(trainer.model(), export)
        log(f'exported the trained model to {export}')
    return trainer
