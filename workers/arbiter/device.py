"""What the arbiter can see of the device: its size and the memory nobody leased.

The arbiter never imports torch. A ``DeviceView`` answers from NVML, from readings that workers
report (``DeviceReading``), from host memory on CPU-only machines, or from a simulation that the
CPU-only tests and ``bench/arbiter.py`` drive.

"Used outside" means every byte on the device that no lease covers: other programs (a browser
holds gigabytes) and each Hearth process's own CUDA context.
"""

from __future__ import annotations

import logging
import os
import time
from abc import ABC, abstractmethod
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

from workers.arbiter.messages import DeviceReading
from workers.arbiter.units import format_bytes, parse_bytes

log = logging.getLogger(__name__)

Clock = Callable[[], float]
DEFAULT_READING_LAG_S = 1.5
"""Free-memory readings trail an unload by up to this long (measured with NVML and mem_get_info)."""


@dataclass(frozen=True, slots=True)
class ProcessReading:
    """Device memory one process was seen to hold, and when that was true."""

    taken_at: float
    used: int


class DeviceView(ABC):
    """The arbiter's window on one device. Subclasses answer from NVML, readings or a simulation."""

    reading_lag_s: float = DEFAULT_READING_LAG_S
    """How long after a release the device may still report the memory as used."""

    @abstractmethod
    def total(self) -> int:
        """Device size in bytes."""

    @abstractmethod
    def used_outside(self) -> int:
        """Bytes in use that no lease covers: other programs and per-process contexts."""

    @abstractmethod
    def describe(self) -> str:
        """One line for status output, e.g. "simulated 8.0 GiB"."""

    def ready(self) -> bool:
        """False until the view has a first reading (then requests wait rather than be refused)."""
        return True

    def process_reading(self, pid: int) -> ProcessReading | None:
        """The latest reading of what ``pid`` holds on the device, if the view knows it."""
        return None

    def observe(self, pid: int, reading: DeviceReading) -> None:
        """A worker reported a real device reading."""
        return None  # optional hook: most views need nothing here

    def track_pid(self, pid: int) -> None:
        """A Hearth process connected (it may hold a device context)."""
        return None  # optional hook: most views need nothing here

    def forget_pid(self, pid: int) -> None:
        """A Hearth process disconnected or was killed."""
        return None  # optional hook: most views need nothing here


# --------------------------------------------------------------------------- simulation


class _Lagged:
    """A value whose readings trail reality by ``lag`` seconds."""

    def __init__(self, value: int, now: float):
        self._times = [now]
        self._values = [value]

    def set(self, value: int, now: float) -> None:
        self._times.append(now)
        self._values.append(value)

    def current(self) -> int:
        return self._values[-1]

    def read(self, at: float) -> int:
        index = bisect_right(self._times, at) - 1
        # Keep history short: nothing before the entry in use can be read again.
        if index > 64:
            del self._times[: index - 1], self._values[: index - 1]
            index = 1
        return self._values[max(index, 0)]


