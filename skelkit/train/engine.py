"""The training engine: one loop for every method (SGD, schedules, AMP, DDP, checkpoints, monitor).

It writes a run directory (:mod:`skelkit.store.rundir`). Checkpoints store completed epochs; ``--resume`` restores model, optimizer, schedule, scaler and
RNG states and continues, giving the same loss curve as an uninterrupted run on CPU.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from skelkit.failpoints import failpoint
from skelkit.knn import knn_evaluate
from skelkit.store.chunks import ChunkReadError, require_all_chunks
from skelkit.store.durable import (
    DiskFullError,
    disk_full_message,
    is_disk_full,
    write_atomically,
)
from skelkit.store.lock import WriterLock
from skelkit.store.reader import Store, StoreError, open_store
from skelkit.store.rundir import MetricsLog, RunDir
from skelkit.store.writer import store_build_id
from skelkit.train.checkpoint import load_checkpoint, restore_rng_state, save_checkpoint
from skelkit.train.config import OptimConfig, RunConfig, ScheduleConfig
from skelkit.train.data import SkeletonDataset, build_augment, make_loader
from skelkit.train.distributed import DistContext, barrier, init_distributed
from skelkit.train.packed import release
from skelkit.train.runs import (
    Run,
    TrainInputError,
    build_method,
    compute_embeddings,
    resolve_device,
    side_loader,
    side_order,
)
from skelkit.train.steplog import LogReading, StepLog

LOG = logging.getLogger("skelkit.train")


class NonFiniteLossError(Exception):
    """The loss became NaN/inf: the run stopped, the last good checkpoint is kept (exit 3)."""


class TrainInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: which epoch was running and which one the last checkpoint holds
    (a ``KeyboardInterrupt`` still, for callers that only know that)."""

    def __init__(self, run_dir: Path, method: str, epoch: int | None, saved_epoch: int | None,
                 last_path: Path) -> None:
        super().__init__(run_dir)
        self.run_dir, self.method, self.last_path = run_dir, method, last_path
        self.epoch = epoch
        """1-based epoch that was running (None: interrupted before the first one started)."""
        self.saved_epoch = saved_epoch
        """Completed epochs in ``last_path`` (None: nothing saved yet, nothing to resume)."""

    def describe(self) -> str:
        where = f"in epoch {self.epoch}" if self.epoch is not None else "before the first epoch"
        if self.saved_epoch is None:
            return f"interrupted {where}; nothing was saved in {self.run_dir}"
        return (f"interrupted {where}; epoch {self.saved_epoch} is saved in {self.last_path}; "
                f"continue with: skeltrain run {self.method} --resume {self.run_dir}")


# --- learning-rate schedule -----------------------------------------------------------------------

@dataclass
class EpochSchedule:
    """Per-epoch learning rate: optional linear warm-up, then step decay or a half cosine."""

    base_lr: float
    cfg: ScheduleConfig
    epochs: int

    def lr(self, epoch: int) -> float:
        if self.cfg.warmup_epochs and epoch < self.cfg.warmup_epochs:
            return self.base_lr * (epoch + 1) / self.cfg.warmup_epochs
        if self.cfg.kind == "step":
            drops = sum(1 for m in self.cfg.milestones if epoch >= m)
            return self.base_lr * self.cfg.gamma ** drops
        span = max(self.epochs - self.cfg.warmup_epochs, 1)
        progress = min(max(epoch - self.cfg.warmup_epochs, 0) / span, 1.0)
        return self.cfg.min_lr + (self.base_lr - self.cfg.min_lr) * 0.5 * (
            1.0 + math.cos(math.pi * progress))

    def state_dict(self, epoch: int) -> dict[str, Any]:
        return {"kind": self.cfg.kind, "next_epoch": int(epoch), "lr": self.lr(epoch)}


# --- run directory --------------------------------------------------------------------------------

