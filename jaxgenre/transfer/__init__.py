"""Genre style transfer: the methods (trivial baselines first, a trained generator run), the
content metrics, and the evaluator that ranks them all under one genre judge
(`inference.judge`), with its report (`python -m jaxgenre.evaluate_transfer`)."""
