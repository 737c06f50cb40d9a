"""canora: singing voice conversion with HiFi-GAN-exact mels, a diffusion mel refiner and HiFi-GAN vocoders."""

__version__ = "0.3.0"
