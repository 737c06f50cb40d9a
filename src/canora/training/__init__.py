"""Training: one loop (:mod:`canora.training.loop`) and its tasks: the refiner, the HiFi-GAN and the NSF vocoder."""
