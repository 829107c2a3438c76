"""Preemption notices: SIGTERM (what preemptible TPU/GPU VMs, SLURM and Kubernetes send before
they stop a job) turned into "save at step N and exit", with every process agreeing on N.

Multi-process runs use JAX's preemption sync point: the coordination service catches SIGTERM on
any host and every host learns the same step at which to save (the step after the highest one any
host has started). A single process catches SIGTERM itself. Either way the loop asks
`reached(step)` after each step; the check is local and costs nothing between notices.
"""
import signal
import threading

import jax
from jax.experimental import multihost_utils

EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a job stopped by SIGTERM


class Preempted(Exception):
    """Training stopped on a preemption notice after saving the step it names."""


class Notice:
    """Call `reached(step)` once per step, on every process, in step order."""

    def __init__(self):
        self._distributed = jax.process_count() > 1
        self._received = threading.Event()
        if not self._distributed and threading.current_thread() is threading.main_thread():
            # Python can only install handlers on the main thread; elsewhere (a notebook's
            # worker thread) SIGTERM keeps its default behaviour.
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        del signum, frame
        self._received.set()

    def reached(self, step: int) -> bool:
        """True at the step every process saves at after a SIGTERM on any of them."""
        if self._distributed:
            return multihost_utils.reached_preemption_sync_point(step)
        return self._received.is_set()

    def close(self) -> None:
        """Gives SIGTERM back its previous handler (training is over)."""
        if hasattr(self, "_previous"):
            signal.signal(signal.SIGTERM, self._previous)
