"""CUDAExecutor: models with ``device="cuda"``/``"cuda:N"`` run on a GPU, batched in the router.

Same C++ queue and batcher as every model (see :mod:`.offload`); a GPU
model's whole micro-batch goes through one :class:`DeviceRunner` call:

1. a free *slot* is taken: each replica has two, so two batches of one
   replica can be in flight (two dispatcher lanes per replica);
2. the batch is copied into the slot's pinned host buffer for its batch-size
   bucket (powers of two up to ``max_batch``; allocated on first use, then
   reused, never per request);
3. host-to-device copy on the device's copy stream, an event recorded there;
4. the replica's compute stream waits on that event and runs the model, so
   the copy of batch i+1 (other slot) overlaps the compute of batch i;
5. the output is checked (a tensor on the model's device, one row per input:
   else the batch fails with :class:`~fastroute.ModelError`) and copied back.

Device-specific calls sit behind :class:`DeviceOps` (:class:`TorchCUDAOps` on
a GPU); the tests drive the same runner through a CPU implementation that
logs each operation, to check buckets, buffer reuse and overlap order without
a GPU. PyTorch comes with the ``cuda`` extra, imported when an executor is built.

Not done yet: CUDA graphs per bucket (the ``graphs`` option is refused), and
checks on a real GPU (benchmarks/gpu_check.py is written, not run).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from ..errors import ConfigError, ModelError, RegistrationError
from ..library.spec import ModelSpec
from .config import ExecutorConfig
from .offload import OffloadingExecutor

__all__ = ["CUDAExecutor", "DeviceOps", "DeviceRunner", "TorchCUDAOps", "bucket_for", "buckets_up_to", "cuda_index"]

SLOTS_PER_REPLICA = 2  # two batches in flight per replica: one copying while the other computes
_CUDA_DEVICE = re.compile(r"^cuda(?::(\d+))?$")


def cuda_index(device: str) -> int | None:
    """The device index ``device`` names ("cuda" is 0), or None for a non-CUDA device."""
    match = _CUDA_DEVICE.match(device)
    if match is None:
        if device.startswith("cuda"):
            raise RegistrationError(f"device {device!r} is not 'cuda' or 'cuda:N'")
        return None
    return int(match.group(1) or 0)


def buckets_up_to(max_batch: int) -> tuple[int, ...]:
    """Batch-size buckets: powers of two below ``max_batch``, then ``max_batch``."""
    sizes, size = [], 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    return (*sizes, max_batch)


def bucket_for(rows: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket holding ``rows`` (buckets ascending)."""
    for size in buckets:
        if rows <= size:
            return size
    raise ValueError(f"a batch of {rows} exceeds the largest bucket {buckets[-1]}")


class DeviceOps(Protocol):
    """The device-specific calls of :class:`DeviceRunner` (the seam the tests replace)."""

    device: Any  # where the model's tensors must live (a torch.device)

    def memory(self) -> tuple[int, int]:
        """(free, total) bytes of the device."""

    def new_stream(self) -> Any: ...

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """A page-locked host tensor of ``shape`` and ``dtype``."""

    def copy_in(self, host: Any, stream: Any) -> tuple[Any, Any]:
        """Start the host-to-device copy on ``stream``: (device tensor, event recorded after it)."""

    def run_after(self, event: Any, stream: Any, model: Callable[[Any], Any], batch: Any) -> Any:
        """``stream`` waits on ``event``, then the model runs on ``stream``."""

    def to_host(self, output: Any, stream: Any) -> np.ndarray:
        """The output as a host array once ``stream`` reached it (blocks)."""


class TorchCUDAOps:
    """DeviceOps on a real GPU through PyTorch."""

    def __init__(self, torch: Any, index: int) -> None:
        self._torch, self.device = torch, torch.device("cuda", index)

    def memory(self) -> tuple[int, int]:
        return self._torch.cuda.mem_get_info(self.device)

    def new_stream(self) -> Any:
        return self._torch.cuda.Stream(self.device)

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        return self._torch.empty(shape, dtype=_torch_dtype(self._torch, dtype), pin_memory=True)

    def copy_in(self, host: Any, stream: Any) -> tuple[Any, Any]:
        with self._torch.cuda.stream(stream):
            on_device = host.to(self.device, non_blocking=True)
            event = self._torch.cuda.Event()
            event.record(stream)
        return on_device, event

    def run_after(self, event: Any, stream: Any, model: Callable[[Any], Any], batch: Any) -> Any:
        stream.wait_event(event)
        with self._torch.cuda.stream(stream):
            batch.record_stream(stream)  # allocated on the copy stream, used on this one
            return model(batch)

    def to_host(self, output: Any, stream: Any) -> np.ndarray:
        with self._torch.cuda.stream(stream):
            return output.to("cpu").numpy()


