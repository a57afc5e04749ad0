"""What a batched model returns is checked in one place, the same on every path;
``infer_batch(return_exceptions=True)`` keeps every other result when some inputs fail."""

from __future__ import annotations

import numpy as np
import pytest

from fastroute import CPUExecutor, InvalidInput, ModelError, NoRoute, Router, UnsupportedInput

WAIT_S = 30


def failing_generator(batch):
    yield "first"
    raise RuntimeError("broke while read")


BAD_OUTPUTS = {
    "None": (lambda batch: None, "returned NoneType"),
    "scalar": (lambda batch: 3, "returned int"),
    "0-d array": (lambda batch: np.float32(1.0), "returned float32"),
    "str of the batch's length": (lambda batch: "x" * len(batch), "returned str"),
    "dict of the batch's length": (lambda batch: dict.fromkeys(range(len(batch)), "x"), "returned dict"),
    "bytes of the batch's length": (lambda batch: b"x" * len(batch), "returned bytes"),
    "generator failing while read": (failing_generator, "returned generator"),
}


@pytest.fixture(params=sorted(BAD_OUTPUTS))
def bad_router(request):
    model, message = BAD_OUTPUTS[request.param]
    router = Router(executor=CPUExecutor(threads=1))
    router.register("bad", model, modality="tabular", batched=True)
    yield router, message
    router.close()


def test_infer_refuses_a_batched_models_non_sequence_output(bad_router):
    router, message = bad_router
    with pytest.raises(ModelError, match=f"'bad' failed: {message}.*one result per input"):
        router.infer(np.ones(3))


def test_infer_batch_refuses_a_batched_models_non_sequence_output(bad_router):
    router, message = bad_router
    with pytest.raises(ModelError, match=f"'bad' failed: {message}"):
        router.infer_batch([np.ones(3), np.ones(3)])


def test_submit_refuses_a_batched_models_non_sequence_output_alike(bad_router):
    router, message = bad_router
    with pytest.raises(ModelError, match=f"'bad' failed: {message}"):
        router.submit(np.ones(3)).result(WAIT_S)


@pytest.mark.parametrize(
    "output",
    [
        lambda batch: [float(row.sum()) for row in batch],
        lambda batch: tuple(float(row.sum()) for row in batch),
        lambda batch: batch.sum(axis=1),
    ],
    ids=["list", "tuple", "array"],
)
def test_sequences_and_arrays_of_the_batchs_length_are_split_into_results(output):
    router = Router()
    router.register("sum", output, modality="tabular", batched=True)
    assert router.infer_batch([np.ones(3), np.full(3, 2.0)]) == [3.0, 6.0]
    assert router.infer(np.ones(2)) == 2.0


# -- per-item results ---------------------------------------------------------------------


def test_infer_batch_return_exceptions_keeps_input_order_and_every_other_result():
    router = Router()
    router.register("double", lambda x: 2 * x, modality="tabular")

    def picky(text):
        if text == "boom":
            raise ValueError("no boom")
        return len(text)

    router.register("words", picky, modality="text")
    xs = [np.ones(2), "boom", None, "four", np.full(2, 3.0)]
    out = router.infer_batch(xs, return_exceptions=True)
    assert len(out) == 5
    assert out[0].tolist() == [2.0, 2.0] and out[3] == 4 and out[4].tolist() == [6.0, 6.0]
    assert isinstance(out[1], ModelError) and isinstance(out[1].__cause__, ValueError)
    assert isinstance(out[2], UnsupportedInput)
    with pytest.raises(UnsupportedInput):  # all or nothing without it
        router.infer_batch(xs)


def test_infer_batch_return_exceptions_fails_only_the_group_of_a_failing_batched_model():
    router = Router()
    router.register("broken", lambda batch: 1 / 0, modality="tabular", batched=True)
    router.register("words", lambda text: len(text), modality="text")
    out = router.infer_batch([np.ones(2), "abc", np.ones(2)], return_exceptions=True)
    assert out[1] == 3
    assert isinstance(out[0], ModelError) and isinstance(out[2], ModelError)
    assert out[0] is not out[2]  # one exception object per input
    assert all(router.models.in_flight(spec) == 0 for spec in router.models.list())


def test_infer_batch_return_exceptions_reports_unroutable_inputs_per_item():
    router = Router()
    router.register("words", lambda text: len(text), modality="text")
    out = router.infer_batch(["ab", np.ones(3), "abcd"], return_exceptions=True)
    assert out[0] == 2 and out[2] == 4
    assert isinstance(out[1], NoRoute) and "tabular" in str(out[1])


def test_infer_batch_return_exceptions_still_raises_caller_mistakes():
    router = Router()
    router.register("words", lambda text: len(text), modality="text")
    with pytest.raises(InvalidInput, match="2 keys for 3 inputs"):
        router.infer_batch(["a", "b", "c"], keys=["k", "k"], return_exceptions=True)
