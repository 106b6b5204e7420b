"""``train`` click command (registered by cli.py).  torch is imported only
inside the command body so ``cli.py --help`` stays fast."""
from __future__ import annotations

import json

import click

ARCH_NAMES = ["mbv2", "mbv2-wht", "mbv2-thesis", "resnet20", "resnet20-structured"]
EPOCHS, LR = 30, 0.1
# a short run from trained weights; on fmnist-mbv2-wht, SGD at LR 0.01 diverged within 3 batches
# (the WHT section of the integer model amplifies small changes) while Adam at 1e-4 took the
# mulfree accuracy from 82.8% to 90.4% in 40 batches of 128 (first 500 test images)
FINETUNE_EPOCHS, FINETUNE_LR, FINETUNE_OPTIMIZER = 1, 1e-4, "adam"


@click.command("train", epilog="""\b
Example:
  python cli.py train --arch mbv2-wht --dataset fashion-mnist --epochs 30 \\
      -o runs/fmnist-mbv2-wht.pt --seed 0 --schedule onecycle
  (re-run the same command with --resume to continue after an interruption)

\b
  python cli.py train --finetune-mulfree runs/fmnist-mbv2-wht.pt -o runs/wht-mf.pt
  python cli.py convert runs/wht-mf.pt -o wht-mf.mfe --mulfree --eval fashion-mnist:test""")
@click.option("--arch", type=click.Choice(ARCH_NAMES), default=None,
              help="Architecture (required unless --init / --finetune-mulfree give it).")
@click.option("--dataset", type=click.Choice(["fashion-mnist", "cifar10"]), default=None,
              help="Data set [default: the --init checkpoint's, else fashion-mnist].")
@click.option("--data-dir", type=click.Path(), default=None,
              help="CIFAR-10: folder holding cifar-10-batches-py. Fashion-MNIST: override "
                   "the Debian package folder.")
@click.option("--epochs", type=int, default=None,
              help=f"Total epochs [default: {EPOCHS}; {FINETUNE_EPOCHS} with --finetune-mulfree].")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False), required=True,
              help="Checkpoint path (written after every epoch).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the checkpoint at -o if it exists.")
@click.option("--width", type=float, default=1.0, show_default=True, help="Width multiplier.")
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=None,
              help=f"Peak learning rate [default: {LR}; {FINETUNE_LR} with --finetune-mulfree].")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default=None,
              help=f"[default: sgd; {FINETUNE_OPTIMIZER} with --finetune-mulfree] (SGD uses "
                   "--momentum, Nesterov).")
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--schedule", type=click.Choice(["sgdr", "onecycle"]), default="onecycle",
              show_default=True, help="SGDR (cosine annealing, warm restarts) or one-cycle.")
@click.option("--sgdr-t0", type=int, default=10, show_default=True,
              help="SGDR: epochs of the first cosine period.")
@click.option("--sgdr-mult", type=int, default=2, show_default=True,
              help="SGDR: period multiplier after each restart.")
@click.option("--label-smoothing", type=float, default=0.0, show_default=True)
@click.option("--threshold-lr-scale", type=float, default=None,
              help="LR multiplier for WHT thresholds (default 1; 0.01 for mbv2-thesis, "
                   "see training/README.md).")
@click.option("--struct-lambda", type=float, default=0.0, show_default=True,
              help="Weight of the structural regularization loss (regularized "
                   "StructuredConv2d only).")
@click.option("--config", "config_items", multiple=True, metavar="KEY=VALUE",
              help="Architecture option (repeatable), e.g. --config channel_ratio=1.0 "
                   "--config k_prime=2 for resnet20-structured.")
@click.option("--init", "init", type=click.Path(dir_okay=False), default=None,
              help="Start from this checkpoint's weights (its arch and config) with a fresh "
                   "optimizer and schedule.")
@click.option("--finetune-mulfree", "finetune_mulfree", type=click.Path(dir_okay=False),
              default=None, metavar="CKPT",
              help="--init CKPT, training through what `convert --mulfree` builds: BatchNorm "
                   "folded and frozen, power-of-two weights and scales (straight-through "
                   "gradients). Recovers the accuracy the mulfree conversion loses.")