def _torch_dtype(torch: Any, dtype: np.dtype) -> Any:
    return torch.from_numpy(np.empty(0, dtype=dtype)).dtype


@dataclass(frozen=True)
class DeviceHealth:
    """One GPU model's device as ``router.stats()`` shows it."""

    device: str
    free_bytes: int
    total_bytes: int
    model_bytes: int
    batches: int
    failed_batches: int
    last_error: str | None
    pinned_buffers: int


class _Slot:
    """One in-flight batch's place: its replica's compute stream and its pinned buffers."""

    def __init__(self, replica: int, stream: Any) -> None:
        self.replica, self.stream, self.busy = replica, stream, False
        self.buffers: dict[tuple, Any] = {}  # (bucket, row shape, dtype) -> pinned host tensor


class DeviceRunner:
    """Runs one GPU model's batches (the stand-in model the dispatcher calls; thread-safe)."""

    def __init__(self, spec: ModelSpec, ops: DeviceOps, torch: Any, max_batch: int) -> None:
        self._spec, self._ops, self._torch = spec, ops, torch
        self._buckets = buckets_up_to(max_batch)
        self.model_bytes = _bytes_to_move(spec.model, ops.device)
        free, _ = ops.memory()
        if self.model_bytes > free:
            raise RegistrationError(
                f"model {spec.name!r} version {spec.version!r} needs {self.model_bytes} bytes of parameters; "
                f"{ops.device} has {free} free"
            )
        self._model = spec.model.to(ops.device) if hasattr(spec.model, "to") else spec.model
        self._copy_stream = ops.new_stream()
        streams = [ops.new_stream() for _ in range(spec.replicas)]
        self._slots = [_Slot(r, streams[r]) for r in range(spec.replicas) for _ in range(SLOTS_PER_REPLICA)]
        self._lock = threading.Lock()
        self._batches = self._failed = 0  # guarded by _lock
        self._last_error: str | None = None  # guarded by _lock

    def __call__(self, batch: Any) -> list[Any]:
        if not isinstance(batch, np.ndarray):
            raise ModelError(self._spec.name, "a CUDA model takes numpy arrays of one shape and dtype per batch")
        slot = self._acquire()
        try:
            outputs = self._run(slot, batch)
        except Exception as error:
            self._count(error)
            raise
        finally:
            with self._lock:
                slot.busy = False
        self._count(None)
        return list(outputs)

    def _run(self, slot: _Slot, batch: np.ndarray) -> np.ndarray:
        rows = len(batch)
        host = self._buffer(slot, bucket_for(rows, self._buckets), batch)
        host[:rows].copy_(self._torch.from_numpy(batch))
        on_device, copied = self._ops.copy_in(host[:rows], self._copy_stream)
        with self._torch.inference_mode():
            output = self._ops.run_after(copied, slot.stream, self._model, on_device)
            _check_output(self._spec.name, output, self._ops.device, rows, self._torch)
            return self._ops.to_host(output, slot.stream)

    def _buffer(self, slot: _Slot, bucket: int, batch: np.ndarray) -> Any:
        key = (bucket, batch.shape[1:], batch.dtype.str)
        buffer = slot.buffers.get(key)
        if buffer is None:
            buffer = slot.buffers[key] = self._ops.pinned((bucket, *batch.shape[1:]), batch.dtype)
        return buffer

    def _acquire(self) -> _Slot:
        """A free slot, on the replica with the fewest busy ones (the dispatcher runs at most
        one batch per lane and has as many lanes as slots, so one is always free)."""
        with self._lock:
            busy = [0] * self._spec.replicas
            for slot in self._slots:
                busy[slot.replica] += slot.busy
            slot = min((s for s in self._slots if not s.busy), key=lambda s: busy[s.replica])
            slot.busy = True
            return slot

    def _count(self, error: BaseException | None) -> None:
        with self._lock:
            self._batches += 1
            if error is not None:
                self._failed += 1
                self._last_error = f"{type(error).__name__}: {error}"

    def stats(self) -> DeviceHealth:
        free, total = self._ops.memory()
        with self._lock:
            buffers = sum(len(slot.buffers) for slot in self._slots)
            return DeviceHealth(str(self._ops.device), free, total, self.model_bytes, self._batches, self._failed,
                                self._last_error, buffers)

    def close(self) -> None:
        with self._lock:
            for slot in self._slots:
                slot.buffers.clear()