class SimulatedDevice(DeviceView):
    """A byte budget with per-process context cost, lagged readings and a foreign process.

    Tests and benchmarks play the workers: ``allocate``/``free`` change what a process really
    holds, ``grow_foreign`` is another program taking memory. Readings (``used_outside``,
    ``process_reading``) show the state as it was ``reading_lag_s`` seconds ago.

    Like PyTorch's caching allocator, a process *reserves* device memory for its tensors and
    keeps it reserved after ``free(..., keep_cached=True)`` until ``empty_cache``: the device
    and its readings show the reserved bytes, not the allocated ones.
    """

    def __init__(
        self,
        total_bytes: int,
        *,
        context_bytes_per_process: int = 0,
        reading_lag_s: float = 0.0,
        foreign_bytes: int = 0,
        clock: Clock = time.monotonic,
    ):
        self._total = total_bytes
        self.context_bytes_per_process = context_bytes_per_process
        self.reading_lag_s = reading_lag_s
        self._clock = clock
        self._foreign = _Lagged(foreign_bytes, clock())
        self._contexts = _Lagged(0, clock())
        self._tracked: set[int] = set()
        self._reserved: dict[int, _Lagged] = {}
        self._allocated: dict[int, int] = {}

    def total(self) -> int:
        return self._total

    def used_outside(self) -> int:
        at = self._clock() - self.reading_lag_s
        return self._foreign.read(at) + self._contexts.read(at)

    def describe(self) -> str:
        return f"simulated {format_bytes(self._total)}"

    def process_reading(self, pid: int) -> ProcessReading | None:
        series = self._reserved.get(pid)
        if series is None:
            return None
        at = self._clock() - self.reading_lag_s
        return ProcessReading(taken_at=at, used=series.read(at))

    def track_pid(self, pid: int) -> None:
        self._tracked.add(pid)
        self._contexts.set(len(self._tracked) * self.context_bytes_per_process, self._clock())

    def forget_pid(self, pid: int) -> None:
        self._tracked.discard(pid)
        self._contexts.set(len(self._tracked) * self.context_bytes_per_process, self._clock())
        self.set_allocated(pid, 0)

    # What the simulated world really does.

    def grow_foreign(self, delta_bytes: int) -> None:
        """Another program takes (or, negative, gives back) device memory."""
        self._foreign.set(max(0, self._foreign.current() + delta_bytes), self._clock())

    def set_allocated(self, pid: int, nbytes: int) -> None:
        """What process ``pid`` really holds from now on (allocated and reserved alike)."""
        self._allocated[pid] = nbytes
        self._set_reserved(pid, nbytes)

    def _set_reserved(self, pid: int, nbytes: int) -> None:
        series = self._reserved.setdefault(pid, _Lagged(0, self._clock()))
        series.set(nbytes, self._clock())

    def allocate(self, pid: int, nbytes: int) -> None:
        self._allocated[pid] = self.allocated(pid) + nbytes
        if self._allocated[pid] > self.reserved(pid):  # the allocator asks the driver for more
            self._set_reserved(pid, self._allocated[pid])

    def free(self, pid: int, nbytes: int, *, keep_cached: bool = False) -> None:
        """Tensors freed; the memory goes back to the driver unless the allocator keeps it cached."""
        self._allocated[pid] = max(0, self.allocated(pid) - nbytes)
        if not keep_cached:
            self.empty_cache(pid)

    def empty_cache(self, pid: int) -> None:
        """``torch.cuda.empty_cache()`` in process ``pid``: cached blocks go back to the driver."""
        self._set_reserved(pid, self.allocated(pid))

    def allocated(self, pid: int) -> int:
        return self._allocated.get(pid, 0)

    def reserved(self, pid: int) -> int:
        series = self._reserved.get(pid)
        return series.current() if series else 0

    def really_used(self) -> int:
        """The true device usage now (for asserting that nothing ever overflowed)."""
        reserved = sum(series.current() for series in self._reserved.values())
        return self._foreign.current() + self._contexts.current() + reserved


# --------------------------------------------------------------------------- CUDA


class CudaDevice(DeviceView):
    """The real GPU: NVML when ``pynvml`` is importable, else the latest worker readings.

    Without NVML the arbiter knows nothing until a worker reports a ``DeviceReading``; until
    then requests wait (they are never refused for want of a reading).
    """

    def __init__(self, index: int = 0, *, clock: Clock = time.monotonic):
        self._clock = clock
        self._readings: dict[int, tuple[float, DeviceReading]] = {}
        self._nvml_handle = self._open_nvml(index)

    @staticmethod
    def _open_nvml(index: int):
        try:
            import pynvml  # optional: not a Hearth dependency
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
            return pynvml.nvmlDeviceGetHandleByIndex(index)
        except pynvml.NVMLError as exc:
            log.warning("NVML unavailable (%s); using worker readings", exc)
            return None

    def _nvml_info(self):
        import pynvml

        return pynvml.nvmlDeviceGetMemoryInfo(self._nvml_handle)

    def _latest(self) -> DeviceReading | None:
        if not self._readings:
            return None
        return max(self._readings.values(), key=lambda item: item[0])[1]

    def _hearth_used(self) -> int:
        return sum(reading.used_by_hearth for _, reading in self._readings.values())

    def ready(self) -> bool:
        return self._nvml_handle is not None or bool(self._readings)

    def total(self) -> int:
        if self._nvml_handle is not None:
            return int(self._nvml_info().total)
        latest = self._latest()
        return latest.total if latest else 0

    def used_outside(self) -> int:
        if self._nvml_handle is not None:
            info = self._nvml_info()
            return max(0, int(info.total - info.free) - self._hearth_used())
        latest = self._latest()
        if latest is None:
            return 0
        return max(0, latest.total - latest.free - self._hearth_used())

    def describe(self) -> str:
        source = "NVML" if self._nvml_handle is not None else "worker readings"
        return f"CUDA {format_bytes(self.total())} ({source})"

    def process_reading(self, pid: int) -> ProcessReading | None:
        item = self._readings.get(pid)
        return ProcessReading(taken_at=item[0], used=item[1].used_by_hearth) if item else None

    def observe(self, pid: int, reading: DeviceReading) -> None:
        self._readings[pid] = (self._clock(), reading)

    def forget_pid(self, pid: int) -> None:
        self._readings.pop(pid, None)


