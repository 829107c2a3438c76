"""Audio in: the TFDS dataset -> tf.data -> per-host batches -> global `jax.Array`s
(`input_pipeline`), and reading a user's own audio files (`audio_files`)."""
