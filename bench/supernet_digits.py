"""Elastic supernet on scikit-learn digits: train once by progressive shrinking with distillation from the largest
subnet (tasks/supernet/progressive.py), predictor quality on held-out subnets, a latency-limited search, and extracted
subnets vs the same architectures trained from scratch with the same budget (the schedule's total epochs).

python bench/supernet_digits.py [--scale 1.0] [--seed 0] [--save tasks/supernet/pretrained/digits.safetensors] [--no-write]

``--save`` writes the trained supernet's weights: the file shipped as the built-in digits family's checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]

from forgeflow.tasks.supernet.objectives import CountedEvaluator  # noqa: E402
from forgeflow.tasks.supernet.predictors import SupernetObjective, fit_predictors  # noqa: E402
from forgeflow.tasks.supernet.search import run_search  # noqa: E402
from forgeflow.tasks.supernet.supernet import ElasticSupernet  # noqa: E402
from forgeflow.tasks.supernet.progressive import ShrinkSchedule, train_progressive  # noqa: E402
from forgeflow.tasks.supernet.train import (TrainConfig, load_dataset, load_state_arrays, state_arrays,  # noqa: E402
                                  subnet_accuracy, supernet_config_for, train_from_scratch)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every phase's epochs")
    p.add_argument("--save", default=None, help="write the trained weights (safetensors) here")
    p.add_argument("--load", default=None, help="skip training: load these weights")
    p.add_argument("--n-accuracy", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=int, default=60)
    p.add_argument("--compare", type=int, default=3, help="architectures also trained from scratch")
    p.add_argument("--no-write", action="store_true")
    p.add_argument("--final-epochs", type=int, default=0,
                   help="after progressive shrinking (or on --load), a longer final all-elastic phase of this many "
                        "epochs (4 subnets per step, KD from the frozen largest), resumable through --final-state")
    p.add_argument("--final-state", default=None, help="resume file of the final phase (torch)")
    p.add_argument("--piece", type=int, default=None, help="at most this many final-phase epochs in this call")
    p.add_argument("--train-only", action="store_true", help="stop after training (and --save)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    data = load_dataset(None, seed=args.seed)
    cfg = supernet_config_for(data)
    net = ElasticSupernet(cfg)
    schedule = ShrinkSchedule.default_for(cfg.space, scale=args.scale, seed=args.seed)
    train = TrainConfig(epochs=schedule.epochs, seed=args.seed)  # the from-scratch budget: the same total epochs
    trained_desc = None
    if args.load:
        from safetensors.numpy import load_file

        load_state_arrays(net, load_file(args.load))
        seconds = float("nan")
        from safetensors import safe_open

        with safe_open(args.load, "np") as fh:  # the checkpoint's own schedule: the from-scratch budget
            meta = fh.metadata() or {}
        if "schedule" in meta:
            trained = [tuple(p) for p in json.loads(meta["schedule"])]
            train = TrainConfig(epochs=sum(int(e) for _, e in trained), seed=args.seed)
            trained_desc = ", ".join(f"{n} {e}" for n, e in trained)
            print(f"loaded checkpoint trained {trained} ({train.epochs} epochs)", flush=True)
    else:
        rep = train_progressive(net, data, schedule, log=lambda m: print(m, flush=True))
        seconds = rep.seconds
        if args.save:
            from safetensors.numpy import save_file

            Path(args.save).parent.mkdir(parents=True, exist_ok=True)
            save_file(state_arrays(net), args.save, metadata={"schedule": json.dumps(
                [(p.name, p.epochs) for p in schedule.phases]), "seed": str(args.seed)})
    final = None
    if args.final_epochs:
        from forgeflow.tasks.supernet.progressive import FinalPhase, train_final_phase

        phase = FinalPhase(epochs=args.final_epochs, seed=args.seed)
        t0 = time.perf_counter()
        final = train_final_phase(net, data, phase, args.final_state or "/tmp/supernet_final_state.pt",
                                  max_epochs=args.piece, log=lambda m: print(m, flush=True))
        print(f"final phase: {final['done']}/{final['epochs']} epochs ({time.perf_counter() - t0:.0f} s this call)",
              flush=True)
        train = TrainConfig(epochs=schedule.epochs + args.final_epochs, seed=args.seed)
        trained_desc = ", ".join(f"{p.name} {p.epochs}" for p in schedule.phases) + f", final {args.final_epochs}"
        if not final["finished"]:
            return 0
        if args.save:
            from safetensors.numpy import save_file

            save_file(state_arrays(net), args.save, metadata={"schedule": json.dumps(
                [(p.name, p.epochs) for p in schedule.phases] + [("final", args.final_epochs)]),
                "seed": str(args.seed)})
    if args.train_only:
        return 0
    sp = cfg.space
    big, small = subnet_accuracy(net, sp.largest(), data), subnet_accuracy(net, sp.smallest(), data)
    print(f"trained {schedule.epochs} epochs in {seconds:.0f} s: largest {big:.2f} %, smallest {small:.2f} %", flush=True)
    t0 = time.perf_counter()
    acc_pred, lat_pred, reports, samples = fit_predictors(net, data, n_accuracy=args.n_accuracy, n_latency=50,
                                                          seed=args.seed)
    fit_s = time.perf_counter() - t0
    for r in reports:
        print(f"{r.name} predictor: Spearman {r.spearman:.3f}, RMSE {r.rmse:.3f} {r.unit} "
              f"({r.n_train} fitted, {r.n_test} held out) {r.detail}", flush=True)
    lat_all = samples["latency"][1]
    limit = float(np.quantile(lat_all, 0.5))
    source = SupernetObjective(net, data, lat_pred)
    ev = CountedEvaluator(source, args.budget)
    res = run_search(sp, ev.evaluate, args.budget, seed=args.seed, latency_limit_ms=limit)
    best = res.best_under(limit)
    print(f"search: {res.evaluations} subnets in {res.seconds:.1f} s, front {len(res.front_index)}, best under "
          f"{limit:.3f} ms: {sp.to_string(res.genes[best])} {res.accuracy[best]:.2f} % ({res.latency_ms[best]:.3f} ms)",
          flush=True)
    # extracted vs from scratch: smallest, largest and front members spread along latency
    front = [sp.decode(res.genes[i]) for i in res.front_index]
    pick = [sp.smallest(), sp.largest()] + [front[i] for i in np.linspace(0, len(front) - 1, max(args.compare - 2, 0) + 2,
                                                                          dtype=int)[1:-1]]
    rows = []
    for arch in pick[: max(args.compare, 2)]:
        ext = subnet_accuracy(net, arch, data)
        scratch = train_from_scratch(cfg, arch, data, train)
        rows.append((arch.to_string(), ext, scratch))
        print(f"  {arch.to_string()}: extracted {ext:.2f} %, from scratch {scratch:.2f} % (gap {scratch - ext:+.2f} pp)",
              flush=True)
    md = [
        f"Supernet: stages {cfg.stage_channels} channels, space {sp.size:,} subnets (resolutions {sp.resolutions}, "
        f"depths {sp.depths}, expand {sp.expand_ratios}, kernels {sp.kernel_sizes}); digits ({len(data.x_train)} "
        f"train / {len(data.x_test)} test); progressive shrinking {[(p.name, p.epochs) for p in schedule.phases]} "
        f"({schedule.epochs} epochs; after `full`, the largest + smallest + {schedule.subnets_per_step - 2} random subnet(s) per "
        f"step on CE + KD from the frozen largest network), {seconds:.0f} s on 1 thread with other jobs running on "
        f"the 2 shared cores.",
        "",
        f"- checkpoint {'`' + args.load + '`' if args.load else 'trained here'}: {train.epochs} epochs in all"
        + (f" ({trained_desc})" if trained_desc else "") + "; each from-scratch baseline below gets the same epochs",
        f"- largest subnet {big:.2f} %, smallest {small:.2f} % (held-out, after BN recalibration)",
    ]
    for r in reports:
        md.append(f"- {r.name} predictor on {r.n_test} held-out subnets ({r.n_train} fitted): Spearman "
                  f"**{r.spearman:.3f}**, RMSE {r.rmse:.3f} {r.unit}" +
                  (f" (lookup table alone: Spearman {r.detail['lookup_only_spearman']:.3f}; CPU thread time, batch "
                   f"{r.detail['batch_size']})" if r.name == "latency" else ""))
    md.append(f"- predictors fitted in {fit_s:.0f} s; search under {limit:.3f} ms (median sampled latency): "
              f"{res.evaluations} subnets evaluated (measured accuracy), {res.seconds:.1f} s; best "
              f"`{sp.to_string(res.genes[best])}` {res.accuracy[best]:.2f} % at {res.latency_ms[best]:.3f} ms")
    md += ["", "| subnet | extracted (%) | from scratch, same epochs (%) | gap (pp) |", "|---|---|---|---|"]
    md += [f"| `{a}` | {e:.2f} | {s:.2f} | {s - e:+.2f} |" for a, e, s in rows]
    text = "\n".join(md)
    print(text)
    if not args.no_write:
        from _report import write_section

        write_section("supernet_digits", text)
    print(json.dumps({"largest": big, "smallest": small, "spearman": {r.name: r.spearman for r in reports},
                      "gaps_pp": [s - e for _, e, s in rows]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
