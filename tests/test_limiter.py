"""The output's causal limiter (canora.dsp.limiter): no sample at full scale, quiet audio untouched."""

from __future__ import annotations

import numpy as np

from canora.dsp.limiter import CEILING, StreamingLimiter


def test_loud_blocks_stay_under_the_ceiling_and_quiet_ones_pass_unchanged():
    rng = np.random.default_rng(0)
    lim = StreamingLimiter(48000)
    quiet = (0.3 * np.sin(np.arange(4800) / 7)).astype(np.float32)
    np.testing.assert_array_equal(lim.process(quiet), quiet)
    assert lim.min_gain == 1.0
    for n in (1, 63, 256, 1000, 5016):  # any block size, the gain carried across them
        x = (rng.standard_normal(n) * 1.5).astype(np.float32)
        y = lim.process(x)
        assert np.abs(y).max() <= CEILING and y.dtype == np.float32 and len(y) == n
    assert lim.min_gain < 1.0


def test_the_gain_recovers_after_a_peak():
    lim = StreamingLimiter(48000, release_ms=80.0)
    loud = np.full(256, 2.0, np.float32)
    lim.process(loud)
    after = lim.process(np.full(48000, 0.5, np.float32))
    assert after[0] < 0.5 and after[-1] == np.float32(0.5)  # down at first, back to unity within the release
    assert np.all(np.diff(after) >= -1e-7)  # rising back smoothly, never pumping down again