@click.option("--backbone", type=click.Path(dir_okay=False), default=None, metavar="CKPT",
              help="Copy the leading feature blocks this checkpoint shares with --arch (same "
                   "names and shapes, e.g. mbv2's first 13 in mbv2-wht) and keep them frozen; "
                   "only the rest trains.")
@click.option("--distill", type=float, default=0.0, show_default=True,
              help="With --backbone: weight in [0, 1) of a distillation loss toward the "
                   "backbone checkpoint's own logits (temperature 4).")
@click.option("--freeze", type=int, default=None, metavar="N",
              help="With --backbone: freeze only its first N blocks (default: every block it "
                   "copies); the copied blocks past N train too, e.g. --freeze 7 in mbv2-wht.")
@click.option("--quant-noise", type=float, default=0.0, show_default=True, metavar="S",
              help="Train with uniform noise S int8 steps wide on every tensor `convert` rounds, "
                   "so the integer model keeps the float model's answers (e.g. 1.0).")
@click.option("--threads", type=int, default=None, help="torch CPU threads.")
@click.option("--max-batches", type=int, default=None,
              help="Limit batches per epoch (smoke tests).")
@click.option("--test-limit", type=int, default=None,
              help="Evaluate on the first N test images only (smoke tests).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary at the end.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(arch, dataset, data_dir, epochs, output, device, seed, resume, width, batch_size, lr,
          optimizer, momentum, weight_decay, schedule, sgdr_t0, sgdr_mult, label_smoothing,
          threshold_lr_scale, struct_lambda, config_items, init, finetune_mulfree, backbone,
          distill, freeze, quant_noise, threads,
          max_batches, test_limit, as_json, quiet):
    """Train a model and write a checkpoint (state_dict + arch + config +
    normalisation + test accuracy), from scratch or from a checkpoint's weights."""
    if init and finetune_mulfree:
        raise click.ClickException("--init and --finetune-mulfree both name the starting "
                                   "checkpoint; give one")
    init = init or finetune_mulfree
    if epochs is None:
        epochs = FINETUNE_EPOCHS if finetune_mulfree else EPOCHS
    if lr is None:
        lr = FINETUNE_LR if finetune_mulfree else LR
    if optimizer is None:
        optimizer = FINETUNE_OPTIMIZER if finetune_mulfree else "sgd"
    if batch_size < 1 or (max_batches is not None and max_batches < 1):
        raise click.ClickException("--batch-size and --max-batches must be >= 1")
    if not 0.0 <= label_smoothing < 1.0:
        raise click.ClickException("--label-smoothing must be in [0, 1)")
    if width <= 0:
        raise click.ClickException("--width must be > 0")
    config = {}
    for item in config_items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.ClickException(f"--config {item!r}: expected KEY=VALUE")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value
    from engine.climain import writable
    writable(output)  # before the first epoch, not at its end
    from .trainer import UserError, run
    try:
        summary = run(arch=arch, dataset=dataset, epochs=epochs, output=output, device=device,
                      seed=seed, resume=resume, width=width, batch_size=batch_size, lr=lr,
                      momentum=momentum, weight_decay=weight_decay, schedule=schedule,
                      sgdr_t0=sgdr_t0, sgdr_mult=sgdr_mult, label_smoothing=label_smoothing,
                      data_dir=data_dir, max_batches=max_batches, test_limit=test_limit,
                      threshold_lr_scale=threshold_lr_scale, struct_lambda=struct_lambda,
                      config=config, threads=threads, init=init, optimizer=optimizer,
                      mulfree=finetune_mulfree is not None, backbone=backbone,
                      distill=distill, freeze=freeze, quant_noise=quant_noise,
                      progress=not quiet)
    except UserError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(summary))
    else:
        acc = summary["test_accuracy"]
        mf = summary.get("mulfree_accuracy")
        click.echo(f"{summary['arch']}: {summary['epochs']} epoch{'s' * (summary['epochs'] != 1)}, test accuracy "
                   f"{100 * acc:.2f}%" + (f" (mulfree {100 * mf:.2f}%)" if mf is not None else "") +
                   f", {summary['params']} params -> {summary['checkpoint']}")