def _bytes_to_move(model: Any, device: Any) -> int:
    """Bytes of a torch module's parameters and buffers not yet on ``device`` (0 for a plain callable)."""
    tensors = [*getattr(model, "parameters", list)(), *getattr(model, "buffers", list)()]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors if tensor.device != device)


def _check_output(name: str, output: Any, device: Any, rows: int, torch: Any) -> None:
    if not isinstance(output, torch.Tensor):
        raise ModelError(name, f"returned {type(output).__name__}; a CUDA model returns a tensor")
    if output.device != device:
        raise ModelError(name, f"returned a tensor on {output.device}; expected it on {device}")
    if output.dim() == 0 or output.shape[0] != rows:
        raise ModelError(name, f"returned shape {tuple(output.shape)} for a batch of {rows}")


class CUDAExecutor(OffloadingExecutor):
    """A :class:`CPUExecutor` that runs ``device="cuda"``/``"cuda:N"`` models on GPUs.

    >>> executor = CUDAExecutor(threads=4, max_batch=32)
    >>> executor.submit(ModelSpec("cnn", "1", net, "image", batched=True, device="cuda:0"), x)

    The model (a ``torch.nn.Module`` or a callable on a device tensor) takes one
    stacked batch and returns a tensor with one row per input, on its device.
    Registering (:meth:`start`, else the first request) fails with
    :class:`~fastroute.RegistrationError` for a device that does not exist or a
    model whose parameters exceed the device's free memory. ``threads`` bounds
    batches in flight: give ``2 * replicas`` per GPU model for the copy/compute overlap.
    ``ops_for``: device index -> :class:`DeviceOps` (tests pass a CPU one).
    """

    def __init__(self, config: ExecutorConfig | None = None, *, graphs: bool = False,
                 ops_for: Callable[[int], DeviceOps] | None = None, **settings: Any) -> None:
        try:
            import torch
        except ImportError:
            raise ConfigError("CUDAExecutor needs PyTorch: pip install 'fastroute[cuda]'") from None
        if graphs:
            raise ConfigError("CUDA graphs per bucket are not implemented yet; leave graphs=False")
        self._torch = torch
        self._ops_for = ops_for if ops_for is not None else self._real_ops
        super().__init__(config, **settings)

    def _real_ops(self, index: int) -> DeviceOps:
        cuda = self._torch.cuda
        if not cuda.is_available():
            raise RegistrationError("no CUDA device here (torch.cuda.is_available() is False)")
        if index >= cuda.device_count():
            raise RegistrationError(f"device cuda:{index} does not exist ({cuda.device_count()} CUDA device(s))")
        return TorchCUDAOps(self._torch, index)

    def device_stats(self, spec: ModelSpec) -> DeviceHealth | None:
        """``spec``'s device memory and health, or None before it started."""
        return self.runner_stats(spec)

    def backend_stats(self, spec: ModelSpec) -> dict[str, Any] | None:
        """``{"device": DeviceHealth}`` for a GPU model, else None."""
        return {"device": self.device_stats(spec)} if self._offloads(spec) else None

    def _offloads(self, spec: ModelSpec) -> bool:
        return cuda_index(spec.device) is not None

    def _lanes_per_replica(self) -> int:
        return SLOTS_PER_REPLICA

    def _make_runner(self, spec: ModelSpec) -> DeviceRunner:
        return DeviceRunner(spec, self._ops_for(cuda_index(spec.device)), self._torch, self.config.max_batch)