class RunLogHandler(logging.FileHandler):
    """train.log. A full disk stops the run with one line (the write of metrics.csv or of the
    checkpoint would fail next anyway) instead of logging's printed traceback per record."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            failpoint("write-log")
            super().emit(record)
        except Exception as exc:
            if is_disk_full(exc):
                raise DiskFullError(disk_full_message(self.baseFilename)) from None
            raise

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if exc is not None and is_disk_full(exc):
            raise DiskFullError(disk_full_message(self.baseFilename)) from None
        super().handleError(record)


class RunFiles:
    """train.log, metrics.csv and TensorBoard events of the main rank."""

    def __init__(self, run_dir: RunDir, enabled: bool, metric_columns: tuple[str, ...] = ()
                 ) -> None:
        self.enabled = enabled
        self.metrics = MetricsLog(run_dir.metrics, columns=metric_columns)
        self._tb: Any = None
        self._handler: logging.Handler | None = None
        if enabled:
            run_dir.path.mkdir(parents=True, exist_ok=True)
            self._handler = RunLogHandler(run_dir.log)
            self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            LOG.addHandler(self._handler)
            LOG.setLevel(logging.INFO)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(run_dir.tb))
            except ImportError:  # tensorboard is a dependency, but a missing one must not stop a run
                LOG.warning("tensorboard not importable; metrics go to metrics.csv only")

    def reconcile_metrics(self, start_epoch: int, resume: bool) -> None:
        """A fresh run starts metrics.csv empty; a resumed one keeps the rows up to its
        checkpoint's epoch (``epoch`` counts completed epochs) and drops, saying so, the rows of
        epochs it will redo."""
        if not self.enabled:
            return
        if not resume:
            self.metrics.reset()
            return
        message = self.metrics.reconcile(start_epoch)
        if message:
            LOG.warning("%s", message)
            print(f"skeltrain: {message}", file=sys.stderr, flush=True)

    def write_metrics(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.metrics.append(row)  # durable before the epoch's checkpoint is
        if self._tb is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, int | float) and math.isfinite(value):
                    self._tb.add_scalar(key, value, row["epoch"])
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._handler is not None:
            LOG.removeHandler(self._handler)
            self._handler.close()


# --- the loop -----------------------------------------------------------------------------------

class _Step(nn.Module):
    """Routes DDP's forward to ``training_step`` so gradients are all-reduced."""

    def __init__(self, method: nn.Module) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: dict[str, torch.Tensor], epoch: int) -> Any:
        return self.method.training_step(batch, epoch)


def _open_store(cfg: RunConfig) -> Store:
    if not cfg.data.store:
        raise TrainInputError("no store given (--store or data.store)")
    if not cfg.data.protocol:
        raise TrainInputError("no protocol given (--protocol or data.protocol)")
    try:
        store = open_store(cfg.data.store)
        store.split(cfg.data.protocol)
        # A lost chunk would train on zeros: every chunk file (and shard index entry) the
        # shapes need must be there. Directory listing and shard indexes only, no data read.
        require_all_chunks(store.path, store.group.unchecked)
    except StoreError as exc:
        raise TrainInputError(str(exc)) from None
    return store


