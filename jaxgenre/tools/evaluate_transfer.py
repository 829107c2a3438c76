r"""Evaluates a genre style-transfer method against the trivial baselines, judged by a classifier.

  python -m jaxgenre.evaluate_transfer --method identity|random_target|eq|WORKDIR \
      --judge CLASSIFIER_WORKDIR --output_dir DIR [--split test] [--clips N] [--targets A,B]
      [--strength S] [--excerpt_seconds S]

Every clip of the split (or its first N; each whole, or its first S seconds) is turned into
every other genre (or those in --targets); the judge, a classifier trained by `jaxgenre.train`
and never one a method was trained with, re-analyses each output from its waveform. Writes
DIR/<method>_<split>.json, a target-accuracy heatmap PNG, WAV + log-mel examples under
DIR/examples/, DIR/transfer_<split>.md with one row per method in DIR, and
DIR/transfer_<split>.html, a page to hear every method's examples beside their log-mels and the
judge's verdicts; the three baselines are always in the table (computed when DIR lacks them for
the same judge and settings).
"""
from jaxgenre.core import cli

# First of all: before TensorFlow and JAX start their threads and loggers.
cli.prepare_process(relaunch=__name__ == "__main__")

import dataclasses
import os

import jax
from absl import app, flags, logging
from etils import epath

from jaxgenre.audio import vocoder
from jaxgenre.core import outputs, sharding
from jaxgenre.data import input_pipeline, spectra
from jaxgenre.inference import judge as judge_lib
from jaxgenre.run import config_versions, rundir
from jaxgenre.tasks import classifier
from jaxgenre.transfer import evaluator as evaluator_lib
from jaxgenre.transfer import generator, report
from jaxgenre.transfer import methods as methods_lib

_METHOD = flags.DEFINE_string("method", None, f"One of {', '.join(methods_lib.BASELINES)}, or a "
                              "style-transfer run's --workdir.", required=True)
_JUDGE = flags.DEFINE_string("judge", None, "A genre classifier's jaxgenre.train --workdir, or "
                             "several joined by commas: their ensemble (mean probabilities).",
                             required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where results go.", required=True)
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "validation", "train"], "Split to convert.")
_CLIPS = cli.integer_flag("clips", None, "Only the split's first N clips.", minimum=1)
_EXCERPT = cli.float_flag("excerpt_seconds", None, "Convert and judge only each clip's first S "
                          "seconds, at least the judge's input (default: whole clips).",
                          above=0.0)
