"""A source that fails on purpose, for the retry tests (imported by Ray workers through PYTHONPATH)."""

from __future__ import annotations

import os

from prep.sources.image_dir import ImageDirSource


class FlakySource(ImageDirSource):
    """Reading `fail_name` raises OSError the first `failures` times (counted in files, across processes)."""

    def __init__(self, image_dir: str, fail_name: str, counter_dir: str, failures: int) -> None:
        super().__init__(image_dir)
        self.fail_name = fail_name
        self.counter_dir = counter_dir
        self.failures = failures

    def read_stamped(self, ref: str):
        if ref == self.fail_name:
            attempts = len(os.listdir(self.counter_dir))
            if attempts < self.failures:
                open(os.path.join(self.counter_dir, f"attempt-{attempts}"), "w").close()
                raise OSError(f"simulated storage outage reading {ref} (attempt {attempts + 1})")
        return super().read_stamped(ref)
