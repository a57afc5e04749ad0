"""CUDAExecutor: buckets, pinned-buffer reuse, copy/compute overlap order, output checks, bad devices.

Without a GPU, the same DeviceRunner path runs through ``LoggingCPUOps`` (the
device seam on the CPU, logging each operation). The GPU tests skip with a reason.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the 'cuda' extra (PyTorch)")

from fastroute import ConfigError, ModelError, ModelSpec, RegistrationError, Router  # noqa: E402
from fastroute.executors.cuda import CUDAExecutor, bucket_for, buckets_up_to  # noqa: E402

WAIT_S = 30
GPU = torch.cuda.is_available()


class LoggingCPUOps:
    """The DeviceOps seam on the CPU: same calls, plain tensors, every operation logged in order."""

    def __init__(self, free_bytes: int = 1 << 40) -> None:
        self.device = torch.device("cpu")
        self.free_bytes = free_bytes
        self.log: list[tuple] = []
        self._lock = threading.Lock()
        self._streams = 0

    def _note(self, *entry) -> None:
        with self._lock:
            self.log.append(entry)

    def memory(self):
        return self.free_bytes, 2 * self.free_bytes

    def new_stream(self):
        with self._lock:
            self._streams += 1
            return f"stream{self._streams}"

    def pinned(self, shape, dtype):
        self._note("alloc", shape)
        return torch.empty(shape, dtype=torch.from_numpy(np.empty(0, dtype=dtype)).dtype)

    def copy_in(self, host, stream):
        self._note("copy", float(host[0, 0]), stream)
        return host.clone(), ("copied", float(host[0, 0]))

    def run_after(self, event, stream, model, batch):
        self._note("compute", event[1], stream)
        output = model(batch)
        self._note("computed", event[1], stream)
        return output

    def to_host(self, output, stream):
        return output.numpy()


def gpu_spec(model, *, device="cuda:0", replicas=1) -> ModelSpec:
    return ModelSpec("net", "1", model, "tabular", batched=True, device=device, replicas=replicas)


@pytest.fixture
def make_executor():
    made = []

    def make(ops=None, **settings) -> CUDAExecutor:
        made.append(CUDAExecutor(ops_for=(lambda index: ops) if ops is not None else None, **settings))
        return made[-1]

    yield make
    for executor in made:
        executor.close()
        assert not executor._runners


def test_buckets_are_powers_of_two_up_to_max_batch():
    assert buckets_up_to(32) == (1, 2, 4, 8, 16, 32)
    assert buckets_up_to(24) == (1, 2, 4, 8, 16, 24)
    assert buckets_up_to(1) == (1,)
    assert [bucket_for(n, buckets_up_to(24)) for n in (1, 3, 9, 17, 24)] == [1, 4, 16, 24, 24]


def test_results_match_the_model_and_pinned_buffers_are_reused(make_executor):
    ops = LoggingCPUOps()
    net = torch.nn.Linear(3, 2)
    executor = make_executor(ops, threads=2, max_batch=4, max_delay_us=5_000)
    spec = gpu_spec(net)
    xs = [np.full(3, float(i), dtype=np.float32) for i in range(64)]
    results = [future.result(timeout=WAIT_S) for future in [executor.submit(spec, x) for x in xs]]
    with torch.no_grad():
        expected = net(torch.from_numpy(np.stack(xs))).numpy()
    np.testing.assert_allclose(np.stack(results), expected, rtol=1e-6)
    allocations = [entry for entry in ops.log if entry[0] == "alloc"]
    copies = [entry for entry in ops.log if entry[0] == "copy"]
    assert len(copies) >= 16  # batches of at most 4
    assert len(allocations) <= 2 * len(buckets_up_to(4))  # per slot and bucket, once; never per batch
    health = executor.device_stats(spec)
    assert health.batches == len(copies) and health.failed_batches == 0
    assert health.pinned_buffers == len(allocations)


def test_copy_of_the_next_batch_overlaps_the_compute_of_the_current_one(make_executor):
    ops = LoggingCPUOps()
    release = threading.Event()

    def model(batch):
        if float(batch[0, 0]) == 0.0:
            assert release.wait(WAIT_S)
        return batch * 2

    executor = make_executor(ops, threads=2, max_batch=1, max_delay_us=0)
    spec = gpu_spec(model)
    first = executor.submit(spec, np.zeros((1,), dtype=np.float32))
    while ("compute", 0.0, "stream2") not in ops.log:
        time.sleep(0.001)
    second = executor.submit(spec, np.ones((1,), dtype=np.float32))
    deadline = time.monotonic() + WAIT_S
    while not any(entry[:2] == ("copy", 1.0) for entry in ops.log) and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    assert first.result(timeout=WAIT_S)[0] == 0.0 and second.result(timeout=WAIT_S)[0] == 2.0
    order = [entry[:2] for entry in ops.log if entry[0] != "alloc"]
    # batch 1's copy was issued while batch 0 was still computing, both on the copy stream (stream1);
    # both computes on the replica's one compute stream (stream2), which orders them on a GPU
    assert order.index(("copy", 1.0)) < order.index(("computed", 0.0))
    assert ("copy", 0.0, "stream1") in ops.log and ("copy", 1.0, "stream1") in ops.log
    assert ("compute", 1.0, "stream2") in ops.log


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (lambda batch: batch.numpy(), "returns a tensor"),
        (lambda batch: torch.empty(batch.shape, device="meta"), "on meta"),
        (lambda batch: batch[:1] if len(batch) > 1 else batch[:0], "returned shape .* for a batch of"),
    ],
)
def test_a_wrong_output_fails_its_batch_with_a_clear_error(make_executor, model, message):
    executor = make_executor(LoggingCPUOps(), threads=1, max_batch=4, max_delay_us=50_000)
    spec = gpu_spec(model)
    futures = [executor.submit(spec, np.zeros(2, dtype=np.float32)) for _ in range(3)]
    for future in futures:
        with pytest.raises(ModelError, match=message):
            future.result(timeout=WAIT_S)
    assert executor.device_stats(spec).failed_batches >= 1


def test_a_model_beyond_free_device_memory_is_refused(make_executor):
    ops = LoggingCPUOps(free_bytes=100)
    ops.device = torch.device("meta")  # a device the CPU model's parameters must move to
    executor = make_executor(ops, threads=1)
    with pytest.raises(RegistrationError, match="needs 4096 bytes.*100 free"):
        executor.start(gpu_spec(torch.nn.Linear(31, 32, bias=True)))


def test_inputs_that_do_not_stack_fail_clearly(make_executor):
    executor = make_executor(LoggingCPUOps(), threads=1)
    with pytest.raises(ModelError, match="numpy arrays of one shape"):
        executor.submit(gpu_spec(lambda batch: batch), "text").result(timeout=WAIT_S)


@pytest.mark.skipif(GPU, reason="checks the refusal on a machine without a GPU")
def test_without_a_gpu_a_cuda_model_is_refused_and_cpu_models_still_run(make_executor):
    executor = make_executor(threads=1)
    with pytest.raises(RegistrationError, match="no CUDA device"):
        executor.start(gpu_spec(torch.nn.Linear(2, 2)))
    cpu_model = ModelSpec("cpu", "1", lambda x: x + 1, "tabular")
    assert executor.submit(cpu_model, 1).result(timeout=WAIT_S) == 2
    assert executor.backend_stats(cpu_model) is None


def test_bad_device_names_and_options_are_refused(make_executor):
    executor = make_executor(threads=1)
    with pytest.raises(RegistrationError, match="not 'cuda' or 'cuda:N'"):
        executor.start(gpu_spec(torch.nn.Linear(2, 2), device="cuda:first"))
    with pytest.raises(ConfigError, match="graphs"):
        CUDAExecutor(graphs=True)


def test_router_stats_show_the_device(make_executor):
    ops = LoggingCPUOps()
    router = Router(executor=make_executor(ops, threads=2, max_batch=8))
    router.register("net", torch.nn.Linear(3, 1), modality="tabular", batched=True, device="cuda:0")
    assert router.submit(np.ones(3, dtype=np.float32), hint="tabular").result(timeout=WAIT_S).shape == (1,)
    health = router.stats()["models"]["net/1"]["backend"]["device"]
    assert health.device == "cpu" and health.batches == 1 and health.free_bytes == ops.free_bytes


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
def test_on_a_real_gpu_results_match_and_a_missing_device_is_refused(make_executor):
    net = torch.nn.Linear(3, 2).cuda()
    executor = make_executor(threads=2, max_batch=8)
    spec = gpu_spec(net)
    xs = [np.full(3, float(i), dtype=np.float32) for i in range(32)]
    results = np.stack([f.result(timeout=WAIT_S) for f in [executor.submit(spec, x) for x in xs]])
    with torch.no_grad():
        np.testing.assert_allclose(results, net(torch.from_numpy(np.stack(xs)).cuda()).cpu().numpy(), rtol=1e-5)
    with pytest.raises(RegistrationError, match="does not exist"):
        executor.start(gpu_spec(torch.nn.Linear(2, 2), device=f"cuda:{torch.cuda.device_count()}"))
