"""The built-in probes, one file each (see bench.core.probing for what a probe is). Importing
this package registers them all, in the order a record lists them; a plugin file adds its own
to the same `PROBES` (and its section to bench.analysis.sections.SECTIONS), so one file is one
probe.

  grad_norms  per-block gradient norms at the first step and every validation point
  lengths     val loss at 1, 2, 4 and 8 times the trained context
"""

from __future__ import annotations

from bench.core.probing import PROBES, Probe
from bench.probes.grad_norms import block_grad_norms
from bench.probes.lengths import length_losses

__all__ = ["PROBES", "Probe", "block_grad_norms", "length_losses"]
