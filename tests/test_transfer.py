"""The transfer evaluator end to end: a judge trained on the tiny dataset ranks the three
baselines as they must, writes every report, and bad input gets errors that name the fix."""
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile

from jaxgenre import train
from jaxgenre.audio import vocoder
from jaxgenre.core import sharding
from jaxgenre.data import audio_files, input_pipeline
from jaxgenre.inference import judge
from jaxgenre.tasks import classifier
from jaxgenre.transfer import evaluator, methods, report
from tests import train_helpers as th

pytestmark = pytest.mark.transfer  # their own tier: .ci/run, docs/testing.md

FAST = ["--clips", "8", "--gl_iters", "8", "--nnls_steps", "20", "--batch_size", "8",
        "--pool_per_genre", "4", "--eq_clips_per_genre", "4", "--examples", "2"]


def _cli(*args):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "jaxgenre.evaluate_transfer", *args], cwd=th.ROOT,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_baselines_rank_as_they_must_and_bad_input_is_refused(tiny_fma, tmp_path):
    judge_dir = str(tmp_path / "judge")
    train.train_and_evaluate(th.config(tiny_fma[0], total_steps=80, batch_size=16,
                                       eval_every_steps=40, checkpoint_every_steps=40,
                                       log_every_steps=40), judge_dir)
    out = str(tmp_path / "transfer")
    code, log = _cli("--method", "identity", "--judge", judge_dir, "--output_dir", out, *FAST)
    assert code == 0, log[-3000:]
    r = {m: th.read_json(os.path.join(out, f"{m}_test.json"))
         for m in ("identity", "random_target", "eq")}
    for result in r.values():
        for key in ("target_accuracy", "target_probability", "ceiling_accuracy", "chroma_similarity",
                    "onset_f1", "logmel_distance", "fd_judge", "num_pairs"):
            assert key in result
        assert result["num_pairs"] == 8 * 7 and result["num_clips"] == 8
    ident, rand, eq = r["identity"], r["random_target"], r["eq"]
    assert ident["ceiling_accuracy"] >= 0.5  # the judge hears genres through the codec
    # identity: no style moved, all content kept
    assert ident["target_accuracy"] <= ident["chance"]
    assert ident["chroma_similarity"] > eq["chroma_similarity"] > rand["chroma_similarity"]
    assert ident["onset_f1"] > rand["onset_f1"] and eq["onset_f1"] > rand["onset_f1"]
    assert ident["logmel_distance"] < eq["logmel_distance"] < rand["logmel_distance"]
    # random_target: real clips of the target genre, so as often right as the ceiling
    assert abs(rand["target_accuracy"] - rand["ceiling_balanced_accuracy"]) <= 0.25
    # eq moves some of the verdict (spectral tilt alone), less than real clips of the target
    assert ident["target_accuracy"] < eq["target_accuracy"] <= rand["target_accuracy"]
    # FD-judge needs 2+ reference clips per genre kept apart from random_target's draws; the
    # tiny test split has 2 per genre (1 to draw, 1 reference), so it is left unmeasured.
    assert ident["fd_judge"] is None and ident["fd_judge_per_target"] == {}
    with open(os.path.join(out, "transfer_test.md")) as f:
        table = f.read()
    assert all(f"| {m} |" in table for m in ("identity", "random_target", "eq"))
    assert os.path.exists(os.path.join(out, "eq_test_target_accuracy.png"))
    wavs = os.listdir(os.path.join(out, "examples", "eq"))
    assert len([w for w in wavs if w.endswith(".wav")]) == 2
    for result in r.values():  # the artefact figures: the codec and EQ add no bursts
        assert result["clipped_sample_rate"] < 1e-4 and result["edge_burst_db"] < 6.0
        assert 0 < result["target_accuracy_se"] < 0.5
        assert 0 < result["edge_burst_db_se"] < 3.0
    page = open(os.path.join(out, "transfer_test.html")).read()
    assert page.count("<audio") == 2 * (1 + 3)  # two clips: the input and three methods each

    # --excerpt_seconds: every method converts and is judged on each clip's first 1 s only (the
    # judge's input length; shorter is refused)
    short = str(tmp_path / "excerpt")
    code, log = _cli("--method", "identity", "--judge", judge_dir, "--output_dir", short,
                     "--excerpt_seconds", "1", *FAST)
    assert code == 0, log[-3000:]
    for m in ("identity", "random_target", "eq"):
        assert th.read_json(os.path.join(short, f"{m}_test.json"))["settings"][
            "excerpt_seconds"] == 1.0
        wavs = [w for w in os.listdir(os.path.join(short, "examples", m)) if w.endswith(".wav")]
        assert len(wavs) >= 2
        for wav in wavs:  # inputs and outputs alike
            assert soundfile.info(os.path.join(short, "examples", m, wav)).frames == 22_050
    code, log = _cli("--method", "identity", "--judge", judge_dir, "--output_dir", short,
                     "--excerpt_seconds", "0.5", *FAST)
    assert code != 0 and "--excerpt_seconds 0.5 is shorter than the judge's input (1 s)" in log

    # bad input: an unknown method, an unknown genre
    (code, log), (code2, log2) = th.cli_exits("jaxgenre.tools.evaluate_transfer", [
        ["--method", "cyclegan", "--judge", judge_dir, "--output_dir", out, *FAST],
        ["--method", "eq", "--targets", "Jazz", "--judge", judge_dir, "--output_dir", out, *FAST]],
        devices=2)
    assert code != 0 and "valid methods: identity, random_target, eq" in log
    assert code2 != 0 and "Unknown genre(s) ['Jazz']" in log2 and "Hip-Hop" in log2

    # a method whose audio is not finite: refused, named
    mesh = sharding.make_mesh()
    builder = input_pipeline.load_builder("fma/small", tiny_fma[0])
    own_judge = judge.Judge(judge_dir, mesh)
    mel = dataclasses.replace(classifier.mel_config(own_judge.config, own_judge.sample_rate),
                              ref=1.0)
    codec = methods.Codec(mel, vocoder.VocoderConfig(n_iter=2, nnls_steps=2), mesh)
    job = evaluator.TransferEvaluator(own_judge, builder, "test", 8, mesh, codec, 22_050, {},
                                      clips=8)

    class Broken:
        name, uses_target = "broken", True

        def __call__(self, audio, source, target):
            return methods.to_float(audio) * np.nan

    with pytest.raises(ValueError, match="The method broken returned audio that is not finite"):
        job.run(Broken())

    # a judge trained on other labels
    other = str(tmp_path / "other_judge")
    shutil.copytree(judge_dir, other)
    info = th.read_json(os.path.join(other, "dataset_info.json"))
    info["class_names"] = [f"style{i}" for i in range(len(info["class_names"]))]
    with open(os.path.join(other, "dataset_info.json"), "w") as f:
        json.dump(info, f)
    with pytest.raises(judge.JudgeError, match="trained on fma/small with labels"):
        evaluator.TransferEvaluator(judge.Judge(other, mesh), builder, "test", 8, mesh, codec=None,
                                    clip_samples=22_050, reference={})


