"""Named interconnect profiles: the time to move a tensor between two devices.

transfer time (ms) = bytes / bandwidth + fixed latency. Bandwidths are effective unidirectional payload rates in
bytes per second (not the marketing line rate: protocol overhead is taken off), latencies the one-way software +
wire latency of a small message. A profile is configurable: pass ``LinkProfile(...)`` or ``"custom:GBps:us"``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from forgeflow.tasks.profiling.errors import UnknownLinkError

__all__ = ["DEFAULT_LINK", "LINKS", "LinkProfile", "UnknownLinkError", "get_link"]


@dataclass(frozen=True)
class LinkProfile:
    """A point-to-point link: ``bandwidth_bytes_per_s`` (> 0) and ``latency_s`` (>= 0) per transfer."""

    name: str
    bandwidth_bytes_per_s: float
    latency_s: float
    description: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.bandwidth_bytes_per_s) and self.bandwidth_bytes_per_s > 0):
            raise UnknownLinkError(f"link {self.name!r}: bandwidth must be a positive number of bytes/s, "
                                   f"got {self.bandwidth_bytes_per_s!r}")
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise UnknownLinkError(f"link {self.name!r}: latency must be >= 0 s, got {self.latency_s!r}")

    def transfer_ms(self, nbytes: float) -> float:
        """Milliseconds to move ``nbytes``; 0 for an empty tensor (nothing is sent)."""
        if nbytes <= 0:
            return 0.0
        return (nbytes / self.bandwidth_bytes_per_s + self.latency_s) * 1e3


_GB = 1e9
#: Built-in profiles. Figures are typical measured payload rates (e.g. nvbandwidth / iperf3 / ib_write_bw numbers),
#: not line rates: PCIe 4.0 x16 is 31.5 GB/s raw, ~25 GB/s in cudaMemcpy; 100 GbE moves ~11.5 GB/s of payload.
LINKS: dict[str, LinkProfile] = {p.name: p for p in (
    LinkProfile("pcie3_x16", 12.0 * _GB, 10e-6, "PCIe 3.0 x16 host<->device copy"),
    LinkProfile("pcie4_x16", 25.0 * _GB, 10e-6, "PCIe 4.0 x16 host<->device copy"),
    LinkProfile("pcie5_x16", 50.0 * _GB, 10e-6, "PCIe 5.0 x16 host<->device copy"),
    LinkProfile("nvlink", 300.0 * _GB, 5e-6, "NVLink 4 (H100), one direction, GPU<->GPU"),
    LinkProfile("nvlink3", 250.0 * _GB, 5e-6, "NVLink 3 (A100), one direction, GPU<->GPU"),
    LinkProfile("infiniband_hdr", 23.0 * _GB, 3e-6, "InfiniBand HDR 200 Gb/s RDMA"),
    LinkProfile("100gbe", 11.5 * _GB, 20e-6, "100 Gigabit Ethernet, TCP payload"),
    LinkProfile("25gbe", 2.9 * _GB, 30e-6, "25 Gigabit Ethernet, TCP payload"),
    LinkProfile("10gbe", 1.15 * _GB, 50e-6, "10 Gigabit Ethernet, TCP payload"),
    LinkProfile("1gbe", 0.117 * _GB, 100e-6, "1 Gigabit Ethernet, TCP payload"),
    # The msr-fiddle graphs price every transfer at size / 2^31 * 1e3 ms: 2.147 GB/s, no fixed latency.
    LinkProfile("msr_fpga", 2.0 ** 31, 0.0, "the link implied by msr-fiddle's graphs (2 GiB/s)"),
)}

DEFAULT_LINK = "pcie4_x16"
_CUSTOM = re.compile(r"^custom:([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?):([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)$", re.I)


def get_link(link: str | LinkProfile | None = None) -> LinkProfile:
    """A profile by name (``None`` -> the default), or ``custom:GBPS:MICROSECONDS`` (e.g. ``custom:12.5:8``)."""
    if isinstance(link, LinkProfile):
        return link
    key = (link or DEFAULT_LINK).strip()
    if key.lower() in LINKS:
        return LINKS[key.lower()]
    m = _CUSTOM.match(key)
    if m:
        return LinkProfile(key, float(m.group(1)) * _GB, float(m.group(2)) * 1e-6, "user-defined link")
    raise UnknownLinkError(f"unknown link profile {key!r}; known: {', '.join(sorted(LINKS))}, "
                           "or custom:GBPS:MICROSECONDS")
