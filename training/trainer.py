"""Training loop behind ``python cli.py train`` (SGD + momentum, SGDR or
one-cycle, label smoothing, per-epoch resumable checkpoints, deterministic
given the seed: the data order/augmentation of epoch e comes from
numpy Generator([seed, e]) and torch is reseeded with (seed, e) at the
start of each epoch, so a resumed run repeats the uninterrupted one).

``init`` starts from a checkpoint's weights (its arch and config) with a fresh
optimizer and schedule; ``mulfree`` then trains through
``converter.mulfree.fake_quant``, the forward pass ``convert --mulfree`` will
build (quantisation-aware fine-tune)."""
from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import checkpoint as ckpt_mod
from . import data as data_mod
from .layers import WHT, StructuredConv2d, clamp_thresholds_
from .models import build, count_params
from .quant_noise import QuantNoise


# mulfree fine-tuning: activation scales come from converting the model as it is, calibrated on the
# first MULFREE_CALIB training images (what `convert` uses by default), at every epoch start, every
# MULFREE_RECALIBRATE batches and before each evaluation
MULFREE_CALIB = 512
MULFREE_RECALIBRATE = 500
# distillation temperature (Hinton et al.; the KL term is scaled by T^2 to keep its gradient size)
DISTILL_T = 4.0


class UserError(Exception):
    """A problem with the user's request (turned into click.ClickException)."""


class Progress:
    """Minimal progress bar on stderr: redraws in place on a terminal, prints a
    line every ``every`` seconds otherwise (log files)."""

    def __init__(self, total: int, label: str, stream=None, every: float = 30.0):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.every = 0.2 if self.tty else every
        self.t0 = self.last = time.time()

    def due(self, done: int) -> bool:
        """Whether update(done, ...) would draw (lets callers skip building ``info``)."""
        return done >= self.total or time.time() - self.last >= self.every

    def update(self, done: int, info: str, force: bool = False) -> None:
        if not (force or self.due(done)):
            return
        now = time.time()
        self.last = now
        width = 24
        fill = int(width * done / max(1, self.total))
        rate = done / max(1e-9, now - self.t0)
        line = (f"{self.label} [{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} "
                f"{info} {rate:.1f} it/s")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done >= self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _param_groups(model: nn.Module, weight_decay: float, lr: float, threshold_lr_scale: float):
    thresholds = {id(m.T) for m in model.modules() if isinstance(m, WHT)}
    decay, no_decay, thr = [], [], []
    for p in model.parameters():
        if not p.requires_grad:      # a frozen backbone
            continue
        if id(p) in thresholds:
            thr.append(p)
        elif p.dim() > 1:
            decay.append(p)
        else:
            no_decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if thr:
        groups.append({"params": thr, "weight_decay": 0.0, "lr": lr * threshold_lr_scale,
                       "lr_scale": threshold_lr_scale})
    return groups


def _make_scheduler(opt, schedule: str, epochs: int, steps: int, lr: float,
                    sgdr_t0: int, sgdr_mult: int):
    if schedule == "onecycle":
        max_lrs = [lr * g.get("lr_scale", 1.0) for g in opt.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=max_lrs, total_steps=max(1, epochs * steps), pct_start=0.15,
            div_factor=10.0, final_div_factor=100.0, cycle_momentum=False)
    if schedule == "sgdr":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            opt, T_0=max(1, sgdr_t0 * steps), T_mult=sgdr_mult, eta_min=lr * 1e-3)
    raise UserError(f"unknown schedule {schedule!r} (sgdr or onecycle)")


@torch.no_grad()
def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, norm: dict,
             device: str, batch_size: int = 500) -> tuple[float, float]:
    """(top-1 accuracy, mean loss) on uint8 NHWC images."""
    model.eval()
    correct, loss_sum = 0, 0.0
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(data_mod.normalize(images[i:i + batch_size], norm["mean"],
                                                norm["std"])).to(device)
        y = torch.from_numpy(labels[i:i + batch_size]).to(device)
        out = model(x)
        loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
    n = max(1, len(images))
    return correct / n, loss_sum / n


