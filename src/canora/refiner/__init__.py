"""Diffusion Mel Refiner: conditional diffusion in mel space, its noise schedule and samplers."""
