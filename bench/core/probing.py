"""What a probe is: a measurement a run takes besides its loss curve, chosen by
`TrainConfig.probes` (`--probe NAME`) and stored under its name in the record's `probes`. A
probe reads the model and the task; none changes training (a micro run trains bit for bit the
same with or without one).

A probe is a class registered in `PROBES`; the training loop makes one per run and calls

  check(task)             before training: a one-line ValueError when this task cannot be
                          probed (a planner may call it too, before any run starts)
  after_backward(s, step) after every backward, before the optimizer step (gradients live)
  result(s)               at the end: the JSON-able value stored in the record
  state_dict()            what a checkpoint keeps of the probe mid-run (bench.core.resume);
  load_state_dict(state)  by default the instance's attributes, which must then be plain
                          values, lists, dicts or tensors (a checkpoint is loaded weights-only)

`s` is the run's set-up (bench.core.train._Setup: model, task, device, amp, tcfg). `result` is
called for finished runs only, unless the class sets `on_diverged = True`. A probe shows its
numbers through a section (bench.analysis.sections) and, for a per-run number, a column
(bench.analysis.columns) reading `rec.probes[name]`. The built-in probes are in bench.probes.
"""

from __future__ import annotations

import copy

from variants.named import Registry


class Probe:
    on_diverged = False  # True: `result` is kept for diverged runs too

    def check(self, task) -> None:
        pass

    def after_backward(self, s, step: int) -> None:
        pass

    def result(self, s):
        return None

    def state_dict(self) -> dict:
        return copy.deepcopy(vars(self))

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(copy.deepcopy(state))


PROBES: Registry[type[Probe]] = Registry("probe")
