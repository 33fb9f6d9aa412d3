"""The papers' analyses of trained and toy classifiers: the spiral of ICML Figure 1 (:mod:`analyses.spiral`),
the flattening measurements of §3 (:mod:`analyses.flattening`) and the evaluation of a trained run's
calibration, robustness and features (:mod:`analyses.evaluate`). Each is a command: ``python -m analyses.NAME``."""
