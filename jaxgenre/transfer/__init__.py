"""Genre style transfer: the methods (trivial baselines first), the genre judge and the evaluator
that ranks them all the same way (`python -m jaxgenre.evaluate_transfer`)."""
