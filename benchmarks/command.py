"""The `bench` command (click). Registered in cli.py with
    from benchmarks.command import bench; cli.add_command(bench)
and runnable alone as `python -m benchmarks ...`. Imports nothing heavy (torch, onnxruntime, matplotlib,
the engine) until it runs."""
from __future__ import annotations

import json
import os
import sys
import time

import click

PARTS = ("seed", "growth", "models", "hotspots")
FULL = {"seed_batch": 10, "seed_repeats": 9, "growth": [64, 128, 256, 512, 1024, 2048, 4096], "growth_repeats": 5,
        "batches": [1, 64], "model_repeats": 9, "model_budget_s": 90, "calib_images": 16, "hot_repeats": 9,
        "min_sample_s": 0.05}
QUICK = {"seed_batch": 1, "seed_repeats": 3, "growth": [64, 256, 1024], "growth_repeats": 3,
         "batches": [1, 8], "model_repeats": 3, "model_budget_s": 10, "calib_images": 16, "hot_repeats": 2,
         "min_sample_s": 0.005}


@click.command("bench", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (progress still goes to stderr).")
@click.option("--quick", is_flag=True, help="Under a minute once the model files are cached (build/bench/): 3 rounds, "
              "growth 64/256/1024 channels, seed tensor 1x32x32x1024, batch 8 for 64; same keys.")
@click.option("--threads", type=click.IntRange(1, 256), default=os.cpu_count() or 1, show_default=True,
              help="The 'all threads' count: the seed and models tables are taken at 1 thread and at this many "
              "(growth and hotspots at 1).")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), help="Write PNG charts into this folder (matplotlib).")
@click.option("--only", "only", type=click.Choice(PARTS), multiple=True,
              help="Run only these parts (repeatable); default: all.")
@click.option("--arm", is_flag=True, help="Also count executed aarch64 instructions (NEON and scalar builds) under "
              "qemu for seed 000's WHT layer and the zoo models, per image (engine/cross.py; key 'arm').")
@click.option("--cpu-time", is_flag=True, help="Time 1-thread tables in the calling thread's CPU time instead of wall "
              "time (steadier on a shared, loaded machine; every peer computes in that thread at 1 thread).")