def wht_alive_fraction(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Diagnostics: for every WHT layer, the share of non-DC transform
    coefficients with |z| > T on the batch ``x`` (0 = all thresholded away)."""
    stats, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, WHT):
            def hook(mod, inp, out, name=name):
                xi = inp[0]
                xp = F.pad(xi, (0, 0, 0, 0, 0, mod.n - xi.shape[1]))
                from .layers import fwht
                z = fwht(xp, 1) / math.sqrt(mod.n)
                t = mod.thresholds_natural().view(1, -1, 1, 1)
                stats[name] = (z[:, 1:].abs() > t[:, 1:]).float().mean().item()
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return stats


def _read_checkpoint(path: str) -> dict:
    """A user-given checkpoint, or a one-line UserError."""
    try:
        return ckpt_mod.read(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except ValueError as e:
        raise UserError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - torch.load fails in many ways; one line for the user
        raise UserError(f"{path}: not a training checkpoint ({str(e).splitlines()[0]})") from None


def shared_prefix(model: nn.Module, state_dict: dict) -> int:
    """How many leading ``model.features`` blocks ``state_dict`` holds with exactly the same
    names and shapes (e.g. mbv2's first 13 blocks in mbv2-wht)."""
    feats = getattr(model, "features", None)
    if not isinstance(feats, nn.Sequential):
        raise UserError("--backbone needs a model built on a `features` stack (the mbv2 family)")
    k = 0
    for i, block in enumerate(feats):
        own = {f"features.{i}.{n}": v.shape for n, v in block.state_dict().items()}
        theirs = {n: v.shape for n, v in state_dict.items() if n.startswith(f"features.{i}.")}
        if not own or own != theirs:
            break
        k += 1
    return k


def run(arch: str | None, dataset: str | None = None, epochs: int = 1, output: str = "model.pt",
        device: str = "cpu", seed: int = 0, resume: bool = False, width: float = 1.0,
        batch_size: int = 128, lr: float = 0.1, momentum: float = 0.9,
        weight_decay: float = 5e-4, schedule: str = "onecycle", sgdr_t0: int = 10,
        sgdr_mult: int = 2, label_smoothing: float = 0.0, data_dir: str | None = None,
        max_batches: int | None = None, test_limit: int | None = None,
        threshold_lr_scale: float | None = None, struct_lambda: float = 0.0,
        config: dict | None = None, threads: int | None = None,
        init: str | None = None, mulfree: bool = False, optimizer: str = "sgd",
        backbone: str | None = None, distill: float = 0.0, freeze: int | None = None,
        quant_noise: float = 0.0, progress: bool = True, log=None) -> dict:
    """Train (or resume) and return a summary dict. ``arch`` (and ``dataset``) may be None
    with ``init``: they come from that checkpoint. ``mulfree`` needs ``init`` (or a resume).
    ``backbone``: copy the leading ``features`` blocks that checkpoint shares with ``arch``
    and keep them frozen (weights and BatchNorm statistics), or only the first ``freeze`` of
    them (the rest train from the backbone's weights); ``distill`` > 0 adds that
    weight of a distillation loss toward the backbone checkpoint's own logits; ``quant_noise``
    > 0 trains with that many int8 steps of noise on every tensor `convert` rounds
    (``training.quant_noise``)."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    t_start = time.time()
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but torch.cuda.is_available() is False")
    if threads:
        torch.set_num_threads(threads)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    if epochs < 1:
        raise UserError("--epochs must be >= 1")
    if not 0.0 <= distill < 1.0:
        raise UserError("--distill must be in [0, 1)")
    if distill and not backbone:
        raise UserError("--distill needs --backbone (the teacher is the backbone checkpoint)")
    if freeze is not None and not backbone:
        raise UserError("--freeze needs --backbone")
    if backbone and mulfree:
        raise UserError("--backbone and --finetune-mulfree do not combine")
    if quant_noise < 0:
        raise UserError("--quant-noise must be >= 0")
    if quant_noise and mulfree:
        raise UserError("--quant-noise and --finetune-mulfree do not combine (the mulfree view "
                        "rounds for itself)")
    try:
        state = ckpt_mod.read(output) if resume and os.path.exists(output) else None
    except ValueError as e:
        raise UserError(str(e)) from None
    if state is not None:  # a resumed run keeps its arch and data set
        arch, dataset = arch or state.get("arch"), dataset or state.get("dataset")
    source = None
    if init and state is None:
        source = _read_checkpoint(init)
        if arch not in (None, source["arch"]):
            raise UserError(f"{init} holds arch {source['arch']!r}, not {arch!r}")
        arch = source["arch"]
        dataset = dataset or source.get("dataset")
    elif mulfree and state is None:
        raise UserError("mulfree fine-tuning starts from a trained checkpoint (--finetune-mulfree CKPT)")
    if arch is None:
        raise UserError("--arch is required (or --init / --finetune-mulfree CKPT)")
    dataset = dataset or "fashion-mnist"
    if threshold_lr_scale is None:  # see training/README.md (mbv2-thesis)
        threshold_lr_scale = 0.01 if arch == "mbv2-thesis" else 1.0
    if dataset not in data_mod.DATASETS:
        raise UserError(f"unknown dataset {dataset!r}")
    try:
        xtr, ytr = data_mod.load(dataset, "train", data_dir)
        xte, yte = data_mod.load(dataset, "test", data_dir)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    if test_limit:
        xte, yte = xte[:test_limit], yte[:test_limit]
    norm = source.get("normalization", data_mod.NORMALIZATION[dataset]) if source else \
        data_mod.NORMALIZATION[dataset]
    aug = data_mod.AUGMENT[dataset]

    if resume and state is None:
        log(f"resume: {output} does not exist yet, starting from {init or 'scratch'}")
    if state is not None:
        if state.get("arch") != arch:
            raise UserError(f"{output} holds arch {state.get('arch')!r}, not {arch!r}")
        if "optimizer" not in state:
            raise UserError(f"{output} has no optimizer state (a slim export?); cannot resume")
        cfg = state["config"]
        targs = state.get("train_args", {})
        # the schedule is a function of the original run's settings
        schedule = targs.get("schedule", schedule)
        lr = targs.get("lr", lr)
        batch_size = targs.get("batch_size", batch_size)
        seed = targs.get("seed", seed)
        sgdr_t0, sgdr_mult = targs.get("sgdr_t0", sgdr_t0), targs.get("sgdr_mult", sgdr_mult)
        threshold_lr_scale = targs.get("threshold_lr_scale", threshold_lr_scale)
        optimizer = targs.get("optimizer", "sgd")
        init, mulfree = targs.get("init", init), targs.get("finetune_mulfree", mulfree)
        backbone, distill = targs.get("backbone"), targs.get("distill", 0.0)
        freeze, quant_noise = targs.get("freeze"), targs.get("quant_noise", 0.0)
        norm = state.get("normalization", norm)
        if schedule == "onecycle":
            epochs_total = targs.get("epochs", epochs)
            if epochs != epochs_total:
                log(f"resume: one-cycle schedule was planned for {epochs_total} epochs; "
                    f"keeping that")
            epochs = epochs_total
    elif source is not None:
        cfg = dict(source.get("config", {}))
    else:
        c, h, w = data_mod.INPUT_SHAPE[dataset]
        cfg = {"in_channels": c, "num_classes": data_mod.NUM_CLASSES[dataset], "width": width}
        cfg.update(config or {})
    torch.manual_seed(seed)          # weight init is part of the seeded run
    try:
        model = build(arch, **cfg)
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from None
    if source is not None and state is None:
        try:
            model.load_state_dict(ckpt_mod.float_state(source))
        except RuntimeError as e:
            raise UserError(f"{init}: weights do not fit {arch} {cfg}: "
                            f"{str(e).splitlines()[1].strip()}") from None
    frozen, teacher = 0, None
    if backbone:
        bsrc = _read_checkpoint(backbone)
        bsd = ckpt_mod.float_state(bsrc)
        copied = shared_prefix(model, bsd)
        if not copied:
            raise UserError(f"{backbone} ({bsrc['arch']}) shares no leading features block "
                            f"with {arch}")
        frozen = copied if freeze is None else freeze
        if not 0 <= frozen <= copied:
            raise UserError(f"--freeze must be in [0, {copied}] (the blocks {backbone} shares "
                            f"with {arch})")
        if bsrc.get("normalization", norm) != norm:
            raise UserError(f"{backbone} was trained with another input normalisation")
        if state is None:
            model.load_state_dict({k: v for k, v in bsd.items()
                                   if k.startswith(tuple(f"features.{i}." for i in range(copied)))},
                                  strict=False)
        model.features[:frozen].requires_grad_(False)
        if distill:
            teacher = ckpt_mod.model_of(bsrc).to(device)
        log(f"backbone: features[:{copied}] from {backbone}, features[:{frozen}] frozen")
    model.to(device)

    steps = math.ceil(len(xtr) / batch_size)
    if max_batches:
        steps = min(steps, max_batches)
    groups = _param_groups(model, weight_decay, lr, threshold_lr_scale)
    if optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    else:
        raise UserError(f"unknown optimizer {optimizer!r} (sgd or adam)")
    sched = _make_scheduler(opt, schedule, epochs, steps, lr, sgdr_t0, sgdr_mult)
    history: list[dict] = []
    start_epoch = 0
    prior_seconds = 0.0
    if state is not None:
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history = list(state.get("history", []))
        start_epoch = int(state["epochs"])
        prior_seconds = float(state.get("seconds", 0.0))
        log(f"resume: {output} at epoch {start_epoch}")
        if start_epoch >= epochs:
            log(f"resume: nothing to train, {output} has finished its {epochs} planned epochs"
                + (" (a one-cycle plan keeps its length; --init starts a new schedule)" if schedule == "onecycle" else ""))
    net = model  # what the loss sees: the model, or its multiplication-free view
    calibrated = False  # mulfree: whether the view's activation scales fit the current weights
    if mulfree:
        from converter import ConvertError
        from converter.mulfree import activation_scales, fake_quant, fold_batchnorm_, set_activation_scales
        try:  # the converter's trace folds on the CPU (a CUDA run failed with mixed devices there)
            model.cpu()
            net = fake_quant(model, norm["std"])
            if state is None:
                fold_batchnorm_(model)
        except ConvertError as e:
            raise UserError(str(e)) from None
        model.to(device)
        net.to(device)

        def calibrate() -> None:
            set_activation_scales(net, activation_scales(model, xtr[:MULFREE_CALIB], norm["mean"],
                                                         norm["std"]))
        if state is None:
            calibrate()
            calibrated = True
            mf_acc, _ = evaluate(net, xte, yte, norm, device)
            log(f"mulfree accuracy before fine-tuning: {100 * mf_acc:.2f}% "
                f"(float {100 * evaluate(model, xte, yte, norm, device)[0]:.2f}%)")

    struct_mods = [m for m in model.modules()
                   if isinstance(m, StructuredConv2d) and m.mode == "regularized"]
    train_args = dict(arch=arch, dataset=dataset, epochs=epochs, seed=seed, width=width,
                      batch_size=batch_size, lr=lr, momentum=momentum,
                      weight_decay=weight_decay, schedule=schedule, sgdr_t0=sgdr_t0,
                      sgdr_mult=sgdr_mult, label_smoothing=label_smoothing,
                      max_batches=max_batches, test_limit=test_limit,
                      threshold_lr_scale=threshold_lr_scale, struct_lambda=struct_lambda,
                      device=device, init=init, finetune_mulfree=mulfree, optimizer=optimizer,
                      backbone=backbone, distill=distill, freeze=freeze, frozen_blocks=frozen,
                      quant_noise=quant_noise)
    n_params = count_params(model)
    acc = state.get("test_accuracy") if state is not None else None
    mf_acc = state.get("mulfree_accuracy") if state is not None else None
    # the float accuracy the run started from: what a fine-tune is measured against
    init_acc = state.get("init_test_accuracy") if state is not None else \
        source.get("test_accuracy") if source is not None else None
    # on the frozen blocks too: the trained part must tolerate their rounding as well (the teacher
    # sees the same noisy frozen output)
    noise = QuantNoise(model, quant_noise) if quant_noise else None
    for epoch in range(start_epoch, epochs):
        t0 = time.time()
        if noise:
            noise.on = True
        net.train()
        if frozen:
            model.features[:frozen].eval()   # frozen BatchNorm statistics too
        rng = np.random.default_rng([seed, epoch])
        torch.manual_seed(seed * 100003 + epoch)
        order = rng.permutation(len(xtr))
        bar = Progress(steps, f"epoch {epoch + 1}/{epochs}") if progress else None
        # running sums stay on the device: a .item() per batch would stall the GPU queue
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        if mulfree and not calibrated:
            calibrate()
        for b in range(steps):
            if mulfree and b and b % MULFREE_RECALIBRATE == 0:
                calibrate()
            idx = order[b * batch_size:(b + 1) * batch_size]
            imgs = data_mod.augment(xtr[idx], rng, aug["pad"], aug["flip"])
            x = torch.from_numpy(data_mod.normalize(imgs, norm["mean"], norm["std"])).to(device)
            y = torch.from_numpy(ytr[idx]).to(device)
            if backbone:  # the frozen blocks' output, shared with the teacher
                with torch.no_grad():
                    h = model.features[:frozen](x)
                out = model.forward_from(h, frozen)
            else:
                out = net(x)
            loss = F.cross_entropy(out, y, label_smoothing=label_smoothing)
            total = loss
            if teacher is not None:
                with torch.no_grad():
                    soft = F.log_softmax(teacher.forward_from(h, frozen) / DISTILL_T, 1)
                kd = F.kl_div(F.log_softmax(out / DISTILL_T, 1), soft, log_target=True,
                              reduction="batchmean") * DISTILL_T ** 2
                total = (1 - distill) * loss + distill * kd
            if struct_mods and struct_lambda:
                total = total + struct_lambda * sum(m.structural_loss() for m in struct_mods)
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            calibrated = False
            clamp_thresholds_(model)
            sched.step()
            loss_sum += loss.detach() * len(idx)
            correct += (out.argmax(1) == y).sum()
            seen += len(idx)
            if (bar and bar.due(b + 1)) or b + 1 == steps:
                mean_loss = loss_sum.item() / seen
                if not math.isfinite(mean_loss):
                    raise UserError(f"loss became {mean_loss} in epoch {epoch + 1} (by batch "
                                    f"{b + 1}); try a lower --lr")
                if bar:
                    bar.update(b + 1, f"loss {mean_loss:.4f} "
                                      f"acc {100 * correct.item() / seen:.2f}%")
        loss_sum, correct = loss_sum.item(), correct.item()
        if noise:
            noise.on = False
        acc, test_loss = evaluate(model, xte, yte, norm, device)
        secs = time.time() - t0
        rec = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen),
               "train_accuracy": correct / max(1, seen), "test_accuracy": acc,
               "test_loss": test_loss, "lr": opt.param_groups[0]["lr"], "seconds": secs}
        if mulfree:
            calibrate()
            calibrated = True
            mf_acc, _ = evaluate(net, xte, yte, norm, device)
            rec["mulfree_accuracy"] = mf_acc
        history.append(rec)
        log(f"epoch {epoch + 1}/{epochs}: train loss {rec['train_loss']:.4f} "
            f"acc {100 * rec['train_accuracy']:.2f}% | test loss {test_loss:.4f} "
            f"acc {100 * acc:.2f}%" + (f" mulfree {100 * mf_acc:.2f}%" if mulfree else "") +
            f" | {secs:.0f}s")
        ck = {
            "format": ckpt_mod.FORMAT, "format_version": ckpt_mod.FORMAT_VERSION,
            "arch": arch, "config": cfg,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "normalization": norm, "dataset": dataset, "test_accuracy": acc,
            "test_images": len(xte), "epochs": epoch + 1, "params": n_params,
            "history": history, "train_args": train_args,
            **({"mulfree_accuracy": mf_acc} if mulfree else {}),
            **({"init_test_accuracy": init_acc} if init else {}),
            "seconds": prior_seconds + (time.time() - t_start),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": {"seed": seed, "next_epoch": epoch + 1},
        }
        ckpt_mod.save(ck, output)
    return {"arch": arch, "dataset": dataset, "epochs": max(epochs, start_epoch),
            "test_accuracy": acc, "params": n_params, "checkpoint": os.path.abspath(output),
            "seconds": round(time.time() - t_start, 3),
            **({"mulfree_accuracy": mf_acc} if mulfree else {})}
