"""The DSP floor: mel spectrograms, one STFT per waveform, pitch, loudness, content, spectral utilities,
slicing, envelopes and signal metrics. It imports no model."""
