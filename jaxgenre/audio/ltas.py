"""Long-term average spectrum (LTAS): a clip's mean power per band over time. The eq baseline
(`jaxgenre.transfer.methods.Eq`) and the StarGAN's eq prior (`models.stargan.Generator`,
`model.eq_prior`) move a clip's LTAS to its target genre's mean (`data.spectra.genre_ltas`).
"""
import jax
import jax.numpy as jnp


def ltas_db(db: jax.Array) -> jax.Array:
    """Log-mel dB [B, T, M] -> dB [B, M] of the frames' mean power, float32, as a logsumexp:
    no overflow at any level (a generator's raw output can be hundreds of dB)."""
    k = jnp.log(10.0) / 10.0  # dB -> natural log of power
    return (jax.nn.logsumexp(k * db.astype(jnp.float32), axis=1) - jnp.log(db.shape[1])) / k
