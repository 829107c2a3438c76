"""Log-mel -> audio: the fixed-reference frontend, STFT pair and Griffin-Lim against librosa, the
level coming back, and sharding without a batch all-gather."""
import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from jaxgenre.audio import frontend, vocoder
from jaxgenre.audio.chroma import chroma_similarity
from jaxgenre.core import sharding
from jaxgenre.tasks import gan_losses
from tfds_fma.fma import demo

CFG = frontend.MelConfig(n_fft=1024, hop_length=256, n_mels=96, ref=1.0)


@pytest.fixture(scope="module")
def music():
    """Two 3 s synthetic clips (chords and drums), float32 in [-1, 1], at -6 dB."""
    rng = np.random.default_rng(5)
    return 0.5 * np.stack([demo.synthesize(g, 3.0, 22050, rng) for g in ("Rock", "Folk")])


def _sc(magnitude, audio):
    """Spectral convergence of `audio` against the linear magnitude [F, T]."""
    estimate = np.abs(librosa.stft(audio, n_fft=CFG.n_fft, hop_length=CFG.hop_length,
                                   pad_mode="constant"))
    return np.linalg.norm(magnitude - estimate) / np.linalg.norm(magnitude)


def test_fixed_reference_log_mel_matches_librosa_and_keeps_the_level(music):
    db = np.asarray(frontend.log_mel(jnp.asarray(music * 32768), CFG))
    quieter = np.asarray(frontend.log_mel(jnp.asarray(music * 0.1 * 32768), CFG))
    for i, clip in enumerate(music):
        mel = librosa.feature.melspectrogram(y=clip, sr=22050, n_fft=1024, hop_length=256, n_mels=96)
        assert np.abs(db[i] - librosa.power_to_db(mel, ref=1.0, top_db=80.0).T).max() <= 0.01
    assert abs(np.median(db - quieter) - 20.0) < 0.01  # -20 dB of signal is -20 dB of log-mel
    per_clip = np.asarray(frontend.log_mel(jnp.asarray(music * 32768), frontend.MelConfig(
        n_fft=1024, hop_length=256, n_mels=96)))
    assert np.allclose(per_clip.max(axis=(1, 2)), 0.0)  # the classifiers' default is unchanged


def test_stft_and_istft_match_librosa(music):
    spec = np.asarray(frontend.stft(jnp.asarray(music), CFG))
    ref = librosa.stft(music[0], n_fft=1024, hop_length=256, pad_mode="constant")
    assert np.abs(spec[0].T - ref).max() <= 1e-4 * np.abs(ref).max()
    back = np.asarray(vocoder.istft(jnp.asarray(spec), CFG, music.shape[1]))
    assert np.abs(back - music).max() <= 1e-5


def test_griffin_lim_is_librosas_update(music):
    """From the same initial phase (all ones), ours follows librosa's fast Griffin-Lim."""
    magnitude = np.abs(librosa.stft(music[0], n_fft=1024, hop_length=256, pad_mode="constant"))
    ref = librosa.griffinlim(magnitude, n_iter=16, hop_length=256, n_fft=1024, init=None,
                             length=music.shape[1], momentum=0.99)
    ours = vocoder.griffin_lim(jnp.asarray(magnitude.T[None]), CFG,
                               vocoder.VocoderConfig(n_iter=16), music.shape[1],
                               jnp.ones((1,) + magnitude.T.shape, jnp.complex64))
    assert np.abs(np.asarray(ours[0]) - ref).max() <= 1e-3 * np.abs(ref).max()


def test_whole_path_is_as_good_as_librosa_mel_to_audio_and_keeps_loudness(music):
    db = frontend.log_mel(jnp.asarray(music * 32768), CFG)
    ours = np.asarray(vocoder.log_mel_to_audio(db, CFG, vocoder.VocoderConfig(), music.shape[1],
                                               key=jax.random.key(0)))
    from_source = np.asarray(vocoder.log_mel_to_audio(db, CFG, vocoder.VocoderConfig(),
                                                      music.shape[1], phase_audio=jnp.asarray(music)))
    for i, clip in enumerate(music):
        magnitude = np.abs(librosa.stft(clip, n_fft=1024, hop_length=256, pad_mode="constant"))
        mel = librosa.feature.melspectrogram(y=clip, sr=22050, n_fft=1024, hop_length=256, n_mels=96)
        theirs = librosa.feature.inverse.mel_to_audio(mel, sr=22050, n_fft=1024, hop_length=256,
                                                      length=len(clip))
        assert _sc(magnitude, ours[i]) <= _sc(magnitude, theirs) + 0.02
        assert _sc(magnitude, from_source[i]) <= _sc(magnitude, ours[i]) + 0.02
        level_db = 20 * np.log10(np.sqrt(np.mean(ours[i] ** 2)) / np.sqrt(np.mean(clip ** 2)))
        assert abs(level_db) < 1.0


