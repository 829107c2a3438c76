r"""Names the genres of audio files with a trained genre classifier run.

  python -m jaxgenre.predict --workdir runs/demo song.mp3 music/ [--checkpoint best|latest|STEP]
      [--top_k 3] [--output preds.csv] [--plot] [--window_seconds S] [--batch_size 16]

Files of any length and any format librosa reads (resampled to the run's rate, mixed to mono);
directories are searched at any depth for audio files (audio_files.EXTENSIONS). Each file is cut
into windows of --window_seconds (default 10 s or the run's crop if longer; the whole file if
shorter) overlapping by half, the last one ending at the file's end. The run's judge averages
its crops over each window, as `jaxgenre.evaluate` does over a clip; a file's probabilities are
the mean of its windows'. Windows of all files share fixed-shape batches, split over every
device.

Prints `path: Genre 0.83, Genre 0.10, Genre 0.04` per file (stdout), a progress bar and the
files it skips, naming why (stderr). --output writes a CSV (path, genre, one probability column
per genre); --plot a PNG per file of the genres over time, `<stem>_genres.png` beside the CSV
(or in the current directory). Exits 1 when no file could be classified. A file that is silent
or shorter than the run's crop is classified with a warning saying so.

Every file appears whole or not at all (`outputs`): the CSV is written beside --output and
renamed over it when the run ends with a file classified, so a failed run leaves an earlier
CSV as it was; an interrupted one (Ctrl-C, SIGTERM) keeps its complete rows in
`<output>.partial`.
"""
from jaxgenre.core import cli

# First of all: before TensorFlow and JAX start their threads and loggers.
cli.prepare_process(relaunch=__name__ == "__main__")

import contextlib
import csv
import os
import sys
import time

import numpy as np
from absl import app, flags

from jaxgenre import api
from jaxgenre.core import errors, outputs
from jaxgenre.data import audio_files
from jaxgenre.run import rundir


def format_top_k(prediction: api.Prediction, class_names: list[str], k: int) -> str:
    """`path: Genre1 0.83, Genre2 0.10, Genre3 0.04`, most probable first."""
    p = prediction.probabilities
    order = np.argsort(-p, kind="stable")[:k]
    return f"{prediction.path}: " + ", ".join(f"{class_names[i]} {p[i]:.2f}" for i in order)


def plot_path(path: str, out_dir: str, taken: set[str]) -> str:
    """`out_dir/<stem>_genres.png`, numbered when another file of the same stem took it."""
    stem = os.path.splitext(os.path.basename(path))[0]
    name, n = f"{stem}_genres.png", 1
    while name in taken:
        n += 1
        name = f"{stem}_{n}_genres.png"
    taken.add(name)
    return os.path.join(out_dir, name)


