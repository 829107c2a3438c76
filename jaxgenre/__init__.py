"""jaxgenre: music genre classification and style transfer in JAX/Flax."""