def _store_read_failure(exc: BaseException) -> str | None:
    """The one line of a chunk that did not read back, also when a DataLoader worker raised it
    (torch re-raises it with the worker's traceback folded into the message)."""
    if not isinstance(exc, ChunkReadError):
        return None
    lines = [line for line in str(exc).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    name = f"{ChunkReadError.__module__}.{ChunkReadError.__name__}: "
    return last.split(name, 1)[1] if name in last else last


def _check_store_unchanged(store: str | Path | None, build_id: str | None, epoch: int,
                           last_path: Path) -> None:
    """Stop with one line when the store was rebuilt or removed under the run."""
    now = store_build_id(str(store))
    if now != build_id:
        raise TrainInputError(
            f"{store} was {'removed' if now == 'missing' else 'rebuilt'} while this run trained "
            f"(build {build_id}, now {now}); stopped in epoch {epoch + 1} before saving it; the "
            f"last checkpoint {last_path} is kept (--resume continues on the new store)")


def _per_rank_buffers() -> dict[str, bool]:
    """DDP keyword keeping queues and BN statistics per rank after the initial sync."""
    params = inspect.signature(nn.parallel.DistributedDataParallel).parameters
    if "forward_sync_buffers" in params:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def _to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


@dataclass
class TrainResult:
    run_dir: Path
    epochs: int
    last_checkpoint: Path
    metrics: list[dict[str, Any]]
    method: nn.Module


def train(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
          ctx: DistContext | None = None, stop_after: int | None = None) -> TrainResult:
    """Train ``cfg`` into ``run_dir`` (fresh, or continuing its last checkpoint when ``resume``).

    ``stop_after`` ends the run after that many completed epochs, as a crash would (the
    schedule still spans ``engine.epochs``); resuming then continues exactly.
    """
    run_dir = Path(run_dir)
    rundir = RunDir(run_dir)
    device = resolve_device(cfg.engine.device)
    ctx = ctx or init_distributed(device.type)
    if device.type == "cuda" and ctx.enabled:
        device = torch.device("cuda", ctx.local_rank)
    if cfg.engine.threads:
        torch.set_num_threads(cfg.engine.threads)
    store = _open_store(cfg)
    # The run's config names its store absolutely (a copy: the caller's config is left as given).
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, store=str(Path(str(cfg.data.store)).resolve())))

    build_id = store_build_id(cfg.data.store)  # recorded in the run, checked at every epoch

    torch.manual_seed(cfg.engine.seed)  # identical initial weights on every rank
    method = build_method(cfg, store).to(device)
    params = [p for p in method.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg.optim)
    schedule = EpochSchedule(cfg.optim.lr, cfg.schedule, cfg.engine.epochs)
    use_amp = cfg.engine.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    last_path = rundir.last_checkpoint
    start_epoch = 0
    if resume:
        ckpt = load_checkpoint(last_path)
        if ckpt["method"] != cfg.method:
            raise TrainInputError(f"{last_path}: checkpoint of {ckpt['method']}, not {cfg.method}")
        method.load_state_dict(ckpt["model"])
        if ckpt["optimizer"] is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt["scaler"] is not None and use_amp:
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch = int(ckpt["epoch"])
        restore_rng_state(ckpt["rng"])
        trained_on = (ckpt.get("extra") or {}).get("store_build_id")
        if trained_on is not None and trained_on != build_id:
            print(f"skeltrain: warning: {cfg.data.store} was rebuilt since {last_path} was "
                  f"written (build {trained_on}, now {build_id}); continuing on the rebuilt store",
                  file=sys.stderr, flush=True)

    # The data checks come before anything is written into the run directory: a run that fails
    # them leaves nothing a rerun would take for a run (no epoch-0 checkpoint, no config).
    dataset = SkeletonDataset(cfg.data.store, cfg.data.protocol, "train", kind=method.input_kind,
                              mode="train", augment=build_augment(cfg.data.augment),
                              window=cfg.data.window, seed=cfg.engine.seed,
                              raw_cache=cfg.data.raw_cache or None)
    per_rank_batch = max(cfg.engine.batch_size // ctx.world_size, 1)
    if cfg.engine.drop_last and len(dataset) < per_rank_batch * ctx.world_size:
        raise TrainInputError(f"train side has {len(dataset)} samples, fewer than one batch "
                              f"of {cfg.engine.batch_size}; lower --batch-size")
    monitor = (_KnnMonitor(Run(rundir, cfg), method, device)
               if cfg.engine.knn_every and ctx.is_main else None)

    # One writer per run directory: a second `skeltrain run` into it stops here with one line.
    lock = WriterLock(rundir.lock_file, run_dir, "skeltrain run") if ctx.is_main else None
    if lock is not None:
        lock.acquire()
    files: RunFiles | None = None
    history: list[dict[str, Any]] = []
    # What a Ctrl-C reports: the epoch running and the one the last checkpoint holds.
    running: int | None = None
    saved: int | None = start_epoch if resume else None
    try:
        files = RunFiles(rundir, enabled=ctx.is_main,
                         metric_columns=("knn_top1",) if cfg.engine.knn_every else ())
        config_text = cfg.to_yaml()
        if ctx.is_main:
            write_atomically(rundir.config, config_text.encode())
            files.reconcile_metrics(start_epoch, resume)
            LOG.info("%s run %s: method %s, store %s (build %s), protocol %s, device %s, world %d, "
                     "epochs %d-%d", "resumed" if resume else "new", run_dir, cfg.method,
                     cfg.data.store, build_id, cfg.data.protocol, device, ctx.world_size,
                     start_epoch, cfg.engine.epochs)

        def save(epoch: int) -> Path:
            nonlocal saved
            if ctx.is_main:
                state = dict(method=cfg.method, epoch=epoch, model=method.state_dict(),
                             optimizer=optimizer.state_dict(),
                             scheduler=schedule.state_dict(epoch),
                             scaler=scaler.state_dict() if use_amp else None,
                             config_text=config_text,
                             extra={"layout": store.layout.to_attrs(),
                                    "store_build_id": build_id})
                save_checkpoint(last_path, **state)
                every = cfg.engine.checkpoint_every
                if epoch == 0 or (every and epoch % every == 0) or epoch == cfg.engine.epochs:
                    save_checkpoint(rundir.epoch_checkpoint(epoch), **state)
            barrier(ctx)
            saved = epoch
            return last_path

        if start_epoch == 0 and not resume:
            save(0)  # the random initialisation: `--epochs 0` is the random-init baseline
        if start_epoch >= cfg.engine.epochs:
            return TrainResult(run_dir, start_epoch, last_path, history, method)

        loader, sampler = make_loader(
            dataset, batch_size=per_rank_batch, shuffle=True, seed=cfg.engine.seed,
            drop_last=cfg.engine.drop_last, num_workers=cfg.data.num_workers,
            start_method=cfg.data.start_method, pin_memory=device.type == "cuda",
            prefetch_factor=cfg.data.prefetch_factor, num_replicas=ctx.world_size,
            rank=ctx.rank)
        step_module: nn.Module = _Step(method)
        if ctx.enabled:
            step_module = nn.parallel.DistributedDataParallel(
                step_module, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=cfg.engine.find_unused_parameters, **_per_rank_buffers())

        end_epoch = cfg.engine.epochs if stop_after is None else min(stop_after,
                                                                     cfg.engine.epochs)
        for epoch in range(start_epoch, end_epoch):
            running = epoch + 1
            _check_store_unchanged(cfg.data.store, build_id, epoch, last_path)
            lr = schedule.lr(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            sampler.set_epoch(epoch)
            method.train()
            try:
                row = _train_epoch(step_module, loader, optimizer, scaler, epoch, device, cfg,
                                   use_amp, ctx, progress, last_path)
            except Exception as exc:
                # A store replaced in the middle of an epoch explains the failure in one line.
                _check_store_unchanged(cfg.data.store, build_id, epoch, last_path)
                damaged = _store_read_failure(exc)
                if damaged is not None:
                    raise TrainInputError(f"{damaged}; stopped in epoch {epoch + 1}, the last "
                                          f"checkpoint {last_path} is kept") from None
                raise
            # ... and one replaced while the epoch ran never reaches a row or a checkpoint.
            _check_store_unchanged(cfg.data.store, build_id, epoch, last_path)
            row = {"epoch": epoch + 1, "lr": lr, **row}
            every = cfg.engine.knn_every
            if monitor is not None and ((epoch + 1) % every == 0 or epoch + 1 == cfg.engine.epochs):
                row["knn_top1"] = monitor(progress)
            barrier(ctx)
            # The row first: a kill between the two leaves a row past the checkpoint, which
            # --resume drops and redoes; the other order would lose the epoch's row.
            files.write_metrics(row)
            failpoint("train-metrics-row")
            save(epoch + 1)
            failpoint("train-checkpoint")
            history.append(row)
            if ctx.is_main:
                LOG.info("epoch %d/%d %s", epoch + 1, cfg.engine.epochs,
                         " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in row.items() if k != "epoch"))
            if ctx.is_main and progress:
                # The terminal keeps one line per epoch (the epoch's bar goes away).
                tqdm.write(epoch_summary(row, cfg.engine.epochs), file=sys.stderr)
    except NonFiniteLossError as exc:
        if ctx.is_main:
            LOG.error("%s", exc)
        raise
    except KeyboardInterrupt:
        interrupted = TrainInterrupted(run_dir, cfg.method, running, saved, last_path)
        if ctx.is_main:
            LOG.warning("%s", interrupted.describe())  # train.log keeps why the run ended
        raise interrupted from None
    finally:
        if files is not None:
            files.close()
        if lock is not None:
            lock.release()
    return TrainResult(run_dir, end_epoch, last_path, history, method)


def build_optimizer(params: Any, optim: OptimConfig) -> torch.optim.Optimizer:
    """SGD as in the papers, or AdamW (momentum as beta_1) for small Transformers on CPU."""
    if optim.name == "adamw":
        return torch.optim.AdamW(params, lr=optim.lr, betas=(optim.momentum, 0.999),
                                 weight_decay=optim.weight_decay)
    return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum,
                           weight_decay=optim.weight_decay, nesterov=optim.nesterov)


BAR_REFRESH_S = 1.0
"""Seconds between progress-bar refreshes; each refresh reads the step logs back (one sync)."""


def _train_epoch(step_module: nn.Module, loader: Any, optimizer: torch.optim.Optimizer,
                 scaler: torch.amp.GradScaler, epoch: int, device: torch.device, cfg: RunConfig,
                 use_amp: bool, ctx: DistContext, progress: bool, last_path: Path
                 ) -> dict[str, Any]:
    """One epoch. Logs stay on the device (:class:`StepLog`): they are read back, and the loss
    checked for NaN/inf, every ``engine.log_every`` steps (all ranks together), at the end of the
    epoch, and, on the rank that shows it, at each refresh of the progress bar."""
    log = StepLog(device)
    samples = 0
    t0 = last_refresh = time.perf_counter()
    show = progress and ctx.is_main
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.engine.epochs}", unit="batch",
               disable=not show, leave=False, dynamic_ncols=True, mininterval=BAR_REFRESH_S)
    for loaded in bar:
        batch = _to_device(loaded, device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            loss, logs = step_module(batch, epoch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if cfg.engine.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]], cfg.engine.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        log.add(loss, logs)
        samples += int(batch["q"].shape[0])
        # The step is done with the batch (on the CPU its tensors are the worker's buffer):
        # the worker may refill that buffer now.
        del batch
        release(loaded)
        every = cfg.engine.log_every
        if every and log.steps % every == 0:
            reading = _checked(log.read(ctx), epoch, last_path)
            if ctx.is_main:
                LOG.info("epoch %d step %d %s", epoch + 1, log.steps, _format(reading.means))
        elif show and time.perf_counter() - last_refresh >= BAR_REFRESH_S:
            # This rank's own values: a refresh is timed, so the ranks do not reach it together.
            reading = log.read()
            if not ctx.enabled:
                _checked(reading, epoch, last_path)
        else:
            continue
        last_refresh = time.perf_counter()
        rate = samples * ctx.world_size / max(last_refresh - t0, 1e-9)
        bar.set_postfix(loss=f"{reading.means['loss']:.4f}", samples_s=f"{rate:.0f}",
                        refresh=False)
    bar.close()
    seconds = time.perf_counter() - t0
    reading = _checked(log.read(ctx), epoch, last_path)
    return {**reading.means, "samples_per_s": samples * ctx.world_size / max(seconds, 1e-9),
            "seconds": seconds}