def write_plot(png: str, prediction: api.Prediction, class_names: list[str]) -> None:
    """One line per genre: probability against window centre (s)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(10, 4))
    for c, name in enumerate(class_names):
        # Markers: a file of one window is one point per genre.
        ax.plot(prediction.times, prediction.window_probabilities[:, c], marker="o",
                markersize=3, label=name)
    ax.set(xlabel="window centre (s)", ylabel="probability", ylim=(0, 1),
           title=os.path.basename(prediction.path))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.tight_layout()
    with outputs.replacing(png, "wb") as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def predict(inputs: list[str], workdir: str, checkpoint: str = "best", top_k: int = 3,
            output: str | None = None, plot: bool = False, window_seconds: float | None = None,
            batch_size: int = 16) -> int:
    """What the command line does (see the module docstring): judges every file found in
    `inputs`, prints and writes the results; returns how many files were classified (raises
    `errors.UserError` when none was)."""
    from tqdm import tqdm
    # The task, the files and the output before any model is restored: wrong input fails in
    # a second.
    config = rundir.load_config(workdir)
    rundir.check_task(workdir, config, ("classifier",))
    if window_seconds is not None:
        api.check_window(window_seconds, config.data.crop_seconds)
    paths = audio_files.find(inputs)
    if not paths:
        raise errors.UserError(f"No audio files ({', '.join(audio_files.EXTENSIONS)}) in "
                               f"{', '.join(inputs)}.")
    if output:
        outputs.check_writable(output)
        outputs.refuse_inputs([output], paths)
    classifier = api.Classifier.from_run(workdir, checkpoint, window_seconds=window_seconds,
                                         batch_sizes=(batch_size,))
    names = classifier.class_names
    out_dir = os.path.dirname(output) if output else os.getcwd()
    classifier.compile()
    start, classified, taken = time.perf_counter(), 0, set()
    with (_csv_rows(output, names) as write_row,
          tqdm(total=len(paths), unit="file", file=sys.stderr, dynamic_ncols=True) as bar):
        for result in classifier.predict_files(paths):
            bar.update(1)
            if isinstance(result, api.Skipped):  # the reason names the file
                bar.write(f"skipped: {result.reason}", file=sys.stderr)
                continue
            classified += 1
            if write_row:  # first: a file printed as classified is in the CSV (or its .partial)
                write_row(result)
            bar.write(format_top_k(result, names, top_k), file=sys.stdout)
            if result.warning:
                bar.write(f"warning: {result.path}: {result.warning}.", file=sys.stderr)
            if plot:
                write_plot(plot_path(result.path, out_dir, taken), result, names)
        if not classified:  # inside the CSV's block: an earlier CSV at --output is kept
            raise errors.UserError("no file could be classified (each is named above with the "
                                   "reason).")
    _report_speed(len(paths), classified, time.perf_counter() - start)
    return classified


@contextlib.contextmanager
def _csv_rows(path: str | None, class_names: list[str]):
    """Yields a function that appends a Prediction's row to the CSV for `path` (None: no CSV,
    and None is yielded). The CSV replaces `path` when the block completes; rows are flushed as
    files finish, so an interrupted block leaves its complete rows in `<path>.partial`."""
    if not path:
        yield None
        return
    with outputs.replacing(path, "w", keep_on_error=f"{path}.partial", newline="") as f:
        writer = csv.writer(f)

        def write(p: api.Prediction) -> None:
            if not f.tell():  # the header with the first row: no rows, nothing to keep
                writer.writerow(["path", "genre", *class_names])
            probabilities = p.probabilities
            writer.writerow([p.path, class_names[int(np.argmax(probabilities))],
                             *(f"{x:.6f}" for x in probabilities)])
            f.flush()
        try:
            yield write
        except BaseException:
            if f.tell():
                print(f"interrupted: the complete rows are in {path}.partial; {path} is as "
                      "it was.", file=sys.stderr)
            raise


def _report_speed(found: int, classified: int, seconds: float) -> None:
    """Files (read or skipped) per second, from the first file read to the last one judged:
    start-up (imports, restoring, compiling) excluded."""
    print(f"{found} files ({classified} classified) in {seconds:.1f} s "
          f"({found / max(seconds, 1e-9):.2f} files/s after start-up)", file=sys.stderr)


def define_flags() -> None:
    """The command line's flags, in absl's global FLAGS. Only the command line defines them:
    `predict` is imported beside other entry points (tests, notebooks) that define
    --workdir too, and absl refuses a flag defined twice."""
    flags.DEFINE_string("workdir", None, "A genre classifier run's --workdir.", required=True)
    flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
    cli.integer_flag("top_k", 3, "Genres printed per file.", minimum=1)
    flags.DEFINE_string("output", None, "A CSV: one row per classified file.")
    flags.DEFINE_bool("plot", False, "Write <stem>_genres.png per file: genre probabilities over "
                      "time (beside --output, else in the current directory).")
    cli.float_flag("window_seconds", None, "Window judged at once (default "
                   f"{api.DEFAULT_WINDOW_SECONDS:g} s or the run's crop if longer); windows "
                   "overlap by half.", above=0)
    cli.integer_flag("batch_size", 16, "Windows judged at once, rounded up to a multiple of the "
                     "device count.", minimum=1)


def main(argv):
    """argv: the program, then the files and directories (after `define_flags` and parsing)."""
    cli.quiet_logs()
    if len(argv) < 2:
        raise app.UsageError("Pass one or more audio files or directories.")
    f = flags.FLAGS
    predict(argv[1:], f.workdir, f.checkpoint, f.top_k, f.output, f.plot, f.window_seconds,
            f.batch_size)


def entry_point() -> None:
    """Parses the flags and runs `main` (the `python -m` entry point)."""
    define_flags()
    cli.run(main)


if __name__ == "__main__":
    entry_point()
