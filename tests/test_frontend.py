"""The on-device log-mel / MFCC: parity with librosa 0.11 and no batch all-gather when sharded."""
import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from jaxgenre.audio import frontend
from jaxgenre.core import sharding
from tfds_fma.fma import demo


@pytest.fixture(scope="module")
def music():
    """Four 5 s clips of different synthetic styles (chords, drums, noise), int16."""
    rng = np.random.default_rng(3)
    x = np.stack([demo.synthesize(g, 5.0, 22050, rng)
                  for g in ("Rock", "Experimental", "Instrumental", "Hip-Hop")])
    return np.round(x * 32767).astype(np.int16)


@pytest.mark.parametrize("dft", ["fft", "matmul"])
@pytest.mark.parametrize("n_fft,hop,n_mels,fmax", [(2048, 512, 128, None), (1024, 320, 96, 8000.0)])
def test_log_mel_and_mfcc_match_librosa(music, dft, n_fft, hop, n_mels, fmax):
    cfg = frontend.MelConfig(n_fft=n_fft, hop_length=hop, n_mels=n_mels, fmin=20.0, fmax=fmax,
                             dft=dft, precision="highest")
    ours = np.asarray(jax.jit(lambda a: frontend.log_mel(a, cfg))(music))
    ours_mfcc = np.asarray(jax.jit(lambda s: frontend.mfcc(s, 20))(ours))
    for i, clip in enumerate(music.astype(np.float32) / 32768):
        mel = librosa.feature.melspectrogram(y=clip, sr=22050, n_fft=n_fft, hop_length=hop,
                                             n_mels=n_mels, fmin=20.0, fmax=fmax)
        ref = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
        assert ours[i].shape == ref.T.shape
        assert np.abs(ours[i] - ref.T).max() <= 0.01
        ref_mfcc = librosa.feature.mfcc(S=ref, n_mfcc=20)
        # relative to the largest coefficient: elementwise ratios of near-zero values are noise
        assert np.abs(ours_mfcc[i] - ref_mfcc.T).max() / np.abs(ref_mfcc).max() <= 1e-3


def test_musicnn_compression_matches_its_extractor(music):
    """musicnn's input: librosa's mel power at 16 kHz, n_fft 512, hop 256, 96 bands, then
    log10(10000 x + 1) (its extractor.py)."""
    clips = librosa.resample(music.astype(np.float32) / 32768, orig_sr=22050, target_sr=16000)
    cfg = frontend.MelConfig(sample_rate=16000, n_fft=512, hop_length=256, n_mels=96,
                             compress="log10_1p")
    ours = np.asarray(jax.jit(lambda a: frontend.log_mel(a, cfg))(clips * 32768))
    for i, clip in enumerate(clips):
        mel = librosa.feature.melspectrogram(y=clip, sr=16000, n_fft=512, hop_length=256, n_mels=96)
        ref = np.log10(10000 * mel + 1).T
        assert ours[i].shape == ref.shape
        assert np.abs(ours[i] - ref).max() <= 1e-3 * max(1.0, np.abs(ref).max())


def _hlo(fn, mesh):
    x = jax.ShapeDtypeStruct((16, 22050), jnp.int16, sharding=sharding.batch_sharding(mesh))
    return jax.jit(fn, out_shardings=sharding.batch_sharding(mesh)).lower(x).compile().as_text()


@pytest.mark.parametrize("dft", ["fft", "matmul"])
def test_sharded_frontend_has_no_all_gather(dft):
    assert jax.device_count() == 8
    mesh = sharding.make_mesh()
    cfg = frontend.MelConfig(dft=dft)
    hlo = _hlo(lambda a: frontend.log_mel(a, cfg, mesh=mesh), mesh)
    assert "all-gather" not in hlo and "all-to-all" not in hlo
    assert "fft" in hlo.lower() if dft == "fft" else "dot(" in hlo


def test_the_hlo_check_can_fail():
    """jnp.fft on a batch-sharded input does gather the batch (jax issue 15680)."""
    mesh = sharding.make_mesh()
    hlo = _hlo(lambda a: jnp.abs(jnp.fft.rfft(a.astype(jnp.float32).reshape(16, -1, 2205))), mesh)
    assert "all-gather" in hlo or "all-to-all" in hlo