def _checked(reading: LogReading, epoch: int, last_path: Path) -> LogReading:
    """Stop the run (exit 3) when a loss since the start of the epoch was NaN or infinite."""
    if reading.nonfinite:
        where = (f"step {reading.bad_step}" if reading.bad_step
                 else "a step of another rank")
        value = f"{reading.bad_loss:g}" if reading.bad_step else "not finite"
        raise NonFiniteLossError(
            f"loss is {value} at epoch {epoch + 1} {where}; "
            f"run stopped, last good checkpoint kept: {last_path}")
    return reading


def epoch_summary(row: dict[str, Any], epochs: int) -> str:
    """``epoch 3/25: loss 5.1234 (epoch mean), knn top-1 41.7 %, 4.2 s``: the terminal's line per
    epoch (train.log and metrics.csv hold every term)."""
    parts = [f"loss {row['loss']:.4f} (epoch mean)"]
    if row.get("knn_top1") is not None:
        parts.append(f"knn top-1 {100 * row['knn_top1']:.1f} %")
    parts.append(f"{row['seconds']:.1f} s")
    return f"epoch {row['epoch']}/{epochs}: " + ", ".join(parts)


def _format(means: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.6g}" for k, v in means.items())


class _KnnMonitor:
    """Cosine 1-NN top-1 of the test side against the train side, on un-augmented embeddings."""

    def __init__(self, run: Run, method: nn.Module, device: torch.device) -> None:
        cfg = run.config
        self.method, self.device = method, device
        self.modality = cfg.engine.knn_modality
        if self.modality != "all" and self.modality not in method.modalities:
            self.modality = method.modalities[0]
        self.loaders = {
            side: side_loader(cfg.data.store, cfg.data.protocol, side, kind=method.input_kind,
                              window=cfg.data.window, batch_size=cfg.engine.embed_batch_size,
                              num_workers=min(cfg.data.num_workers, 1),
                              start_method=cfg.data.start_method,
                              pin_memory=device.type == "cuda", view=run.evaluation_view())
            for side in ("train", "test")
        }

    def __call__(self, progress: bool) -> float:
        features, labels = {}, {}
        for side, (loader, dataset) in self.loaders.items():
            features[side], rows = compute_embeddings(self.method, loader, self.modality,
                                                      self.device, progress=progress,
                                                      desc=f"knn {side}")
            labels[side] = dataset.meta.labels[side_order(dataset, rows)]
        return knn_evaluate(features["train"], labels["train"], features["test"], labels["test"],
                            k=1, device=self.device).top1
