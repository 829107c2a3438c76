r"""Evaluates a training run's checkpoint on whole clips, in a process of its own.

  python -m jaxgenre.evaluate --workdir runs/x [--split test|validation]
      [--checkpoint best|latest|STEP] [--watch] [--data_dir DIR]

Restores on whatever devices this process has (the checkpoint may come from a pod), averages
the logits of crops that cover each clip, writes WORKDIR/eval/<split>_<step>.json and a
confusion-matrix PNG beside it, and prints a table with the accuracy last. --watch evaluates
each new checkpoint as it appears until the run's last step is evaluated.
"""
from jaxgenre import host_memory

# First of all: before TensorFlow and JAX start their threads (see host_memory).
host_memory.keep_freed_memory()

from absl import app, flags

from jaxgenre import evaluation, sharding

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's --workdir.", required=True)
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "validation", "train"], "Split to evaluate.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
_WATCH = flags.DEFINE_bool("watch", False, "Evaluate every new checkpoint until the last step.")
_POLL = flags.DEFINE_integer("poll_seconds", 30, "With --watch: how often to look.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Override the run's data.data_dir.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    sharding.initialize_distributed()
    job = evaluation.CheckpointEvaluator(_WORKDIR.value, _SPLIT.value, _DATA_DIR.value)
    if _WATCH.value:
        job.watch(_POLL.value)
    else:
        job.evaluate(_CHECKPOINT.value)


if __name__ == "__main__":
    app.run(main)
