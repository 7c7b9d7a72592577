"""One training session of a run: from the typed request (start) to `train(config, run_dir)`
(train), resuming (resume), its summary (summary) and its Keras callbacks (callbacks,
depth_signal).
"""
