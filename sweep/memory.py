"""Memory that training frees stays in the process for the next step (`trainer.keep_freed_memory`, on by default).

On the CPU every training step allocates and frees the same large buffers: the gradients (the word embeddings' alone
are 47 MB for MiniLM), activations, bf16 copies of weights under autocast. glibc's malloc hands blocks above its mmap
threshold (128 KiB, raised dynamically to at most 32 MiB) straight back to the kernel when freed and trims the top of
its heap, so the next step faults every page of them in again, zeroed by the kernel: on a VM each fault is a trap to
the hypervisor. Raising both thresholds to `KEEP_BYTES` keeps those blocks in malloc's heap for reuse, what jemalloc
or tcmalloc (the allocators PyTorch's CPU tuning guide suggests preloading) do by themselves. Measured on a two-core
AMD EPYC VM in bf16 (`benchmarks/allocator/ALLOCATOR.md`, fresh processes side by side): one epoch of MiniLM on 1,000
TREC questions trained 1.22-1.30x as fast through sweep (a bare PyTorch loop 1.16-1.48x, transformers' Trainer
1.17-1.35x), for 20-80 MiB more peak memory; in full precision 1.02-1.21x (`benchmarks/allocator/fp32/`).

Process-wide and for the rest of the process (glibc has no call that restores the dynamic threshold): a worker that
trains keeps it. Elsewhere than Linux with glibc (macOS, musl) nothing changes.
"""

from __future__ import annotations

import ctypes
import functools
import sys

# mallopt(3) parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks up to this size come from (and go back to) malloc's heap; the heap's top is returned to the kernel only when
# this much lies free there. 1 GiB: above any per-step buffer of a BERT-like encoder's fine-tuning short of a
# billion-parameter vocabulary matrix.
KEEP_BYTES = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc malloc's mmap and trim thresholds to `KEEP_BYTES`, once per process; True when glibc took both."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 (glibc's own symbol: musl and others have no mallopt)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
