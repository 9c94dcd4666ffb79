"""The report page renders in a real headless Chromium (Debian's package) with every plot visible."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def _summary(bundle):
    from forgeflow.tasks.deploy.pipeline_run import run_pipeline

    path, planned, info = bundle
    plan = planned["plan"]
    cands = [{"arch": "a", "accuracy_pct": 90.0, "bottleneck_ms": 1.0}, {"arch": "b", "accuracy_pct": 95.0,
                                                                         "bottleneck_ms": 2.0}]
    return {
        "run_id": "r" * 32, "catalog": "/tmp/cat",
        "target": {"name": "host-2", "k": 2, "memory_bytes": [1e12, 1e12], "speed": [1.0, 1.0], "bits": [4, 8, 32],
                   "bit_speedup": [{}, {}], "link_bytes_per_s": 1e9, "link_latency_ms": 0.15, "budget_fraction": 0.5,
                   "latency_limit_ms": 1.5, "min_accuracy_pct": None, "microbatch": 16, "source": "host",
                   "digest": "d"},
        "search": {"status": "budget_spent", "evaluations": 2, "infeasible": 0, "front": cands, "candidates": cands,
                   "why": "the fastest", "latency_limit_ms": 1.5},
        "chosen": cands[0], "plan": plan, "host_stage_ms": planned["host_stage_ms"],
        "accuracy": {"accuracy_float_pct": 91.0, "accuracy_quantized_pct": 90.5, "accuracy_finetuned_pct": None,
                     "n_test": 450},
        "bundle": info, "pipeline": run_pipeline(path, microbatches=4, warmup=1), "seconds": {"search": 1.0},
    }


def _chromium():
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("Chromium is not installed (apt-get install -y chromium): the report must be checked in a browser")


FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
def test_report_renders_with_plots_in_chromium(bundle, tmp_path):
    from forgeflow.tasks.deploy.report import render_html

    page = render_html(_summary(bundle))
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained
    assert page.count("data:image/png;base64,") == 3
    # a probe copy reports, through the DOM, whether every image decoded with a real size
    probe = page.replace("</body>", "<script>document.body.setAttribute('data-plots', [...document.images].map("
                         "i => i.complete && i.naturalWidth > 100 && i.naturalHeight > 100).join(','))</script></body>")
    (tmp_path / "probe.html").write_text(probe)
    (tmp_path / "report.html").write_text(page)
    chrome = _chromium()
    dom = subprocess.run([chrome, *FLAGS, f"--user-data-dir={tmp_path / 'profile1'}", "--dump-dom",
                          f"file://{tmp_path / 'probe.html'}"], capture_output=True, text=True, timeout=120).stdout
    assert 'data-plots="true,true,true"' in dom, dom[-500:]
    shot = tmp_path / "shot.png"
    subprocess.run([chrome, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}",
                    "--window-size=1100,2400", f"file://{tmp_path / 'report.html'}"], capture_output=True,
                   timeout=120)
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20) or []
    plot_blue = sum(n for n, (r, g, b) in colours if abs(r - 0x4C) < 12 and abs(g - 0x72) < 12 and abs(b - 0xB0) < 12)
    assert plot_blue > 500, "the plots' blue does not appear on the rendered page"
