r"""Evaluates a training run's checkpoint on whole clips, in a process of its own.

  python -m jaxgenre.evaluate --workdir runs/x [--split test|validation]
      [--checkpoint best|latest|STEP] [--watch] [--data_dir DIR] [--output_dir DIR]

Restores on whatever devices this process has (the checkpoint may come from a pod), averages
the logits of crops that cover each clip, prints a table with the accuracy last, then writes
<split>_<step>.json and a confusion-matrix PNG to WORKDIR/eval (or --output_dir); a multi-label
run (data.label 'genres') prints per-genre AP and ROC-AUC with the mAP last, and writes the
JSON (mAP, ROC-AUC macro and micro, per-genre AP). --watch
evaluates each new checkpoint as it appears until the run's last step is evaluated. 'best'
falls back to the latest step, saying so, when no step carries validation metrics.
"""
from jaxgenre.core import cli

# First of all: before TensorFlow and JAX start their threads and loggers.
cli.prepare_process(relaunch=__name__ == "__main__")

from absl import app, flags

from jaxgenre.core import outputs, sharding
from jaxgenre.evaluators import checkpoints

_WORKDIR = flags.DEFINE_string("workdir", None, "The training run's --workdir.", required=True)
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "validation", "train"], "Split to evaluate.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
_WATCH = flags.DEFINE_bool("watch", False, "Evaluate every new checkpoint until the last step.")
_POLL = cli.integer_flag("poll_seconds", 30, "With --watch: how often to look.", minimum=1)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Override the run's data.data_dir.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None,
                                  "Where reports go (default WORKDIR/eval; e.g. for a read-only run).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_logs()
    sharding.initialize_distributed()
    job = checkpoints.CheckpointEvaluator(_WORKDIR.value, _SPLIT.value, _DATA_DIR.value,
                                         _OUTPUT_DIR.value)
    sharding.check_on_process_0(
        lambda: outputs.check_writable(job.output_dir, "--output_dir", directory=True),
        "--output_dir")
    if _WATCH.value:
        job.watch(_POLL.value)
    else:
        job.evaluate(_CHECKPOINT.value)


if __name__ == "__main__":
    cli.run(main)
