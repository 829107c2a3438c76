r"""Evaluates a training run's checkpoint on whole clips, in a process of its own.

  python -m jaxgenre.evaluate --workdir runs/x [--split test|validation]
      [--checkpoint best|latest|STEP] [--watch] [--data_dir DIR]

Restores on whatever devices this process has (the checkpoint may come from a pod), averages
the logits of crops that cover each clip, writes WORKDIR/eval/<split>_<step>.json and a
confusion-matrix PNG beside it, and prints a table with the accuracy last. --watch evaluates
each new checkpoint as it appears until the run's last step is evaluated.
"""
import json
import time

import jax
import ml_collections
from absl import app, flags, logging
from etils import epath

from jaxgenre import (checkpointing, classifier, evaluation, input_pipeline, optim, sharding)

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's --workdir.", required=True)
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "validation", "train"], "Split to evaluate.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
_WATCH = flags.DEFINE_bool("watch", False, "Evaluate every new checkpoint until the last step.")
_POLL = flags.DEFINE_integer("poll_seconds", 30, "With --watch: how often to look.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Override the run's data.data_dir.")


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    path = epath.Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} a jaxgenre.train --workdir?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


class CheckpointEvaluator:
    """Restores checkpoints of one run onto this process's devices and evaluates them."""

    def __init__(self, workdir: str, split: str, data_dir: str | None = None):
        self.workdir, self.split = workdir, split
        config = load_run_config(workdir)
        if data_dir:
            config.data.data_dir = data_dir
        self.config = config
        self.mesh = sharding.make_mesh()
        builder = input_pipeline.load_builder(config.data.name, config.data.data_dir,
                                              config.data.manual_dir)
        features = builder.info.features
        class_names = features["label"].names
        sample_rate = features["audio"].sample_rate
        mel = classifier.mel_config(config, sample_rate)
        tx = optim.make(config.optim, config.total_steps)
        _, shapes, shardings = classifier.abstract_state(config, len(class_names), tx, self.mesh)
        self.target = checkpointing.abstract_with_shardings(shapes, shardings)
        graphdef = classifier.model_graph(config, len(class_names))
        predict = classifier.jit_predict(config, graphdef, mel, self.mesh, shardings)
        crop = int(round(config.data.crop_seconds * sample_rate))
        self.evaluator = evaluation.Evaluator(predict, builder, split, config.eval_batch_size,
                                              crop, self.mesh, class_names)
        self.mngr = checkpointing.manager(workdir, read_only=True)

    def evaluate(self, which: str) -> dict:
        self.mngr.reload()
        step = checkpointing.resolve_step(self.mngr, which)
        state = checkpointing.restore(self.mngr, step, self.target)
        result = self.evaluator.run(state)
        result.update(step=step, split=self.split, checkpoint=which, model=self.config.model.name,
                      dataset=self.config.data.name)
        if jax.process_index() == 0:
            paths = evaluation.write_report(result, str(epath.Path(self.workdir) / "eval"),
                                            f"{self.split}_{step}")
            print(evaluation.format_table(result), flush=True)
            logging.info("wrote %s", ", ".join(paths))
        return result

    def watch(self, poll_seconds: int) -> None:
        done = set()
        while self.config.total_steps not in done:
            self.mngr.reload()
            for step in sorted(set(self.mngr.all_steps()) - done):
                self.evaluate(str(step))
                done.add(step)
            if self.config.total_steps not in done:
                time.sleep(poll_seconds)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    sharding.initialize_distributed()
    job = CheckpointEvaluator(_WORKDIR.value, _SPLIT.value, _DATA_DIR.value)
    if _WATCH.value:
        job.watch(_POLL.value)
    else:
        job.evaluate(_CHECKPOINT.value)


if __name__ == "__main__":
    app.run(main)
