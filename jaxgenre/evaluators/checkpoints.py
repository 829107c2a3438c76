"""Evaluating a run's saved checkpoints from a separate process (`python -m jaxgenre.evaluate`):
once, or each new one as a running job saves it."""
import time

import jax
from absl import logging
from etils import epath

from jaxgenre import evaluators, tasks
from jaxgenre.core import sharding
from jaxgenre.data import input_pipeline
from jaxgenre.run import checkpointing, rundir


class CheckpointEvaluator:
    """Restores checkpoints of one run onto this process's devices and runs its configured
    evaluators (`config.evals`) on one split, any task. Reads only what evaluation uses (the
    averaged weights, not the optimizer state)."""

    def __init__(self, workdir: str, split: str, data_dir: str | None = None,
                 output_dir: str | None = None):
        self.workdir, self.split = workdir, split
        self.output_dir = output_dir or str(epath.Path(workdir) / "eval")
        self.config = rundir.load_config(workdir)
        if data_dir:
            self.config.data.data_dir = data_dir
        self.mesh = sharding.make_mesh()
        self.mngr = checkpointing.manager(workdir, read_only=True,
                                          **rundir.best_options(self.config))
        self.builder = input_pipeline.load_builder(self.config.data.name,
                                                   self.config.data.data_dir,
                                                   self.config.data.manual_dir)

    def evaluate(self, which: str) -> dict:
        """Evaluates checkpoint `which`, prints each table, then writes the reports under
        `output_dir`; returns the first evaluator's result."""
        run = rundir.restore(self.workdir, self.mesh, tasks.create, which, items="eval")
        results = {}
        for name, ev in evaluators.create(self.config, run.task, run.state_sharding, self.builder,
                                          self.mesh, split=self.split).items():
            result = ev.run(run.state)
            result.update(step=run.step, split=self.split, checkpoint=which, evaluator=name,
                          model=self.config.model.name, dataset=self.config.data.name)
            if jax.process_index() == 0:
                print(ev.table(result), flush=True)  # first: a failed write loses nothing seen
                self._write(ev, result)
            results[name] = result
        return next(iter(results.values()))

    def _write(self, ev, result: dict) -> None:
        try:
            paths = ev.write(result, self.output_dir)
        except OSError as e:
            raise OSError(f"Could not write the report under {self.output_dir} ({e}); the "
                          "results are printed above. Pass --output_dir DIR to write elsewhere."
                          ) from e
        logging.info("wrote %s", ", ".join(paths))

    def watch(self, poll_seconds: int) -> None:
        """Evaluates each new checkpoint until one at or past the run's `total_steps` (read
        again at every poll: a resumed run may have raised it) is done. A damaged step stops it
        with the `rundir.RunError` that names the step."""
        done = set()
        while True:
            total = rundir.load_config(self.workdir).total_steps
            # damaged steps too: evaluating one raises the error that names it
            for step in sorted(set(checkpointing.saved_steps(self.mngr)) - done):
                try:
                    self.evaluate(str(step))
                except (FileNotFoundError, ValueError, rundir.RunError) as e:
                    if step in checkpointing.saved_steps(self.mngr):
                        raise
                    # the trainer's manager deleted it (kept neither latest nor best) meanwhile
                    logging.info("step %d was deleted before it was read; skipped (%s)", step,
                                 checkpointing.describe_error(e))
                done.add(step)
            if done and max(done) >= total:
                return
            logging.info("waiting for step %d of %s (evaluated: %s); next look in %d s",
                         total, self.workdir, max(done) if done else "none", poll_seconds)
            time.sleep(poll_seconds)
