"""SLURM's preemption and time-limit signal, served at a step boundary.

SLURM warns a job before it preempts it or its time runs out (submitit asks for SIGUSR2, 90 s
ahead). submitit's own handler checkpoints the job object and requeues it at once, from
wherever the signal landed: in the middle of an optimizer step, say, where no consistent state
exists to save. So a sweep job puts a handler of its own in front: it only asks the run to stop
(`bench.core.resume.request_stop`). The training loop sees the request after its current step,
writes a checkpoint of that step and raises `Preempted`; the job then hands the signal to
submitit's handler, which requeues the job with the runs it had not finished, and the requeued
job resumes the interrupted run from that checkpoint. A signal that lands between runs (or
during a run's final evaluation) is served before the next run starts.
"""

from __future__ import annotations

import signal
import sys

from bench.core import resume


class Deferred:
    """submitit's handler of the preemption signal, held back until `hand_over`."""

    def __init__(self, signum: int, handler, job_id: str):
        self.signum, self.handler, self.job_id = signum, handler, job_id

    def _defer(self, signum, frame) -> None:
        resume.request_stop()

    def hand_over(self) -> None:
        """Let submitit's handler do what it would have done on the signal: checkpoint the job
        object (`SweepJob.checkpoint`) and requeue it. It exits this process on the job's
        first task; the other tasks (DDP ranks) leave with it."""
        self.handler(self.signum, None)
        sys.exit(-1)  # a rank other than 0: submitit's handler returns there


def defer() -> Deferred | None:
    """Inside a submitit job whose preemption signal has submitit's handler: put ours in
    front and return it; None elsewhere (the local executors, a plain process)."""
    try:
        from submitit import JobEnvironment
        from submitit.core.job_environment import SignalHandler
    except ImportError:
        return None
    signum = JobEnvironment._usr_sig()
    handler = signal.getsignal(signum)
    if not isinstance(getattr(handler, "__self__", None), SignalHandler):
        return None  # not a submitit job (or submitit changed how it handles the signal)
    held = Deferred(signum, handler, str(JobEnvironment().job_id))
    signal.signal(signum, held._defer)
    resume.clear_stop()
    resume.arm_stop()
    return held
