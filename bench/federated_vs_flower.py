"""forgeflow against Flower (flwr) on the same federated workload, on this machine, in one run.

Workload (identical on both sides): digits (scikit-learn, 1,347 train / 450 test), Dirichlet(0.3) label split over N
clients, 10 clients sampled per round, FedAvg weighted by client size, model ``digits_cnn_gn`` (6,186 weights),
client optimiser plain SGD lr 0.1, batch 16, 2 local epochs, the same seeds. Each Flower client runs forgeflow's own
``train_client`` (no compression, no DP), so the local computation is the same function on both sides; only the
orchestration differs. Flower's strategy is FedAvg with one change: each round it trains the shards forgeflow's
sampler draws for that round (Flower picks the Ray nodes that run them), so both sides train the same clients with
the same seeds and their accuracies are comparable round by round. Server-side evaluation on the 450 held-out digits after every round on both sides.

- forgeflow: ``run_federated`` with a Dask LocalCluster of 2 worker processes x 1 thread (the cluster is started
  before the clock starts, as Flower's Ray backend is).
- Flower 1.42 simulation (``flwr.simulation.run_simulation``, Ray backend, the only simulation backend), 1 CPU per
  virtual client (``client_resources = {"num_cpus": 1}``, so 2 run at once on the 2 cores) instead of its default 2.

Reported: seconds per round (rounds 2.., measured the same way on both sides: the time between the ends of
consecutive rounds' server evaluations), final accuracy, bytes moved (uplink and downlink payload bytes of the
weights, 4 B x 6,186 per message on both sides), and Flower's first round and total wall time (Ray start-up).

Ray's start-up is heavy, so the run can be made in pieces: ``--sides`` and ``--clients`` pick the piece, each
piece's rows are kept in ``--results`` (a JSON file), and the report is rendered from every row kept there.

Flower is a bench-only dependency. It runs in its own interpreter (``--flower-python``, default: this one when it
can import flwr), e.g. a venv made with
``python -m venv --system-site-packages /tmp/flwr-venv && /tmp/flwr-venv/bin/pip install 'flwr[simulation]==1.42.0'``.

    python bench/federated_vs_flower.py [--clients 20,100] [--rounds 10] [--sides flower,forgeflow]
        [--flower-python /tmp/flwr-venv/bin/python] [--results /tmp/ff_vs_flower.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = "forgeflow.tasks.federated.models:digits_cnn_gn"
PER_ROUND = 10


def fed_config(clients: int, rounds: int, seed: int):
    from forgeflow.tasks.federated.config import FederatedConfig

    return FederatedConfig(model=MODEL, clients=clients, alpha=0.3, rounds=rounds, fraction=PER_ROUND / clients,
                           local_epochs=2, batch_size=16, lr=0.1, seed=seed)


# ---- forgeflow side ------------------------------------------------------------------------------------------------

def run_forgeflow(clients: int, rounds: int, seed: int) -> dict:
    import torch
    from distributed import Client, LocalCluster

    from forgeflow.tasks.federated.data import build_dataset
    from forgeflow.tasks.federated.runner import run_federated

    torch.set_num_threads(1)
    cfg = fed_config(clients, rounds, seed)
    dataset = build_dataset(None, cfg.clients, cfg.alpha, cfg.seed)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(torch.set_num_threads, 1)
        stamps = [time.perf_counter()]
        res = run_federated(cfg, dataset, executor=client, on_round=lambda _r: stamps.append(time.perf_counter()))
        wall = time.perf_counter() - stamps[0]
    per_round = np.diff(stamps)  # end of one round's evaluation to the end of the next's, as on the Flower side
    return {"side": "forgeflow", "clients": clients, "rounds": rounds, "accuracy": res.final.accuracy,
            "s_per_round": float(np.mean(per_round[1:])), "first_round_s": float(per_round[0]), "wall_s": wall,
            "uplink_bytes": res.final.cum_uplink_bytes,
            "downlink_bytes": res.final.cum_downlink_bytes, "curve": [r.accuracy for r in res.records]}


# ---- Flower side (runs in the interpreter that has flwr) -------------------------------------------------------------

def run_flower(clients: int, rounds: int, seed: int) -> dict:
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from forgeflow.tasks.federated.client import LocalTraining
    from forgeflow.tasks.federated.model_state import evaluate, initial_weights

    cfg = fed_config(clients, rounds, seed)
    training = LocalTraining.from_config(cfg, None)
    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        import forgeflow.tasks.federated.data as data_mod
        from forgeflow.tasks.federated.client import train_client
        from forgeflow.tasks.federated.server import client_seed

        cache = data_mod.__dict__.setdefault("_bench_split_cache", {})  # one split per Ray actor process
        key = (cfg.clients, cfg.alpha, cfg.seed)
        if key not in cache:
            cache[key] = data_mod.build_dataset(None, cfg.clients, cfg.alpha, cfg.seed)
        torch.set_num_threads(1)
        cid = int(msg.content["config"]["cid"])  # the shard forgeflow's sampler picked for this slot (see below)
        rnd = int(msg.content["config"]["server-round"])
        w = msg.content["arrays"].to_numpy_ndarrays()[0]
        x, y = cache[key].client_arrays(cid)
        res = train_client(rnd, cid, client_seed(cfg.seed, rnd, cid), w, None, x, y, training)
        new_w = (w + res.message.values).astype(np.float32)
        return Message(content=RecordDict({"arrays": ArrayRecord([new_w]),
                                           "metrics": MetricRecord({"num-examples": int(len(y))})}), reply_to=msg)

    class SameClientsFedAvg(FedAvg):
        """Flower's FedAvg, but round r trains the very shards forgeflow's sampler draws for round r (its
        ``sample_clients``), so both sides see the same clients, seeds and data and reach the same accuracy. Flower
        still picks which virtual nodes (Ray actors) run them; a node trains the shard named in its message."""

        def configure_train(self, server_round, arrays, config, grid):
            from flwr.app import MessageType
            from flwr.serverapp.strategy.strategy_utils import sample_nodes

            from forgeflow.tasks.federated.server import sample_clients

            shards = sample_clients(cfg, cfg.clients, server_round)
            nodes, _ = sample_nodes(grid, self.min_available_nodes, len(shards))
            return [Message(content=RecordDict({"arrays": arrays, "config": ConfigRecord(
                {**dict(config), "server-round": server_round, "cid": int(cid)})}),
                message_type=MessageType.TRAIN, dst_node_id=node) for node, cid in zip(nodes, shards)]

    server_app = ServerApp()
    out: dict = {}

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        from forgeflow.tasks.federated.data import build_dataset

        ds = build_dataset(None, cfg.clients, cfg.alpha, cfg.seed)
        stamps, accs = [], []

        def central(rnd: int, arrays: ArrayRecord):
            acc, loss = evaluate(MODEL, arrays.to_numpy_ndarrays()[0], ds.x_test, ds.y_test)
            stamps.append(time.perf_counter())
            accs.append(acc)
            return MetricRecord({"accuracy": acc, "loss": loss})

        strategy = SameClientsFedAvg(fraction_train=PER_ROUND / clients, fraction_evaluate=0.0, min_train_nodes=PER_ROUND,
                          min_evaluate_nodes=0, min_available_nodes=clients)
        strategy.start(grid=grid, initial_arrays=ArrayRecord([initial_weights(MODEL, cfg.seed)]), num_rounds=rounds,
                       evaluate_fn=central, train_config=ConfigRecord({}))
        out.update(stamps=stamps, accs=accs)

    t0 = time.perf_counter()
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=clients,
                   backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                                   "init_args": {"num_cpus": 2, "include_dashboard": False}})
    wall = time.perf_counter() - t0
    per_round = np.diff(out["stamps"])  # stamp 0 is the initial evaluation
    d = 6186
    return {"side": "flower", "clients": clients, "rounds": rounds, "accuracy": out["accs"][-1],
            "s_per_round": float(np.mean(per_round[1:])), "first_round_s": float(per_round[0]), "wall_s": wall,
            "uplink_bytes": 4 * d * PER_ROUND * rounds, "downlink_bytes": 4 * d * PER_ROUND * rounds,
            "curve": out["accs"][1:]}


def spawn_flower(python: str, clients: int, rounds: int, seed: int, timeout_s: float) -> dict:
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}  # the caller's PYTHONPATH (forgeflow's namespace) reaches Ray workers
    try:
        proc = subprocess.run([python, __file__, "--flower-child", "--clients", str(clients), "--rounds",
                               str(rounds), "--seed", str(seed)], capture_output=True, text=True, cwd=ROOT, env=env,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"Flower run (N={clients}) did not finish within {timeout_s:.0f} s") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"Flower run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def render(rows: list[dict], rounds: int) -> str:
    md = [f"Same workload on both sides: digits, Dirichlet(0.3), {PER_ROUND} clients per round, FedAvg, digits_cnn_gn, "
          f"SGD lr 0.1, batch 16, 2 local epochs, {rounds} rounds, forgeflow's `train_client` as the client body on "
          "both sides, and the same clients trained each round on both sides. forgeflow: Dask LocalCluster 2 processes x 1 thread. Flower 1.42.0 simulation on Ray, 1 CPU per "
          "virtual client (2 at once on the 2 cores). Seconds per round: end of one round's server evaluation to the "
          "end of the next's, rounds 2.. on both sides; round 1 (Ray actors and Dask workers warming up) is shown apart, "
          "as is the whole wall time including Flower's Ray start-up (forgeflow's Dask cluster is started before its "
          "clock, Flower's Ray inside its `run_simulation`).", "",
          "| N clients | tool | s / round | round 1 s | wall s | final accuracy | uplink bytes | downlink bytes | speed-up |",
          "|---|---|---|---|---|---|---|---|---|"]
    by = {}
    for r in rows:
        by.setdefault(r["clients"], {})[r["side"]] = r
    verdicts = []
    for n, sides in sorted(by.items()):
        f, fl = sides.get("forgeflow"), sides.get("flower")
        sp = fl["s_per_round"] / f["s_per_round"] if f and fl else float("nan")
        for r in (f, fl):
            if r:
                md.append(f"| {n} | {r['side']} | {r['s_per_round']:.2f} | {r.get('first_round_s', float('nan')):.2f} | "
                          f"{r['wall_s']:.1f} | {100 * r['accuracy']:.2f} % | "
                          f"{r['uplink_bytes']:,} | {r['downlink_bytes']:,} | "
                          f"{f'{sp:.2f}x' if r['side'] == 'forgeflow' else ''} |")
        if f and fl:
            verdicts.append(f"- N = {n}: forgeflow **{sp:.2f}x** faster per round (target >= 1.5x: "
                            f"{'met' if sp >= 1.5 else 'MISSED'}), final accuracy {100 * f['accuracy']:.2f} % vs "
                            f"{100 * fl['accuracy']:.2f} % (largest per-round difference "
                            f"{100 * max(abs(a - b) for a, b in zip(f['curve'], fl['curve'])):.2f} pp); whole run "
                            f"including start-up {f['wall_s']:.1f} s vs {fl['wall_s']:.1f} s.")
    measured = sorted({r["measured"] for r in rows if r.get("measured")})
    notes = ["", "Rows measured (UTC time, 1-minute load average, command):"] + \
        [f"- {m}" for m in measured] if measured else []
    return "\n".join(md + [""] + verdicts + notes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", default="20,100")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sides", default="flower,forgeflow", help="which tools to run in this piece ('' or none: run "
                   "nothing, render the report from --results)")
    p.add_argument("--results", default=None, help="JSON file that keeps rows across pieces; the report uses all")
    p.add_argument("--flower-timeout", type=float, default=600.0, help="seconds before a Flower run is abandoned")
    p.add_argument("--flower-python", default=sys.executable)
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--flower-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.flower_child:
        print(json.dumps(run_flower(int(args.clients), args.rounds, args.seed)), flush=True)
        return
    sides = [s.strip() for s in args.sides.split(",") if s.strip() and s.strip() != "none"]
    if set(sides) - {"flower", "forgeflow"}:
        raise SystemExit(f"--sides takes flower and/or forgeflow, got {args.sides!r}")
    kept = Path(args.results) if args.results else None
    rows = json.loads(kept.read_text()) if kept is not None and kept.exists() else []
    if not sides and not rows:
        raise SystemExit("nothing to run and no rows in --results to report")
    for n in (int(c) for c in args.clients.split(",")):
        for side in sides:
            r = spawn_flower(args.flower_python, n, args.rounds, args.seed, args.flower_timeout) if side == "flower" \
                else run_forgeflow(n, args.rounds, args.seed)
            print(f"  {side:<9} N={n}: {r['s_per_round']:.2f} s/round (round 1 {r['first_round_s']:.1f} s, wall "
                  f"{r['wall_s']:.1f} s), accuracy {r['accuracy']:.4f}", flush=True)
            r["measured"] = f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, load average " \
                            f"{os.getloadavg()[0]:.2f}: python {' '.join(sys.argv)}"
            rows = [x for x in rows if (x["side"], x["clients"], x["rounds"]) != (side, n, args.rounds)] + [r]
            if kept is not None:
                kept.write_text(json.dumps(rows))
    rows = [r for r in rows if r["rounds"] == args.rounds]
    md = render(rows, args.rounds)
    print(md)
    if not args.no_report:
        from _report import write_section

        write_section("federated_vs_flower", md)


if __name__ == "__main__":
    main()