# --------------------------------------------------------------------------- host memory


class HostMemoryDevice(DeviceView):
    """CPU-only machines: the "device" is host RAM, budgeted from psutil's available memory.

    Memory held by Hearth's own processes (their resident set) is not counted as outside.
    """

    reading_lag_s = 0.5

    def __init__(self, *, refresh_s: float = 1.0, clock: Clock = time.monotonic):
        import psutil

        self._psutil = psutil
        self._refresh_s = refresh_s
        self._clock = clock
        self._pids: set[int] = set()
        self._cached_at = float("-inf")
        self._total = 0
        self._outside = 0

    def _refresh(self) -> None:
        if self._clock() - self._cached_at < self._refresh_s:
            return
        memory = self._psutil.virtual_memory()
        self._total = int(memory.total)
        self._outside = max(0, int(memory.total - memory.available) - self._hearth_rss())
        self._cached_at = self._clock()

    def _hearth_rss(self) -> int:
        rss = 0
        for pid in list(self._pids):
            try:
                rss += self._psutil.Process(pid).memory_info().rss
            except self._psutil.Error:
                self._pids.discard(pid)
        return rss

    def total(self) -> int:
        self._refresh()
        return self._total

    def used_outside(self) -> int:
        self._refresh()
        return self._outside

    def describe(self) -> str:
        return f"host memory {format_bytes(self.total())} (no GPU)"

    def track_pid(self, pid: int) -> None:
        self._pids.add(pid)

    def forget_pid(self, pid: int) -> None:
        self._pids.discard(pid)


# --------------------------------------------------------------------------- choice


def parse_simulated(spec: str, *, clock: Clock = time.monotonic) -> SimulatedDevice:
    """``sim:8GiB`` or ``sim:8GiB,lag=0.5,ctx=300MiB,foreign=1GiB``."""
    body = spec.split(":", 1)[1] if ":" in spec else ""
    size, *options = [part.strip() for part in body.split(",")] if body else ["8GiB"]
    kwargs: dict = {}
    for option in options:
        key, _, value = option.partition("=")
        if key == "lag":
            kwargs["reading_lag_s"] = float(value)
        elif key == "ctx":
            kwargs["context_bytes_per_process"] = parse_bytes(value)
        elif key == "foreign":
            kwargs["foreign_bytes"] = parse_bytes(value)
        else:
            raise ValueError(f"unknown simulated-device option {key!r} in {spec!r} (use lag, ctx, foreign)")
    return SimulatedDevice(parse_bytes(size), clock=clock, **kwargs)


def _cuda_present() -> bool:
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def device_from_env(spec: str | None = None) -> DeviceView:
    """Choose the device view from ``HEARTH_ARBITER_DEVICE``: ``sim:SIZE[,...]``, ``cuda``, ``host``.

    The default (empty or ``auto``) is ``cuda`` where an NVIDIA driver is present, else ``host``.
    """
    spec = (spec if spec is not None else os.environ.get("HEARTH_ARBITER_DEVICE", "")).strip()
    if spec.startswith("sim"):
        return parse_simulated(spec)
    if spec == "cuda" or (spec in ("", "auto") and _cuda_present()):
        return CudaDevice()
    if spec in ("host", "", "auto"):
        return HostMemoryDevice()
    raise ValueError(f"HEARTH_ARBITER_DEVICE={spec!r}: use sim:8GiB, cuda, host or auto")