def test_a_judge_without_checkpoints_is_refused(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.json").write_text(json.dumps(th.config("/nowhere").to_dict()))
    (tmp_path / "dataset_info.json").write_text(json.dumps(
        {"name": "fma/small", "class_names": ["a", "b"], "sample_rate": 22050}))
    with pytest.raises(judge.JudgeError, match="has no checkpoint.*train it first"):
        judge.Judge(str(tmp_path), sharding.make_mesh())
    code, log = _cli("--method", "identity", "--judge", str(tmp_path), "--output_dir",
                     str(tmp_path / "out"))
    assert code != 0 and "has no checkpoint" in log and "Traceback" not in log


def test_frechet_distance_is_zero_for_the_same_set_and_grows_with_a_shift():
    from jaxgenre.transfer import metrics
    x = np.random.default_rng(0).normal(size=(200, 4))
    assert abs(metrics.frechet_distance(x, x)) < 1e-6
    assert metrics.frechet_distance(x, x + 1.0) == pytest.approx(4.0, rel=1e-6)


def test_loud_outputs_are_scaled_not_clipped_and_the_gain_is_stated(tmp_path):
    """A conversion peaking at 13x full scale is written scaled, proportional to what was made
    (before: clipped to +-1 in every burst), the gain in its PNG's title."""
    rng = np.random.default_rng(0)
    quiet = (0.1 * rng.normal(size=4000)).astype(np.float32)
    loud = 13.3 * quiet
    scaled, gain_db = audio_files.peak_safe(loud)
    assert np.abs(scaled).max() == pytest.approx(audio_files.PEAK)
    assert gain_db == pytest.approx(20 * np.log10(audio_files.PEAK / np.abs(loud).max()))
    assert audio_files.peak_safe(quiet) == (quiet, 0.0)
    example = evaluator.Example(track_id=7, source=0, target=1, input=quiet, output=loud)
    wav_path = report.write_examples([example], "m", ["a", "b"], 22_050, str(tmp_path),
                                     "test")[0]
    wav, _ = soundfile.read(wav_path)
    assert np.abs(wav).max() < 1.0
    assert np.corrcoef(wav, loud)[0, 1] > 0.9999


def test_artefact_figures_and_standard_errors_by_clip():
    """A burst at a clip's edge (the demo GAN's: +25 dB in its first 100 ms) and full-scale
    samples are counted; pairs of one clip count once in a standard error."""
    from jaxgenre.transfer import metrics
    rate = 22_050
    steady = 0.05 * np.random.default_rng(0).normal(size=3 * rate)
    assert abs(metrics.edge_burst_db(steady, len(steady), rate)) < 1.0
    burst = steady.copy()
    burst[:rate // 20] *= 16  # the first 50 ms 24 dB louder: that 100 ms frame 21 dB above
    assert metrics.edge_burst_db(burst, len(burst), rate) == pytest.approx(21.1, abs=1.0)
    assert metrics.edge_burst_db(burst, rate // 5, rate) == 0.0  # two frames: too short to say
    assert metrics.clipped_fraction(np.array([0.5, 1.0, -1.2, 0.9]), 4) == 0.5
    assert metrics.clipped_fraction(np.array([0.5, 1.0, -1.2, 0.9]), 1) == 0.0
    hits, clips = np.array([1.0] * 7 + [0.0] * 7), np.repeat([1, 2], 7)
    assert metrics.clip_standard_error(hits, clips) == pytest.approx(0.5)  # 2 clips, not 14
    assert metrics.clip_standard_error(hits[:7], clips[:7]) is None


def test_the_table_shows_standard_errors_and_the_normalised_style_gain():
    common = {"split": "test", "judge": "j", "judge_step": 1, "chance": 0.125,
              "ceiling_accuracy": 0.575, "num_pairs": 7, "num_clips": 1}
    results = {"eq": dict(common, method="eq", target_accuracy=0.393, target_accuracy_se=0.02),
               "gan": dict(common, method="gan", target_accuracy=0.484)}
    rows = {line.split(" | ")[0][2:]: line for line in report.markdown_table(results).splitlines()
            if line.startswith("| eq ") or line.startswith("| gan ")}
    assert "| 0.393 ± 0.020 | 0.00 |" in rows["eq"]
    assert "| 0.484 | 0.50 |" in rows["gan"]  # halfway from eq to the ceiling
    assert report.style_gain(results["gan"], None) is None


def test_the_listening_page_plays_every_methods_examples(tmp_path):
    """transfer_<split>.html: per clip its input and each method's output, every <audio> and
    <img> a file beside the page that decodes; another split's or judge's examples stay off."""
    import html.parser
    rng = np.random.default_rng(0)
    genres = ["Rock", "Pop", "Folk"]
    clip = (0.1 * rng.normal(size=8000)).astype(np.float32)
    for method, probs in (("identity", [0.7, 0.2, 0.1]), ("gan_x", [0.1, 0.8, 0.1])):
        examples = [evaluator.Example(t, 0, 1, clip, 0.5 * clip, np.array(probs, np.float32))
                    for t in (3, 5)]
        report.write_examples(examples, method, genres, 8000, str(tmp_path), "test", {"judge": "j"})
    report.write_examples([evaluator.Example(9, 2, 0, clip, clip)], "eq", genres, 8000,
                          str(tmp_path), "validation", {"judge": "j"})
    report.write_examples([evaluator.Example(7, 2, 0, clip, clip)], "eq", genres, 8000,
                          str(tmp_path), "test", {"judge": "another"})  # another judge's
    page = report.write_listening_page(str(tmp_path), "test", {"judge": "j"})
    assert page == str(tmp_path / "transfer_test.html")

    class Sources(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags = []

        def handle_starttag(self, tag, attrs):
            if tag in ("audio", "img"):
                self.tags.append((tag, dict(attrs)["src"]))
    parser = Sources()
    text = open(page).read()
    parser.feed(text)
    audio = [src for tag, src in parser.tags if tag == "audio"]
    assert len(audio) == 2 * (1 + 2) and len(parser.tags) == len(audio) + 4  # 2 inputs, 4 outputs
    for _, src in parser.tags:
        assert (tmp_path / src).is_file(), src
    for src in audio:
        assert len(soundfile.read(str(tmp_path / src))[0]) == 8000
    assert "Track 9" not in text and "Track 7" not in text and "Pop 0.80" in text
    assert text.index("identity") < text.index("gan_x")


def test_a_constant_tone_added_at_every_frame_shows_as_a_steady_tone():
    """The demo GAN's "to Rock" drew constant lines in a few mel bands across a whole song;
    a gain or an EQ moves a band's quiet and loud frames alike, so it is no tone."""
    from jaxgenre.audio import frontend
    from jaxgenre.transfer import metrics
    rate, n = 22_050, 2 * 22_050
    mesh = sharding.make_mesh()
    content = metrics.content_fn(frontend.MelConfig(n_fft=1024, hop_length=256, n_mels=64,
                                                    ref=1.0, top_db=None), mesh)
    rng = np.random.default_rng(0)
    # music-like: noise bursts with gaps, so each band has quiet frames
    envelope = np.repeat(np.where(rng.uniform(size=n // 2205 + 1) > 0.5, 1.0, 0.05), 2205)[:n]
    source = np.stack([0.2 * rng.normal(size=n) * envelope] * mesh.size).astype(np.float32)
    tone = 0.05 * np.sin(2 * np.pi * 3000 * np.arange(n) / rate).astype(np.float32)
    outputs = {"quieter": 0.5 * source, "with a tone": source + tone,
               "equalised": source + 3.0 * np.convolve(source[0], [0.5, 0.0, -0.5],
                                                       mode="same")[None]}
    lengths = sharding.from_host(np.full(mesh.size, n, np.int32), mesh)
    steady = {k: float(np.asarray(content(sharding.from_host(source, mesh),
                                          sharding.from_host(v, mesh), lengths)[2])[0])
              for k, v in outputs.items()}
    assert steady["with a tone"] > 20.0, steady
    assert abs(steady["quieter"]) < 0.5 and steady["equalised"] < 3.0, steady  # EQ: not a tone
    # a tone only past the clip's real end (its padding) is no band's floor
    half = sharding.from_host(np.full(mesh.size, n // 2, np.int32), mesh)
    late = source + np.where(np.arange(n) > n // 2 + 2048, tone, 0.0).astype(np.float32)
    padded_tone = float(np.asarray(content(sharding.from_host(source, mesh),
                                           sharding.from_host(late, mesh), half)[2])[0])
    assert abs(padded_tone) < 1.0, padded_tone


def test_an_ensemble_judge_averages_probabilities_joins_features_and_refuses_other_data():
    class Member:
        def __init__(self, workdir, probs, features, dataset="fma/small", rate=22_050):
            self.workdir, self.step, self.config = workdir, 7, None
            self.dataset, self.sample_rate, self.crop_samples = dataset, rate, 1000
            self.class_names, self._out = ["a", "b"], (np.asarray(probs), np.asarray(features))

        def check_labels(self, class_names, what):
            if list(class_names) != self.class_names:
                raise judge.JudgeError(f"labels differ from {what}")

        def __call__(self, audio, num_samples):
            return self._out

    a = Member("runs/a", [[0.9, 0.1]], [[1.0, 2.0]])
    b = Member("runs/b", [[0.3, 0.7]], [[3.0]])
    both = judge.Ensemble([a, b])
    probs, features = both(np.zeros((1, 10)), np.array([10]))
    np.testing.assert_allclose(probs, [[0.6, 0.4]])
    np.testing.assert_allclose(features, [[1.0, 2.0, 3.0]])
    assert both.workdir == "runs/a,runs/b" and both.step == [7, 7]
    with pytest.raises(judge.JudgeError, match="share one dataset"):
        judge.Ensemble([a, Member("runs/c", [[1, 0]], [[0]], rate=16_000)])
    other = Member("runs/d", [[1, 0]], [[0]])
    other.class_names = ["a", "c"]
    with pytest.raises(judge.JudgeError, match="labels differ"):
        judge.Ensemble([a, other])


def test_a_judge_the_method_was_selected_with_is_refused_whatever_the_working_directory(tmp_path):
    """The run's config names its classifiers relative to where it was trained (runs/...):
    judged from elsewhere, an ensemble holding one of them is still refused, before any work."""
    runs = tmp_path / "runs"
    gan_dir, used = runs / "stargan", runs / "val_classifier"
    for d in (gan_dir, used, runs / "judge"):
        d.mkdir(parents=True)
    config = th.gan_config("/nowhere")
    config.evals.val.classifier_workdir = "runs/val_classifier"
    (gan_dir / "config.json").write_text(json.dumps(config.to_dict()))
    code, log = _cli("--method", str(gan_dir), "--judge", f"{runs / 'judge'},{used}",
                     "--output_dir", str(tmp_path / "out"))
    assert code != 0 and f"The judge {used} was used to train or select" in log, log[-2000:]
    assert not (tmp_path / "out").exists()


def test_a_judge_of_the_loss_classifiers_family_is_warned_of(tmp_path):
    """A generator trained against an MFCC-CNN fools other MFCC-CNNs (on the dev set 0.724 under
    an ensemble holding one, 0.327 under its ResNet-18 alone): such a judge member is named in
    a warning, a member of another family is not; the loss classifier here is an ensemble
    whose second member is the MFCC-CNN."""
    from jaxgenre.configs import mfcc_cnn, mobilenet, resnet
    runs = tmp_path / "runs"
    for name, config in [("gan_mobilenet", mobilenet.get_config("demo")),
                         ("gan_classifier", mfcc_cnn.get_config("demo")),
                         ("judge_mfcc", mfcc_cnn.get_config("demo")),
                         ("judge_resnet", resnet.get_config())]:
        (runs / name).mkdir(parents=True)
        (runs / name / "config.json").write_text(json.dumps(config.to_dict()))
    gan_dir = runs / "stargan"
    gan_dir.mkdir()
    config = th.gan_config("/nowhere")
    config.gan.classifier_workdir = "runs/gan_mobilenet,runs/gan_classifier"
    (gan_dir / "config.json").write_text(json.dumps(config.to_dict()))
    code, log = _cli("--method", str(gan_dir), "--judge",
                     f"{runs / 'judge_mfcc'},{runs / 'judge_resnet'}",
                     "--output_dir", str(tmp_path / "out"))
    warned = [line for line in log.splitlines() if "as is" in line and "loss classifier" in line]
    assert len(warned) == 1 and "judge_mfcc is a mfcc_cnn" in warned[0], log[-2000:]
    assert code != 0 and "dataset_info.json not found" in log  # then refused: not whole runs