_TARGETS = flags.DEFINE_list("targets", None, "Target genre names (default: every genre).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "The judge's checkpoint: best|latest|STEP.")
_METHOD_CHECKPOINT = flags.DEFINE_string(
    "method_checkpoint", "best", "A style-transfer run's checkpoint: best|latest|STEP (other "
    "than best, the method is reported as <name>@<step>).")
_STRENGTH = cli.float_flag("strength", 1.0, "A style-transfer run's conversion strength in [0, "
                           "1] (reported as <name>@strength<s> unless 1).", minimum=0.0,
                           maximum=1.0)
_BATCH_SIZE = cli.integer_flag("batch_size", 8, "Clips per global batch (a multiple of the "
                               "device count).", minimum=1)
_PHASE = flags.DEFINE_enum("phase", "source", ["source", "random"],
                           "Griffin-Lim's initial phase: the converted clip's own, or random.")
_GL_ITERS = cli.integer_flag("gl_iters", vocoder.VocoderConfig.n_iter, "Griffin-Lim iterations.",
                             minimum=0)
_NNLS_STEPS = cli.integer_flag("nnls_steps", vocoder.VocoderConfig.nnls_steps,
                               "Projected-gradient steps of the mel -> linear inversion.",
                               minimum=0)
_POOL = cli.integer_flag("pool_per_genre", 16, "Real clips per genre of the split for "
                         "random_target to draw from, and as many others (disjoint) that "
                         "FD-judge compares with.", minimum=1)
_EQ_CLIPS = cli.integer_flag("eq_clips_per_genre", spectra.CLIPS_PER_GENRE, "Training clips "
                             "per genre for the eq baseline's mean spectra.", minimum=1)
_EXAMPLES = cli.integer_flag("examples", 3, "Clips kept as WAV + PNG per method.", minimum=0)
_SEED = cli.integer_flag("seed", 0, "Random draws (random_target, random phase).", minimum=0)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Override the judge run's data.data_dir.")


def _check_method(spec: str, judge_dir: str) -> None:
    """Refuses anything that is neither a baseline nor a style-transfer run, and a judge the
    method was trained with, before any work."""
    if spec in methods_lib.BASELINES:
        if _STRENGTH.value != 1.0:
            raise app.UsageError(f"--strength applies to a style-transfer run, not to {spec}.")
        return
    workdir = epath.Path(spec)
    hint = f"valid methods: {', '.join(methods_lib.BASELINES)}, or a style-transfer run's --workdir"
    if not (workdir / "config.json").exists():
        raise app.UsageError(f"Unknown method {spec!r}: {hint}.")
    config = rundir.load_config(spec)
    if config_versions.task_name(config) not in generator.GENERATOR_TASKS:
        raise app.UsageError(f"{spec} is a run of model {config.model.name!r}, not a "
                             f"style-transfer run: {hint}.")
    saved = [d for entry in (config.gan.get("classifier_workdir"),
                             *[e.get("classifier_workdir") for e in config.evals.values()])
             for d in judge_lib.split_workdirs(entry or "")]
    # A relative path in the run's config is relative to where it was trained, which is not
    # known: the run's own directory, or the directory above its runs/ folder, are the usual.
    bases = [epath.Path(os.getcwd()), *list(workdir.resolve().parents)[:2]]
    used = {p.resolve() for d in saved for p in _where(d, bases)}
    for member in judge_lib.split_workdirs(judge_dir):
        judge = epath.Path(member).resolve()
        if workdir.resolve() == judge or judge in used:
            raise app.UsageError(f"The judge {member} was used to train or select {spec}: judge "
                                 "with classifiers the method never saw.")
    _warn_of_shared_family(spec, config, bases, judge_dir)


def _where(path: str, bases: list[epath.Path]) -> list[epath.Path]:
    """Where a run's saved classifier path may be: itself when absolute, else under each of
    `bases` (it is relative to where the run was trained, which is not known)."""
    p = epath.Path(path)
    return [p] if p.is_absolute() else [b / p for b in bases]


def _model_name(workdir: epath.Path) -> str | None:
    """The run's model family, or None where its config cannot be read (the judge's loading
    reports that)."""
    try:
        return rundir.load_config(str(workdir)).model.name
    except (FileNotFoundError, rundir.RunError):
        return None


def _warn_of_shared_family(spec: str, config, bases: list, judge_dir: str) -> None:
    """Warns when a judge member is of the loss classifier's model family: a generator trained
    to fool one network fools others of its family far more than it moves the genre (the dev
    set's MFCC-CNN-trained StarGAN: target accuracy 0.724 under an MFCC-CNN + ResNet-18 judge,
    0.327 under the ResNet-18 alone, where eq has 0.529 and 0.462; docs/results_style_transfer.md)."""
    loss = config.gan.get("classifier_workdir") or ""
    families = {_model_name(p) for d in judge_lib.split_workdirs(loss)
                for p in _where(d, bases)} - {None}
    for member in judge_lib.split_workdirs(judge_dir):
        family = _model_name(epath.Path(member))
        if family and family in families:
            logging.warning(
                "The judge %s is a %s, as is %s's loss classifier %s: its verdict on this method "
                "is inflated by perturbations that fool the family, not the genre; report the "
                "method also under a judge of another family alone.", member, family, spec, loss)


def _baseline(name: str, codec, builder, draw_pool: dict):
    if name == "identity":
        return methods_lib.Identity(codec)
    if name == "random_target":
        return methods_lib.RandomTarget(codec, {c: v["audio"] for c, v in draw_pool.items()},
                                        _SEED.value)
    return methods_lib.Eq(codec, spectra.genre_ltas(builder, "train", codec.mel, _EQ_CLIPS.value))


def _split_pool(clips: dict) -> tuple[dict, dict]:
    """Alternate clips of each genre into (random_target's draws, FD-judge's reference), so that
    random_target is never compared with the very clips it copies."""
    def part(start):
        return {c: {k: v[start::2] for k, v in p.items()} for c, p in clips.items()
                if len(p["audio"]) > start}
    return part(0), part(1)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    cli.quiet_logs()
    evaluate()


def evaluate():
    _check_method(_METHOD.value, _JUDGE.value)
    sharding.initialize_distributed()
    sharding.check_on_process_0(
        lambda: outputs.check_writable(_OUTPUT_DIR.value, "--output_dir", directory=True),
        "--output_dir")
    mesh = sharding.make_mesh()
    judge = judge_lib.load(_JUDGE.value, mesh, _CHECKPOINT.value)
    data_dir = _DATA_DIR.value or judge.config.data.data_dir
    builder = input_pipeline.load_builder(judge.dataset, data_dir, judge.config.data.manual_dir)
    names = builder.info.features["label"].names
    targets = None
    if _TARGETS.value:
        unknown = [t for t in _TARGETS.value if t not in names]
        if unknown:
            raise app.UsageError(f"Unknown genre(s) {unknown} in --targets; "
                                 f"valid: {', '.join(names)}.")
        targets = [names.index(t) for t in _TARGETS.value]
    # The baselines' codec: the judge's mel parameters with a fixed reference, so level survives.
    mel = dataclasses.replace(classifier.mel_config(judge.config, judge.sample_rate), ref=1.0)
    vcfg = vocoder.VocoderConfig(n_iter=_GL_ITERS.value, nnls_steps=_NNLS_STEPS.value)
    codec = methods_lib.Codec(mel, vcfg, mesh, _PHASE.value, _SEED.value)
    settings = {"judge": ",".join(str(epath.Path(d).resolve())
                                  for d in judge_lib.split_workdirs(_JUDGE.value)),
                "judge_step": judge.step,
                "dataset": judge.dataset, "data_dir": data_dir, "split": _SPLIT.value,
                "clips": _CLIPS.value, "targets": _TARGETS.value, "phase": _PHASE.value,
                "vocoder": dataclasses.asdict(vcfg), "pool_per_genre": _POOL.value,
                "eq_clips_per_genre": _EQ_CLIPS.value, "batch_size": _BATCH_SIZE.value,
                "seed": _SEED.value}
    out_dir = _OUTPUT_DIR.value
    clip_samples = input_pipeline.longest_clip(
        builder, _SPLIT.value if _CLIPS.value is None else f"{_SPLIT.value}[:{_CLIPS.value}]")
    if _EXCERPT.value is not None:
        excerpt = round(_EXCERPT.value * judge.sample_rate)
        if excerpt < judge.crop_samples:
            raise app.UsageError(
                f"--excerpt_seconds {_EXCERPT.value:g} is shorter than the judge's input "
                f"({judge.crop_samples / judge.sample_rate:g} s), which would hear silence "
                f"padded in: pass at least {judge.crop_samples / judge.sample_rate:g}.")
        clip_samples = min(clip_samples, excerpt)
        # In the settings only when given: whole-clip results saved before the flag still match.
        settings["excerpt_seconds"] = _EXCERPT.value
    draw_pool, reference = _split_pool(
        input_pipeline.clips_by_label(builder, _SPLIT.value, 2 * _POOL.value, clip_samples))
    evaluator = None
    for spec in [_METHOD.value] + [b for b in methods_lib.BASELINES if b != _METHOD.value]:
        if spec != _METHOD.value and spec in report.read_results(out_dir, _SPLIT.value, settings):
            continue  # this baseline is already in DIR for the same judge and settings
        if spec in methods_lib.BASELINES:
            method = _baseline(spec, codec, builder, draw_pool)
        else:
            method = generator.GeneratorMethod(spec, mesh, vcfg, _PHASE.value, _SEED.value,
                                               _METHOD_CHECKPOINT.value, _STRENGTH.value)
            judge.check_labels(method.class_names, f"the run {spec}")
            if method.sample_rate != judge.sample_rate:
                raise ValueError(f"{spec} works at {method.sample_rate} Hz, the judge's data at "
                                 f"{judge.sample_rate} Hz: judge with a classifier of its dataset.")
        if evaluator is None:
            evaluator = evaluator_lib.TransferEvaluator(
                judge, builder, _SPLIT.value, _BATCH_SIZE.value, mesh, codec, clip_samples,
                reference, _CLIPS.value, targets, _EXAMPLES.value)
        result, examples = evaluator.run(method)
        result.update(method=method.name, settings=settings, **settings)
        if jax.process_index() == 0:
            stem = f"{method.name}_{_SPLIT.value}"
            paths = [report.write_json(result, out_dir, stem),
                     report.write_heatmap(result, out_dir, stem)]
            paths += report.write_examples(examples, method.name, names, judge.sample_rate,
                                           out_dir, _SPLIT.value, settings)
            logging.info("wrote %s", ", ".join(paths))
    if jax.process_index() == 0:
        table = report.write_table(out_dir, _SPLIT.value, settings)
        print(epath.Path(table).read_text(), flush=True)
        page = report.write_listening_page(out_dir, _SPLIT.value, settings)
        print(f"Listen: {page}", flush=True)


def entry_point() -> None:
    """Parses the flags and runs `main` (the `python -m` entry point)."""
    cli.run(main)


if __name__ == "__main__":
    entry_point()