def bench(as_json: bool, quick: bool, threads: int, plot_dir: str | None, only: tuple[str, ...], arm: bool,
          cpu_time: bool) -> None:
    """Benchmark the engine against PyTorch and ONNX Runtime on this machine.

    \b
    Parts, each figure a median of interleaved rounds in this one process, peers side by side:
      seed      seed 000's 10x32x32x1024 tensor: torch fp32 1x1 conv + ReLU, the paper's
                radix-32 tensordot WHT in torch, our int8 1x1 conv, our wht layer
      growth    wht vs int8 1x1 conv vs torch 1x1 conv, 64..4096 channels, log-log slopes
      models    mbv2 and mbv2-wht: our engine (int8, int8 --reduce-range, mulfree) vs PyTorch eager fp32 vs
                ONNX Runtime fp32 and int8 (U8S8 QDQ per-channel); batch 1 and 64;
                file size and peak RSS (each peer in its own process)
      hotspots  our int8 mbv2 layer by layer (each node timed inside the whole model): which ops dominate
    Needs the optional packages in requirements-bench.txt (onnx, onnxruntime, matplotlib).
    A full run takes several minutes; --quick well under one once build/bench/ holds the
    converted and exported models (the first run makes them).

    \b
    Example:
      python cli.py bench --quick
      python cli.py bench --json --threads 2 --plot bench-plots > bench.json
      python cli.py bench --only seed --only growth
    """
    from .common import BenchError
    try:
        if plot_dir:  # before minutes of measuring: the folder, and matplotlib
            from engine.climain import writable
            writable(plot_dir, folder=True)
            from . import plots
            plots.check()
        result = measure(quick, threads, set(only or PARTS), arm, cpu_time=cpu_time)
        if plot_dir:
            result["plots"] = plots.write(result, plot_dir)
    except BenchError as e:
        raise click.ClickException(str(e)) from None
    except (ValueError, RuntimeError) as e:  # engine ModelError / InputError / BackendError and the like
        raise click.ClickException(f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
    except ImportError as e:
        raise click.ClickException(f"{e}: pip install -r requirements-bench.txt") from None
    if as_json:
        click.echo(json.dumps(result))
    else:
        click.echo(render(result))


def _arm(quiet: bool) -> dict:
    from engine import cross

    from .common import BenchError, progress
    progress("arm: counting aarch64 instructions under qemu (NEON and scalar builds; minutes)", quiet)
    try:
        return cross.count_instructions()
    except cross.CrossError as e:
        raise BenchError(f"--arm: {str(e).splitlines()[0]}") from None


def measure(quick: bool, threads: int, parts: set[str], arm: bool = False, quiet: bool = False,
            cpu_time: bool = False) -> dict:
    """Run the chosen parts; returns the result object that --json prints."""
    from . import common
    from .common import BenchError, machine, progress
    common.CPU_TIME = cpu_time
    cfg = QUICK if quick else FULL
    thread_list = sorted({1, threads})
    t0 = time.time()
    try:
        result = {"machine": machine()}
    except ImportError as e:
        raise BenchError(f"the engine cannot load: {e}") from None
    result["settings"] = {"mode": "quick" if quick else "full", "threads": thread_list, **cfg,
                          "timing": "median over rounds; each round runs every peer of a table once, in rotated "
                                    "order; a sample repeats a call until it lasts min_sample_s; a models table "
                                    "stops after model_budget_s once it has 3 rounds",
                          "clock": "thread CPU time at 1 thread, wall time otherwise" if cpu_time else "wall time"}
    if arm:  # first: fail fast when it is not there
        result["arm"] = _arm(quiet)
    took = result["settings"]["seconds_per_part"] = {}
    for part in PARTS:
        if part not in parts:
            continue
        t1 = time.time()
        if part == "seed":
            from . import seed
            result["seed"] = seed.run(thread_list, cfg["seed_repeats"], cfg["seed_batch"], cfg["min_sample_s"], quiet)
        elif part == "growth":
            from . import growth
            result["growth"] = growth.run(cfg["growth"], cfg["growth_repeats"], 1, cfg["min_sample_s"], quiet)
        elif part == "models":
            from . import models
            result["models"] = models.run(thread_list, cfg["batches"], cfg["model_repeats"], cfg["calib_images"],
                                          cfg["min_sample_s"], quiet=quiet, budget_s=cfg["model_budget_s"])
        else:
            from . import models
            result["hotspots"] = models.hotspots("mbv2", "engine-int8", cfg["hot_repeats"], cfg["calib_images"],
                                                 cfg["min_sample_s"] / 5, quiet=quiet)
        took[part] = round(time.time() - t1, 1)
        progress(f"{part}: {took[part]} s", quiet)
    result["targets"] = targets(result)
    result["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    result["seconds"] = round(time.time() - t0, 1)
    progress(f"done in {result['seconds']} s", quiet)
    return result


def _ms(models: dict, model: str, peer: str, key: str) -> float | None:
    for r in models["rows"]:
        if r["model"] == model and r["peer"] == peer:
            return r["ms"].get(key)
    return None


def targets(result: dict) -> dict:
    """The issue's targets (1 thread), measured in this run; absent parts give no entry."""
    out = {}
    seed1 = next((r for r in result.get("seed", []) if r["threads"] == 1), None)
    if seed1:
        out["wht_vs_torch_conv1x1"] = _target(seed1["speedup_vs_torch_conv1x1"]["wht"], ">=", 50,
                                              "our wht (smooth, the seed's layer) speed-up over torch fp32 1x1 conv, seed tensor")
        out["wht_soft_vs_torch_conv1x1"] = _target(seed1["speedup_vs_torch_conv1x1"]["wht_soft"], ">=", 50,
                                                   "our wht (soft threshold) speed-up over torch fp32 1x1 conv")
    m = result.get("models")
    if m:
        ort = _ms(m, "mbv2", "ort-int8", "b1_t1")
        for peer in ("engine-mulfree", "engine-int8", "engine-int8-rr"):
            ours = _ms(m, "mbv2-wht", peer, "b1_t1")
            if ort and ours:
                out[f"mbv2_wht_{peer[7:].replace('-', '_')}_vs_ort_int8_mbv2"] = _target(
                    ort / ours, ">=", 2, f"speed-up of mbv2-wht on our engine ({peer[7:]}) over ONNX Runtime int8 "
                    "mbv2, batch 1")
        ours = _ms(m, "default.mfe", "engine", "b1_t1")
        if ort and ours:
            out["default_mfe_vs_ort_int8_mbv2"] = _target(ort / ours, ">=", 2, "speed-up of zoo/default.mfe (mbv2-wht) "
                                                          "over ONNX Runtime int8 mbv2, batch 1")
        for peer, what in (("engine-int8", ""), ("engine-int8-rr", " (--reduce-range, like ONNX Runtime's reduce_range)")):
            ours = _ms(m, "mbv2", peer, "b1_t1")
            if ort and ours:
                out[f"{peer[7:].replace('-', '_')}_mbv2_vs_ort_int8_mbv2"] = _target(
                    ours / ort, "<=", 1.2, f"time of our int8 mbv2{what} over ONNX Runtime int8 mbv2, batch 1")
    return out


def _target(value: float, op: str, goal: float, what: str) -> dict:
    met = value >= goal if op == ">=" else value <= goal
    return {"measured": round(value, 2), "target": f"{op} {goal}", "met": bool(met), "what": what}


# ---- text output ----

SEED_ROWS = (("torch_conv1x1", "torch fp32 1x1 conv 1024->1024 + ReLU"),
             ("torch_radix32", "torch fp32 radix-32 tensordot WHT (paper)"),
             ("int8_conv1x1", "our int8 1x1 conv"),
             ("wht", "our wht, smooth threshold (seed's)"),
             ("wht_soft", "our wht, soft threshold"))


def render(r: dict) -> str:
    m, s = r["machine"], r["settings"]
    lines = [f"machine   {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), SIMD {' '.join(m['cpu_simd'])}; "
             f"engine built for {m['engine_isa']}",
             f"versions  Python {m['python']}, numpy {m['numpy']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, "
             f"onnx {m['onnx']}, gcc {m['gcc']}",
             f"load      load average {_la(m['loadavg'])} at start, {_la(m.get('loadavg_end'))} at end "
             f"({m['cores']} cores): other processes share the CPU; peers are interleaved so they share it alike",
             f"run       {s['mode']}: threads {s['threads']}, medians of interleaved rounds, {r['seconds']} s; "
             f"clock: {s.get('clock', 'wall time')}"]
    busy = max((m.get("loadavg") or [0])[0], (m.get("loadavg_end") or [0])[0])
    if busy > m["usable_cores"] - 0.5:
        lines.append(f"warning   the load average ({busy:.1f}) is at or over the {m['usable_cores']} usable cores: every "
                     "figure is slowed, and multi-thread ones mostly measure the scheduler (threads wait at barriers "
                     "for descheduled siblings)")
    if "arm" in r:
        lines += ["", *render_arm(r["arm"])]
    if "seed" in r:
        seed = r["seed"]
        shape = "x".join(map(str, seed[0]["tensor"]))
        lines += ["", f"seed 000's experiment: {shape} tensor, ms (median) and speed-up over torch's 1x1 conv"]
        head = f"{'layer':<44}" + "".join(f"{str(row['threads']) + ' thread(s)':>22}" for row in seed)
        lines.append(head)
        for k, label in SEED_ROWS:
            if k == "int8_conv1x1":
                label += f" (C, {m['engine_isa']})"
            cells = ""
            for row in seed:
                sp = 1.0 if k == "torch_conv1x1" else row["speedup_vs_torch_conv1x1"][k]
                cells += f"{row[k + '_ms']:>12.2f} {sp:>7.2f}x "
            lines.append(f"{label:<44}{cells}")
    if "growth" in r:
        g = r["growth"]
        lines += ["", f"growth: n -> n channels on {g['pixels'][0]}x{g['pixels'][1]} pixels, {g['threads']} thread, ms (median)",
                  f"{'channels':>8} {'our wht':>10} {'int8 1x1':>10} {'torch 1x1':>10} {'torch/wht':>10}"]
        for p in g["points"]:
            lines.append(f"{p['channels']:>8} {p['wht_ms']:>10.3f} {p['int8_conv1x1_ms']:>10.3f} {p['torch_conv1x1_ms']:>10.3f} "
                         f"{p['torch_conv1x1_ms'] / p['wht_ms']:>9.1f}x")
        for key, what in (("slope", "all points"), ("slope_from_256", "n >= 256")):
            sl = g[key]
            lines.append(f"{'slope':>8} {_f(sl['wht']):>10} {_f(sl['int8_conv1x1']):>10} {_f(sl['torch_conv1x1']):>10}   "
                         f"log-log fit, {what}")
        lines.append(f"{'':>8} theory: n log n {g['slope_theory']['n_log_n']}, n^2 2.0")
    if "models" in r:
        md = r["models"]
        cols = [f"b{b}_t{t}" for b in md["batches"] for t in md["threads"]]
        lines += ["", f"full models, input {'x'.join(map(str, md['input']))}; ms per batch (median); "
                      f"peak RSS at batch {md['rss_batch']}, 1 thread, own process"]
        for a, w in md["weights"].items():
            lines.append(f"  weights {a}: {w}")
        lines.append(f"{'model':<12} {'peer':<15} {'file MB':>8} {'RSS MB':>7} {'(+model)':>8}"
                     + "".join(f"{'b%s t%s' % tuple(c[1:].split('_t')):>10}" for c in cols))
        for row in md["rows"]:
            rss = "-" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:.0f}"
            over = "-" if row["rss_over_imports_mb"] is None else f"{row['rss_over_imports_mb']:.0f}"
            lines.append(f"{row['model']:<12} {row['peer']:<15} {row['file_bytes'] / 1e6:>8.2f} {rss:>7} {over:>8}"
                         + "".join(f"{row['ms'][c]:>10.3f}" for c in cols))
        lines += [f"  note: {n}" for n in md.get("notes", [])]
        lines.append("  RSS MB: peak of a process that imports the runtime, loads the model and runs it; (+model): "
                     "over the same process after its imports")
    if "hotspots" in r:
        h = r["hotspots"]
        lines += ["", f"hotspots of our {h['variant']} {h['model']} (batch 1, 1 thread, each node timed inside the whole "
                      f"model): {h['model_ms']:.3f} ms per run, {h['sum_of_nodes_ms']:.3f} ms in its "
                      f"{sum(k['count'] for k in h['by_kind'])} nodes"]
        lines.append(f"  {'op kind':<28} {'layers':>6} {'ms':>9} {'share':>7}")
        for k in h["by_kind"]:
            lines.append(f"  {k['label']:<28} {k['count']:>6} {k['ms']:>9.3f} {100 * k['share']:>6.1f}%")
        lines.append(f"  {'top layers':<28} {'in -> out':>22} {'ms':>9} {'share':>7}")
        for n in h["top"]:
            io = f"{'x'.join(map(str, n['input']))}->{'x'.join(map(str, n['output']))}"
            lines.append(f"  {n['name'][:22]:<22} {n['label'][:20]:<20} {io:>14} {n['ms']:>7.3f} {100 * n['share']:>6.1f}%")
    if r.get("targets"):
        lines += ["", "targets (1 thread, this run)"]
        for t in r["targets"].values():
            lines.append(f"  {'met    ' if t['met'] else 'not met'} {t['measured']:>8.2f}x (target {t['target']}x)  {t['what']}")
    if r.get("plots"):
        lines += ["", "plots     " + ", ".join(r["plots"])]
    return "\n".join(lines)


def render_arm(a: dict) -> list[str]:
    lines = [f"aarch64 executed instructions per pass, qemu -cpu {a.get('qemu_cpu', '?')} (engine/cross.py; "
             f"NEON {a.get('builds', {}).get('neon', '')}, scalar {a.get('builds', {}).get('scalar', '')})",
             f"{'':<30} {'NEON':>14} {'scalar':>14} {'NEON/scalar':>12}"]
    for k, v in a.items():
        if isinstance(v, dict) and isinstance(v.get("neon"), int) and isinstance(v.get("scalar"), int):
            what = f"{k} ({'x'.join(map(str, v['shape']))})" if "shape" in v else f"{k} ({v.get('images', '?')} images)"
            ratio = v.get("neon_over_scalar") or (v["neon"] / v["scalar"] if v["scalar"] else 0)
            lines.append(f"{what:<30} {v['neon']:>14,} {v['scalar']:>14,} {ratio:>12.3f}")
    return lines


def _f(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _la(v) -> str:
    return "?" if not v else " ".join(f"{x:.2f}" for x in v)


def main(argv: list[str] | None = None) -> int:
    """`python -m benchmarks`: the command alone, with the CLI's one-line errors."""
    from engine.climain import standalone
    return standalone(bench, argv, "bench")


if __name__ == "__main__":
    sys.exit(main())