def test_chroma_kept_estimates_what_the_vocoder_keeps(music):
    """The GAN's harmony term, computed from the input's spectrum and the edit alone, against the
    chroma similarity measured on the vocoded output (as the transfer evaluator measures it)."""
    x = jnp.asarray(music)
    power = frontend.power_spectrogram(x * 32768, CFG)
    db = frontend.compress(power, CFG)
    assert np.abs(np.asarray(db - frontend.log_mel(x * 32768, CFG))).max() <= 1e-4
    bands = np.arange(CFG.n_mels)
    smooth = np.random.default_rng(0).normal(0, 8, (db.shape[1] // 8 + 1, CFG.n_mels // 8))
    edits = {"none": np.zeros(CFG.n_mels), "bass cut": np.where(bands < 24, -15.0, 0.0),
             "treble boost": np.where(bands > 48, 12.0, 0.0),
             "smooth": np.repeat(np.repeat(smooth, 8, 0), 8, 1)[:db.shape[1]]}
    chroma_fb = frontend.chroma_filterbank(CFG)

    def chroma(audio):
        return jnp.abs(frontend.stft(audio, CFG)) ** 2 @ chroma_fb

    measured = {}
    for name, edit in edits.items():
        gain = jnp.broadcast_to(jnp.asarray(edit, jnp.float32), db.shape)
        estimate = np.asarray(gan_losses.chroma_kept(power, gain, CFG))
        out = vocoder.log_mel_to_audio(db + gain, CFG, vocoder.VocoderConfig(), music.shape[1],
                                       phase_audio=x)
        measured[name] = np.asarray(chroma_similarity(chroma(x), chroma(out)))
        assert np.abs(estimate - measured[name]).max() <= 0.02, (name, estimate, measured[name])
    assert measured["none"].min() >= 0.98
    assert measured["bass cut"].min() <= 0.95  # the edits do move chroma: the check can fail
    grads = jax.grad(lambda g: gan_losses.chroma_kept(power * 0, g, CFG).sum())(
        jnp.zeros_like(db))
    assert np.isfinite(np.asarray(grads)).all()  # silence: a finite gradient, not NaN


def test_chroma_kept_is_exact_and_finite_for_huge_boosts(music):
    """A diverging generator's edge frames (+200 to +390 dB in some bands): the harmony term
    equals a float64 computation of the same formula, with a finite gradient. Scaled naively,
    float32 gave a cosine of 0 there from 160 dB and NaN from 350 dB."""
    power = frontend.power_spectrogram(jnp.asarray(music) * 32768, CFG)
    chroma_fb = frontend.chroma_filterbank(CFG).astype(np.float64)
    before = np.asarray(power, np.float64) @ chroma_fb
    bins = gan_losses.band_to_bin(CFG).astype(np.float64)
    for boost in (0.0, 100.0, 200.0, 390.0):
        gain = jnp.zeros((*power.shape[:2], CFG.n_mels)).at[:, -8:, 60:].set(boost)
        after = np.asarray(power, np.float64) * 10.0 ** (np.asarray(gain, np.float64) @ bins
                                                          / 10.0) @ chroma_fb
        cosine = np.sum(before * after, -1) / (np.linalg.norm(before, axis=-1)
                                               * np.linalg.norm(after, axis=-1))
        estimate = np.asarray(gan_losses.chroma_kept(power, gain, CFG))
        np.testing.assert_allclose(estimate, cosine.mean(axis=1), atol=1e-5, err_msg=str(boost))
        grads = jax.grad(lambda g: gan_losses.chroma_kept(power, g, CFG).sum())(gain)
        assert np.isfinite(np.asarray(grads)).all(), boost


def test_sharded_vocoder_equals_unsharded_without_all_gather(music):
    mesh = sharding.make_mesh()
    audio = jnp.asarray(np.tile(music, (4, 1)))  # 8 clips over 8 devices
    db = frontend.log_mel(audio * 32768, CFG)
    fn = jax.jit(lambda d, k: vocoder.log_mel_to_audio(d, CFG, vocoder.VocoderConfig(n_iter=4),
                                                       audio.shape[1], key=k, mesh=mesh))
    sharded = fn(jax.device_put(db, sharding.batch_sharding(mesh)), jax.random.key(1))
    plain = vocoder.log_mel_to_audio(db, CFG, vocoder.VocoderConfig(n_iter=4), audio.shape[1],
                                     key=jax.random.key(1))
    assert np.abs(np.asarray(sharded) - np.asarray(plain)).max() <= 1e-4
    hlo = fn.lower(jax.ShapeDtypeStruct(db.shape, db.dtype, sharding=sharding.batch_sharding(mesh)),
                   jax.random.key(1)).compile().as_text()
    assert "all-gather" not in hlo and "all-to-all" not in hlo


def test_wrong_length_is_refused():
    with pytest.raises(ValueError, match="frames cannot become"):
        vocoder.log_mel_to_audio(jnp.zeros((1, 10, 96)), CFG, vocoder.VocoderConfig(), 22050,
                                 key=jax.random.key(0))
