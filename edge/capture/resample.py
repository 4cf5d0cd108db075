"""Streaming sample-rate conversion in numpy (44.1/48 kHz microphones -> 16 kHz).

A windowed-sinc low-pass at the source rate (cut-off 0.45 of the target rate) followed
by linear interpolation at exact rational positions. Output sample j sits at source
position j * rate_in / rate_out computed in integers, so the output does not depend on
how the input was cut into chunks.
"""
from __future__ import annotations

import numpy as np

TAPS = 63


def _lowpass(rate_in: int, rate_out: int, taps: int = TAPS) -> np.ndarray:
    if rate_out >= rate_in:
        return np.ones(1, np.float32)  # upsampling: interpolation alone
    cutoff = 0.45 * rate_out / rate_in  # cycles per source sample
    n = np.arange(taps) - (taps - 1) / 2.0
    kernel = 2.0 * cutoff * np.sinc(2.0 * cutoff * n) * np.hamming(taps)
    return (kernel / kernel.sum()).astype(np.float32)


class Resampler:
    """Convert a mono float stream from `rate_in` to `rate_out` Hz, chunk by chunk."""

    def __init__(self, rate_in: int, rate_out: int = 16000):
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(f"sample rates must be positive, got {rate_in} -> {rate_out}")
        self.rate_in = int(rate_in)
        self.rate_out = int(rate_out)
        self.kernel = _lowpass(self.rate_in, self.rate_out)
        self._history = np.zeros(len(self.kernel) - 1, np.float32)
        self._filtered = np.zeros(0, np.float32)
        self._offset = 0  # source index of self._filtered[0]
        self._produced = 0  # output samples produced so far
        self._delay = (len(self.kernel) - 1) // 2  # filter group delay in source samples

    def process(self, samples: np.ndarray, final: bool = False) -> np.ndarray:
        """Resampled float32 output for the next input chunk (may be empty).

        final=True flushes the filter tail (end of stream).
        """
        x = np.asarray(samples, np.float32).reshape(-1)
        if self.rate_in == self.rate_out:
            return x.copy()
        if final and self._delay:
            x = np.concatenate([x, np.zeros(self._delay, np.float32)])
        full = np.concatenate([self._history, x])
        if len(self.kernel) > 1:
            self._history = full[len(full) - (len(self.kernel) - 1):]
            filtered = np.convolve(full, self.kernel, mode="valid").astype(np.float32)
        else:
            filtered = x
        # Skip the filter's group delay once, at the start of the stream.
        buffer = np.concatenate([self._filtered, filtered])
        start = self._offset
        end = start + len(buffer)  # source positions [start, end) are available
        # Output j needs source positions floor(p) and floor(p) + 1, p = j * in / out + delay.
        j = self._produced
        outputs = []
        limit_j = ((end - 1 - self._delay) * self.rate_out) // self.rate_in  # last j with floor(p)+1 < end
        if final:
            limit_j = ((end - self._delay) * self.rate_out + self.rate_in - 1) // self.rate_in - 1
        if limit_j >= j:
            js = np.arange(j, limit_j + 1, dtype=np.int64)
            num = js * self.rate_in
            i0 = num // self.rate_out + self._delay
            frac = ((num % self.rate_out) / float(self.rate_out)).astype(np.float32)
            i1 = np.minimum(i0 + 1, end - 1)
            outputs = buffer[i0 - start] * (1.0 - frac) + buffer[i1 - start] * frac
            self._produced = int(limit_j + 1)
        next_needed = (self._produced * self.rate_in) // self.rate_out + self._delay
        keep_from = max(start, min(next_needed, end))
        self._filtered = buffer[keep_from - start:]
        self._offset = keep_from
        if len(outputs) == 0:
            return np.zeros(0, np.float32)
        return np.asarray(outputs, np.float32)
