"""A Kubernetes secret volume, written the way the kubelet writes it (no Kubernetes needed).

The kubelet's atomic writer (and the Secrets Store CSI driver's copy of it) never rewrites
a file in place: each update is a new ``..<timestamp>`` directory, a ``..data_tmp`` link to it
renamed over ``..data`` in one step, the visible names linked to ``..data/<name>`` once, and
the previous directory removed. The volume's root is a tmpfs mounted ``drwxrwxrwt``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import time
from pathlib import Path


class Kubelet:
    """One volume at ``volume``; :meth:`write` replaces its whole content as the kubelet does."""

    def __init__(self, volume: Path) -> None:
        volume.mkdir(parents=True)
        volume.chmod(0o1777)  # a tmpfs mount's root: drwxrwxrwt root
        self.volume = volume
        self._stamps = itertools.count()
        self._current: Path | None = None

    def write(self, files: dict[str, str]) -> None:
        stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + f"{next(self._stamps):09d}"
        new = self.volume / stamp
        new.mkdir(mode=0o755)
        for name, text in files.items():
            (new / name).write_text(text)
            (new / name).chmod(0o644)
        staged = self.volume / "..data_tmp"
        staged.symlink_to(stamp)
        os.rename(staged, self.volume / "..data")
        for name in files:
            visible = self.volume / name
            if not visible.is_symlink():
                visible.symlink_to(f"..data/{name}")
        if self._current is not None:
            shutil.rmtree(self._current)
        self._current = new
