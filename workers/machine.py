"""What this machine offers, read without torch (the GUI asks before any worker is up).

The GPU comes from ``nvidia-smi`` when the NVIDIA driver is installed; memory from psutil.
The memory profile names the arbiter tiers a job will usually get on such a machine."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True, slots=True)
class MachineInfo:
    gpu_name: str
    """Empty when no NVIDIA GPU is visible."""
    vram_bytes: int
    ram_bytes: int
    cpus: int


@dataclass(frozen=True, slots=True)
class MemoryProfile:
    name: str
    summary: str


def detect_machine(timeout_s: float = 3.0) -> MachineInfo:
    import psutil

    gpu, vram = _nvidia_gpu(timeout_s)
    return MachineInfo(
        gpu_name=gpu, vram_bytes=vram, ram_bytes=psutil.virtual_memory().total, cpus=psutil.cpu_count() or 1
    )


def _nvidia_gpu(timeout_s: float) -> tuple[str, int]:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return "", 0
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        ).stdout
        name, mib = out.splitlines()[0].rsplit(",", 1)
        return name.strip(), int(float(mib)) * 1024 * 1024
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return "", 0


def memory_profile(info: MachineInfo) -> MemoryProfile:
    """The tier family the arbiter will usually grant here (mirrors the jobs' tier lists)."""
    if not info.gpu_name:
        return MemoryProfile(
            "CPU only",
            "Everything runs on the CPU: chat in bf16/nf4, images and video "
            "slowly, sliced to fit system memory.",
        )
    vram = info.vram_bytes / GIB
    if vram < 7:
        return MemoryProfile(
            "Small GPU",
            f"{vram:.0f} GB: chat in nf4, images with offloading, video sliced "
            "and offloaded; one big model resident at a time.",
        )
    if vram < 13:
        return MemoryProfile(
            "Mid GPU",
            f"{vram:.0f} GB: chat in nf4/int8, SD1.5 resident, video sliced; "
            "background renders yield to chat and brush edits.",
        )
    return MemoryProfile(
        "Large GPU",
        f"{vram:.0f} GB: models resident in bf16/fp16, video with light "
        "slicing; several sub-apps stay warm together.",
    )
