"""Federated training on scikit-learn's digits: 20 clients, Dirichlet(0.3) label split, 3 seeds.

Parts (``--parts``, default all):
  ab  dense FedAvg vs top-k 1 % / random-k 1 % (error feedback) vs int8: final accuracy, rounds to 95 %, uplink bytes.
      Targets: (a) dense >= 95 % within 30 rounds; (b) top-k 1 % within 1 pp of dense with >= 30x fewer uplink bytes.
  c   record-level DP (full-batch DP-GD in every client, noise calibrated to epsilon <= 8 at delta 1e-5 for the worst
      case of every client in every round; 45 rounds). Target: >= 90 %.
  cl  client-level DP-FedAvg: accuracy against epsilon with the 20 clients, and accuracy at epsilon = 8 for simulated
      populations of N clients (McMahan et al. 2018, section 4: noise calibrated for sampling rate m / N, utility
      measured with the m = 20 real clients per round) against the non-private run with the same m and rounds.
  d   seconds per round with 1 and with 2 Dask worker processes (one thread each) when local training dominates.
      Target: ratio >= 1.6.

    python bench/federated.py [--seeds 3] [--rounds 30] [--parts ab,c,cl,d] [--no-report]
    python bench/federated.py --parts c_holdout   (the tuned (c) configuration on seeds 100.. never used for tuning)

Results of each part are cached in docs/federated/bench_results.json so parts can be run separately; the report
section is rebuilt from every part present. Plots go to docs/federated/*.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path


import numpy as np  # noqa: E402
import torch  # noqa: E402

from forgeflow.tasks.federated.config import Compression, FederatedConfig, Privacy  # noqa: E402
from forgeflow.tasks.federated.data import build_dataset  # noqa: E402
from forgeflow.tasks.federated.plot import accuracy_plot  # noqa: E402
from forgeflow.tasks.federated.runner import run_federated  # noqa: E402

DOCS = Path(__file__).resolve().parent.parent / "docs"
OUT = DOCS / "federated"
CACHE = OUT / "bench_results.json"
MODEL = "forgeflow.tasks.federated.models:digits_cnn_gn"
BASE = FederatedConfig(model=MODEL, clients=20, alpha=0.3, rounds=30, fraction=1.0, local_epochs=2, batch_size=16,
                       lr=0.1)
METHODS = {  # label -> (compression, server learning rate)
    "dense": ("none", 1.0),
    "top-k 1% + EF": ("topk:0.01", 3.0),
    "random-k 1% + EF": ("randk:0.01", 3.0),
    "int8 + EF": ("int8", 1.0),
}


def load_cache() -> dict:
    return json.loads(CACHE.read_text()) if CACHE.exists() else {}


def save_cache(cache: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps(cache, indent=1, sort_keys=True))


def curve(result) -> list[dict]:
    return [{"round": r.round, "accuracy": r.accuracy, "cum_uplink_bytes": r.cum_uplink_bytes,
             "cum_downlink_bytes": r.cum_downlink_bytes, "epsilon": r.epsilon, "seconds": r.seconds}
            for r in result.records]


def run(cfg: FederatedConfig, dataset=None, **kw):
    dataset = dataset or build_dataset(None, cfg.clients, cfg.alpha, cfg.seed, cfg.min_client_samples)
    t = time.perf_counter()
    res = run_federated(cfg, dataset, **kw)
    print(f"  {cfg.compression.label():<11} dp={cfg.privacy.mode:<6} N={cfg.clients:<5} seed={cfg.seed} "
          f"acc={res.final.accuracy:.4f} eps={res.final.epsilon} up={res.final.cum_uplink_bytes:,} "
          f"({time.perf_counter() - t:.0f} s)", flush=True)
    return res


def part_ab(seeds: int, rounds: int) -> dict:
    out = {}
    for label, (comp, slr) in METHODS.items():
        runs = []
        for s in range(seeds):
            cfg = replace(BASE, rounds=rounds, seed=s, compression=Compression.parse(comp), server_lr=slr)
            runs.append(curve(run(cfg)))
        out[label] = {"compression": comp, "server_lr": slr, "runs": runs}
    return out


C_REC = dict(model="forgeflow.tasks.federated.models:digits_linear_ln", batch_size=4096, local_epochs=1, lr=2.0, clip=1.0,
             rounds=45)  # batch >= every client's size: full-batch DP-GD, one noisy step per client per round


def part_c(seeds: int, rounds: int, first_seed: int = 0) -> dict:
    runs = []
    for s in range(first_seed, first_seed + seeds):
        cfg = replace(BASE, rounds=C_REC["rounds"], seed=s, model=C_REC["model"], batch_size=C_REC["batch_size"],
                      local_epochs=C_REC["local_epochs"], lr=C_REC["lr"],
                      privacy=Privacy(mode="record", clip=C_REC["clip"], target_epsilon=8.0, delta=1e-5))
        res = run(cfg)
        runs.append({"noise": res.noise, "curve": curve(res), "assumption": res.privacy_assumption})
    return {"config": {**C_REC, "fraction": BASE.fraction, "server_lr": BASE.server_lr}, "runs": runs}


# Client-level DP-FedAvg. All 20 clients of the benchmark split every round (m = 20); 3 local epochs of SGD
# (batch 16, lr 0.3) on the 650-weight linear model; update clip 0.3; server lr 1. Tuned at epsilon 8 (seed 0 first,
# then 3 seeds for the finalists) over clip {0.1, 0.2, 0.3, 0.5, 1}, server lr {0.5, 1, 2, 3}, local epochs
# {1, 3, 5}, lr {0.1, 0.3}, rounds {10, 20, 30, 45, 60}, sampling rate {0.5, 1}, and the GroupNorm CNN (which loses:
# 6,186 weights take ~3x the noise norm); at 20 clients everything tried ends near 80 %.
CL = dict(model="forgeflow.tasks.federated.models:digits_linear_ln", fraction=1.0, local_epochs=3, batch_size=16, lr=0.3,
          clip=0.3, server_lr=1.0)
CL_EPSILONS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
CL_POPULATIONS = (20, 30, 40, 50, 100, 200, 500, 1000, 10000)
CL_POPULATION_CLIPS = (0.3, 0.5, 1.0)  # a smaller clip suits heavy noise (small N), a larger one light noise


def _cl_config(rounds: int, seed: int) -> FederatedConfig:
    return replace(BASE, rounds=rounds, seed=seed, model=CL["model"], fraction=CL["fraction"],
                   local_epochs=CL["local_epochs"], batch_size=CL["batch_size"], lr=CL["lr"],
                   server_lr=CL["server_lr"])


def population_noise(population: int, per_round: int, rounds: int, epsilon: float = 8.0, delta: float = 1e-5
                     ) -> tuple[float, float]:
    """(z, epsilon) of DP-FedAvg over ``rounds`` rounds with clients Poisson-sampled at q = per_round / population."""
    from forgeflow.tasks.federated.privacy import ClientLevelAccountant, calibrate_noise

    q = min(1.0, per_round / population)
    z = calibrate_noise(lambda z: ClientLevelAccountant(q, z, delta).epsilon(rounds), epsilon, low=0.05)
    return z, ClientLevelAccountant(q, z, delta).epsilon(rounds)


def part_cl(seeds: int, rounds: int) -> dict:
    """Accuracy against epsilon with the 20 real clients, then the population simulation of McMahan et al. (2018,
    section 4): the noise of a population of N clients sampled at q = m / N (m = 20 per round), calibrated to
    epsilon 8 over the rounds, applied to runs over the 20 real clients (all of them each round, denominator m)."""
    m = max(1, round(CL["fraction"] * BASE.clients))
    out: dict = {"config": {**CL, "rounds": rounds, "clients_per_round": m}, "seeds": seeds,
                 "nonprivate20": [], "curve20": [], "population": []}
    for s in range(seeds):
        out["nonprivate20"].append(run(_cl_config(rounds, s)).final.accuracy)
    for eps in CL_EPSILONS:
        accs, noise, eps_got = [], None, None
        for s in range(seeds):
            res = run(replace(_cl_config(rounds, s), privacy=Privacy(mode="client", clip=CL["clip"],
                                                                     target_epsilon=eps)))
            accs.append(res.final.accuracy)
            noise, eps_got = res.noise, res.final.epsilon
        out["curve20"].append({"target_epsilon": eps, "epsilon": eps_got, "noise": noise, "accuracy": accs})
    out["population_clips"] = list(CL_POPULATION_CLIPS)
    for n in CL_POPULATIONS:
        z, eps_n = population_noise(n, m, rounds)
        row = {"population": n, "sample_rate": min(1.0, m / n), "noise": z, "epsilon": eps_n, "by_clip": {}}
        for clip in CL_POPULATION_CLIPS:
            accs = [run(replace(_cl_config(rounds, s), privacy=Privacy(mode="client", clip=clip, noise=z))
                        ).final.accuracy for s in range(seeds)]
            row["by_clip"][str(clip)] = accs
            print(f"  population N={n}: q={min(1.0, m / n):.4f} z={z:.3f} eps={eps_n:.2f} clip={clip} "
                  f"acc={np.mean(accs):.4f} (the eps printed above is the simulation's q = 1, not the population's)",
                  flush=True)
        out["population"].append(row)
    return out


def part_d(rounds: int) -> dict:
    from distributed import Client, LocalCluster

    cfg = replace(BASE, rounds=rounds, local_epochs=64, seed=0)  # local training must dominate the round
    data = build_dataset(None, cfg.clients, cfg.alpha, cfg.seed)
    out = {"local_epochs": cfg.local_epochs, "load_before": os.getloadavg(), "order": [1, 2, 2, 1]}
    per: dict[int, list[float]] = {1: [], 2: []}
    for workers in out["order"]:  # both orders, so a load change during the run does not favour one side
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as lc, \
                Client(lc) as client:
            client.run(lambda: torch.set_num_threads(1))
            res = run(cfg, data, executor=client)
        per[workers] += [r.seconds for r in res.records][1:]  # round 1 includes worker warm-up
    for workers, secs in per.items():
        out[f"workers_{workers}"] = {"seconds_per_round": float(np.mean(secs)), "rounds": secs}
    out["load_after"] = os.getloadavg()
    out["ratio"] = out["workers_1"]["seconds_per_round"] / out["workers_2"]["seconds_per_round"]
    return out


def _weights(spec: str) -> int:
    from forgeflow.tasks.federated.model_state import build_model

    return sum(p.numel() for p in build_model(spec).parameters())


def mean_std(xs) -> str:
    xs = np.asarray(xs, dtype=float)
    return f"{100 * xs.mean():.2f} ± {100 * xs.std():.2f}"


def rounds_to(curve_: list[dict], target: float) -> int | None:
    return next((c["round"] for c in curve_ if c["accuracy"] >= target), None)


def render(cache: dict) -> str:
    md = ["Digits (scikit-learn, 1,347 train / 450 test), 20 clients, Dirichlet(0.3) label split, model "
          f"`{MODEL}` (GroupNorm CNN, 6,186 weights), SGD batch 16. Mean ± std over seeds. The machine (2 cores) "
          "was shared with other engineers' jobs while these ran (load average ~10), so seconds are inflated."]
    if "ab" in cache:
        ab = cache["ab"]
        dense = ab["dense"]["runs"]
        dense_acc = np.mean([r[-1]["accuracy"] for r in dense])
        dense_up = np.mean([r[-1]["cum_uplink_bytes"] for r in dense])
        md += ["", "### (a, b) FedAvg and compressed updates",
               f"All 20 clients per round, 2 local epochs, client lr 0.1; {len(dense)} seeds.", "",
               "| method | server lr | final acc. (%) | rounds to 95 % (per seed) | uplink bytes | fewer bytes | "
               "gap to dense (pp) |", "|---|---|---|---|---|---|---|"]
        for label, v in ab.items():
            accs = [r[-1]["accuracy"] for r in v["runs"]]
            up = np.mean([r[-1]["cum_uplink_bytes"] for r in v["runs"]])
            r95 = [rounds_to(r, 0.95) for r in v["runs"]]
            md.append(f"| {label} | {v['server_lr']} | {mean_std(accs)} | {r95} | {up:,.0f} | {dense_up / up:.1f}x | "
                      f"{100 * (np.mean(accs) - dense_acc):+.2f} |")
        topk = ab["top-k 1% + EF"]["runs"]
        gap = 100 * (dense_acc - np.mean([r[-1]["accuracy"] for r in topk]))
        ratio = dense_up / np.mean([r[-1]["cum_uplink_bytes"] for r in topk])
        a_ok = all(rounds_to(r, 0.95) is not None for r in dense)
        md += ["", f"- (a) dense FedAvg reaches 95 % within 30 rounds on every seed: **{'met' if a_ok else 'missed'}** "
               f"(rounds {[rounds_to(r, 0.95) for r in dense]}).",
               f"- (b) top-k 1 % + error feedback ends {-gap:+.2f} pp from dense with {ratio:.1f}x fewer uplink bytes: "
               f"**{'met' if gap <= 1.0 and ratio >= 30 else 'missed'}** (target <= 1 pp, >= 30x).",
               "- Downlink is the dense model to every sampled client (4 B x 6,186 x 20 per round) in every row.",
               "", "![accuracy vs rounds and uplink bytes](federated/compression.png)"]
    if "c" in cache:
        c = cache["c"]
        cc = c["config"]
        accs = [r["curve"][-1]["accuracy"] for r in c["runs"]]
        eps = [r["curve"][-1]["epsilon"] for r in c["runs"]]
        n_rounds = len(c["runs"][0]["curve"])
        md += ["", "### (c) Record-level DP (DP-SGD inside every client)",
               f"Model `{cc['model']}` ({_weights(cc['model']):,} weights: softmax regression on each example's pixels "
               f"standardised on their own, no batch norm), per-example clip {cc['clip']}, batch size "
               f"{cc['batch_size']} >= every client's data, so each client runs full-batch DP-GD (sampling rate 1, one "
               f"noisy step per local epoch, no amplification credited), client lr {cc['lr']}, "
               f"{cc['local_epochs']} local epoch, server lr {cc.get('server_lr', 1.0)}, all 20 clients every round, "
               f"{n_rounds} rounds. The noise multiplier is calibrated so that the worst client's epsilon, if it took "
               f"part in all {n_rounds} rounds, is <= 8 at delta 1e-5 (RDP accountant, dp-accounting): z = "
               + ", ".join(f"{r['noise']:.3f}" for r in c["runs"]) + ". The server's weighted mean of the 20 "
               "clients' noisy updates has sqrt(20) times less noise than one client's (independent noise, same "
               "weights), which is what lets full-batch steps work with ~67 records per client.", "",
               "| seed | final acc. (%) | epsilon | z |", "|---|---|---|---|"]
        md += [f"| {i} | {100 * a:.2f} | {e:.3f} | {r['noise']:.3f} |" for i, (a, e, r) in
               enumerate(zip(accs, eps, c["runs"]))]
        md += ["", f"- final accuracy {mean_std(accs)} %, epsilon <= {max(eps):.3f}: "
               f"**{'met' if min(accs) >= 0.90 and max(eps) <= 8 else 'missed'}** (target >= 90 % at epsilon <= 8, "
               "delta 1e-5).",
               "- Previous configuration (64-hidden MLP, Poisson batches of 32, lr 1.0, 30 rounds): 73.5 ± 4.8 %. "
               "What moved it: full-batch steps (fewer, larger noisy steps; every client's epsilon is the same), the "
               "650-weight per-example-standardised linear model (better conditioned, less noise norm) and 45 rounds. "
               "These were chosen by a grid on the same 3 seeds' test accuracy (model: linear / standardised linear "
               "/ 16-hidden tanh MLP; lr 1-30; clip 0.3-3; rounds 10-100; local epochs 1-3; server momentum 0.5-0.9 "
               "and lr decay, which did not help and are not in the product): tuned figures, not a held-out estimate.",
               "- Assumption recorded with the run: " + c["runs"][0].get("assumption", "") + ".",
               *([] if "c_holdout" not in cache else [
                   "- Held out: the same configuration on seeds " + ", ".join(
                       str(100 + i) for i in range(len(cache["c_holdout"]["runs"])))
                   + " (other train/test splits, client splits and noise; never used for tuning): "
                   + ", ".join(f"{100 * r['curve'][-1]['accuracy']:.2f} %" for r in cache["c_holdout"]["runs"])
                   + f" at epsilon <= {max(r['curve'][-1]['epsilon'] for r in cache['c_holdout']['runs']):.3f} "
                   f"(`{cache['commands'].get('c_holdout', '')}`)."]),
               "", "![record-level DP](federated/record_dp.png)"]
    if "cl" in cache and "population" in cache["cl"]:
        cl = cache["cl"]
        k = cl["config"]
        base = np.asarray(cl["nonprivate20"])
        md += ["", "### Client-level DP-FedAvg",
               f"Model `{k['model']}`; each client's update (3 local epochs of SGD, batch {k['batch_size']}, lr "
               f"{k['lr']}) clipped to L2 {k['clip']}; Gaussian noise z x {k['clip']} on the sum, divided by the "
               f"expected number of clients per round m = {k['clients_per_round']}; server lr {k['server_lr']}; "
               f"{k['rounds']} rounds; {cl['seeds']} seeds (mean ± std). Clip, server lr, local epochs and the model "
               "were tuned at epsilon 8 with the 20 clients (seed 0 first, then 3 seeds for the finalists; see CL in "
               "bench/federated.py), i.e. on the test split: treat the figures as tuned, not as a held-out estimate.", "",
               f"**The 20 real clients** (Dirichlet 0.3, all sampled every round, q = 1), non-private "
               f"{mean_std(base)} %:", "",
               "| target epsilon | epsilon | noise z | accuracy (%) | gap to non-private (pp) |", "|---|---|---|---|---|"]
        for p in cl["curve20"]:
            md.append(f"| {p['target_epsilon']:g} | {p['epsilon']:.2f} | {p['noise']:.3f} | {mean_std(p['accuracy'])} "
                      f"| {100 * (base.mean() - np.mean(p['accuracy'])):.2f} |")
        md += ["", "**How many clients it takes** (the method of McMahan et al. 2018, \"Learning Differentially "
               "Private Recurrent Language Models\", section 4). Utility depends on the expected number of clients per "
               "round m = qN and on the noise std z C / m on the averaged update; privacy depends on (q = m / N, z, "
               f"rounds). So for a population of N clients sampled at q = {k['clients_per_round']} / N, z is calibrated "
               f"for epsilon = 8, delta = 1e-5 over {k['rounds']} rounds, and the accuracy is that of the run over the "
               f"20 real clients (m = {k['clients_per_round']}, every one each round) with that noise. The populations "
               "are simulated (no such data set of N digit-writing clients exists here); the sampling of m out of N is "
               "replaced by the 20 real clients each round, as in the paper. Non-private with the same m and rounds: "
               f"{mean_std(base)} %.", "",
               "| population N | sampling rate q | noise z | epsilon | "
               + " | ".join(f"acc. clip {c} (%)" for c in cl["population_clips"]) + " | smallest gap (pp) |",
               "|---|---|---|---|" + "---|" * len(cl["population_clips"]) + "---|"]
        for p in cl["population"]:
            gaps = {c: 100 * (base.mean() - np.mean(a)) for c, a in p["by_clip"].items()}
            md.append(f"| {p['population']:,} | {p['sample_rate']:.4f} | {p['noise']:.3f} | {p['epsilon']:.2f} | "
                      + " | ".join(mean_std(a) for a in p["by_clip"].values())
                      + f" | {min(gaps.values()):.2f} (clip {min(gaps, key=gaps.get)}) |")

        def threshold(gap_of):  # smallest measured N from which every larger measured N is within 5 pp
            ok = [gap_of(p) <= 5.0 for p in cl["population"]]
            idx = next((i for i in range(len(ok)) if all(ok[i:])), None)
            return None if idx is None else cl["population"][idx]

        def gap_best(p):
            return min(100 * (base.mean() - np.mean(a)) for a in p["by_clip"].values())

        best = threshold(gap_best)
        per_clip = {c: threshold(lambda p, c=c: 100 * (base.mean() - np.mean(p["by_clip"][c])))
                    for c in map(str, cl["population_clips"])}
        n20 = cl["population"][0]
        md += ["", f"- With the 20 real clients (N = 20, q = 1) at epsilon 8 the smallest gap is {gap_best(n20):.2f} pp "
               "(above): 20 clients cannot stay within 5 pp."]
        if best:
            md.append(f"- Within 5 pp of non-private at epsilon 8 (mean over seeds, best clip of those measured): from "
                      f"**N = {best['population']:,} clients** on ({gap_best(best):.2f} pp there; q = "
                      f"{best['sample_rate']:.3f}, z = {best['noise']:.3f}), with m = {k['clients_per_round']} "
                      "clients per round. Per clip: " + ", ".join(
                          f"clip {c}: " + (f"N = {v['population']:,}" if v else "not reached") for c, v in
                          per_clip.items()) + ". Clips and populations are a grid: the true threshold lies between "
                      "the measured N below it and this one.")
        else:
            md.append("- Within 5 pp of non-private at epsilon 8: **not reached** at any population measured.")
        md += ["", "![client-level DP](federated/client_dp.png)"]
    if "d" in cache:
        d = cache["d"]
        rounds_d = 1 + len(d["workers_1"]["rounds"]) // max(1, d.get("order", [1, 2]).count(1))
        md += ["", "### (d) Seconds per round on Dask",
               f"20 clients, {d['local_epochs']} local epochs (local training dominates), LocalCluster with 1 or 2 worker "
               f"processes x 1 thread, torch 1 thread; two runs per worker count in the order {d.get('order', [1, 2])}, "
               f"mean over rounds 2-{rounds_d} of each.", "",
               f"| workers | s / round |", "|---|---|",
               f"| 1 | {d['workers_1']['seconds_per_round']:.2f} |", f"| 2 | {d['workers_2']['seconds_per_round']:.2f} |",
               "", f"- ratio {d['ratio']:.2f}: **{'met' if d['ratio'] >= 1.6 else 'missed'}** (target >= 1.6). Load "
               f"average before / after: {d['load_before'][0]:.1f} / {d['load_after'][0]:.1f} on 2 cores.",
               "- With 8 local epochs per client (an earlier run) a round took about 1.1 s and two workers were slower "
               "than one (ratio 0.75): the per-future overhead of the round loop then outweighs the training. The "
               "target is about rounds where local training dominates, hence 64 local epochs here."]
    return "\n".join(md)


def plots(cache: dict) -> None:
    from forgeflow.tasks.federated.state import RoundRecord

    def recs(c):
        return [RoundRecord(x["round"], "ok", x["accuracy"], 0.0, (), (), (), 0, 0, x["cum_uplink_bytes"],
                            x["cum_downlink_bytes"], x["epsilon"], 0.0, x["seconds"]) for x in c]
    if "ab" in cache:
        png = accuracy_plot({k: recs(v["runs"][0]) for k, v in cache["ab"].items()},
                            title="digits, 20 clients, Dirichlet(0.3), seed 0")
        (OUT / "compression.png").write_bytes(png)
    if "c" in cache:
        series = {f"record-level DP, seed {i}": recs(r["curve"]) for i, r in enumerate(cache["c"]["runs"])}
        if "ab" in cache:
            series["no DP (GroupNorm CNN, dense, 2 local epochs)"] = recs(cache["ab"]["dense"]["runs"][0])
        (OUT / "record_dp.png").write_bytes(accuracy_plot(series, title="record-level DP, epsilon <= 8"))
    if "cl" in cache and "population" in cache["cl"]:
        (OUT / "client_dp.png").write_bytes(client_dp_plot(cache["cl"]))


def client_dp_plot(cl: dict) -> bytes:
    from forgeflow.tasks.federated.plot import _png, _pyplot

    plt = _pyplot()
    base = 100 * np.mean(cl["nonprivate20"])
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    pts = cl["curve20"]
    a.errorbar([p["epsilon"] for p in pts], [100 * np.mean(p["accuracy"]) for p in pts],
               yerr=[100 * np.std(p["accuracy"]) for p in pts], marker="o", capsize=3,
               label=f"20 clients, DP, clip {cl['config']['clip']}")
    a.set_xscale("log")
    a.set_xlabel("epsilon (delta = 1e-5)")
    a.set_title("20 real clients (q = 1): accuracy vs epsilon")
    pop = cl["population"]
    for c in map(str, cl["population_clips"]):
        b.errorbar([p["population"] for p in pop], [100 * np.mean(p["by_clip"][c]) for p in pop],
                   yerr=[100 * np.std(p["by_clip"][c]) for p in pop], marker="o", capsize=3,
                   label=f"DP, epsilon = 8, clip {c}")
    b.set_xscale("log")
    b.set_xlabel(f"population N (m = {cl['config']['clients_per_round']} clients per round, q = m / N)")
    b.set_title("epsilon = 8 as the population grows (simulated)")
    for ax in (a, b):
        ax.axhline(base, color="k", linestyle=":", linewidth=1, label="non-private")
        ax.axhline(base - 5, color="r", linestyle="--", linewidth=1, label="non-private - 5 pp")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig, plt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--parts", default="ab,c,cl,d")
    ap.add_argument("--no-report", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cache = load_cache()
    for part in [p.strip() for p in args.parts.split(",") if p.strip()]:
        print(f"part {part}", flush=True)
        t = time.perf_counter()
        if part == "ab":
            cache["ab"] = part_ab(args.seeds, args.rounds)
        elif part == "c":
            cache["c"] = part_c(args.seeds, args.rounds)
        elif part == "c_holdout":  # the tuned (c) configuration on seeds never used for tuning (new splits)
            cache["c_holdout"] = part_c(args.seeds, args.rounds, first_seed=100)
        elif part == "cl":
            cache["cl"] = part_cl(args.seeds, args.rounds)
        elif part == "d":
            cache["d"] = part_d(min(args.rounds, 6))
        else:
            raise SystemExit(f"unknown part {part!r}")
        cache.setdefault("commands", {})[part] = "python " + " ".join(sys.argv)
        import logging

        logging.getLogger("distributed").setLevel(logging.WARNING)
        save_cache(cache)
        print(f"part {part} done in {time.perf_counter() - t:.0f} s", flush=True)
    plots(cache)
    md = render(cache)
    print(md)
    if not args.no_report:
        from _report import write_section

        cmds = "; ".join(f"`{c}` ({p})" for p, c in sorted(cache.get("commands", {}).items()))
        write_section("federated", md + f"\n\nParts were produced by: {cmds}.")


if __name__ == "__main__":
    main()
