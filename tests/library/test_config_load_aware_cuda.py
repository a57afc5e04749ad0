"""Config files: LoadAware around the file's policy (``policy.load_aware``) and the CUDA
executor (``executor.cuda``). Parsing and validation need no GPU and no PyTorch; building
the CUDA executor needs PyTorch (the 'cuda' extra), running a model on it a CUDA GPU."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import config_models
from fastroute import ClassWeights, ConfigError, CPUExecutor, LoadAware, Router, Rules
from fastroute.decision.load_aware import DEFAULT_WEIGHTS
from fastroute.library.config import load_config

WAIT_S = 30
X = np.ones(4, dtype=np.float32)

TWO_MODELS = """
models:
  big: {modality: tabular, versions: {"1": {model: "config_models:BIG"}}}
  small: {modality: tabular, versions: {"1": {model: "config_models:SMALL"}}}
"""
LOAD_AWARE = TWO_MODELS + """
policy:
  use: Rules
  args: {rules: [], default: big}
  load_aware:
    quality: {big: 0.9, small: 0.7}
    weights: {normal: {time_per_s: 100.0}}
    on_late: fastest
    seed: 3
executor: {threads: 2, max_batch: 1, max_delay_us: 0}
"""


def write(tmp_path: Path, text: str, name: str = "router.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_load_aware_wraps_the_files_policy_with_its_settings_and_its_own_defaults(tmp_path: Path) -> None:
    router = Router.from_config(write(tmp_path, LOAD_AWARE))
    with router:
        policy = router.policy
        assert isinstance(policy, LoadAware) and isinstance(policy.policy, Rules)
        assert policy.quality == {"big": 0.9, "small": 0.7} and policy.on_late == "fastest"
        assert policy.weights == {"normal": ClassWeights(time_per_s=100.0), "high": DEFAULT_WEIGHTS["high"]}
        assert router.route(X).model == "big"  # no load known: the wrapped policy's choice


def test_load_aware_from_a_file_spills_normal_requests_under_load(tmp_path: Path) -> None:
    router = Router.from_config(write(tmp_path, LOAD_AWARE))
    with router:
        for name in ("big", "small"):  # a service-time sample of each model
            for _ in range(3):
                router.executor.submit(router.models.get(name), X).result(WAIT_S)
        config_models.BIG.open.clear()  # big's worker hangs on its first request: its queue grows
        try:
            held = [router.submit(X, priority="normal") for _ in range(3)]
            high = router.submit(X, priority="high", deadline=5.0)  # high: the file left LoadAware's default weights
            normal = [router.submit(X, priority="normal") for _ in range(5)]
        finally:
            config_models.BIG.open.set()
        assert [f.result(WAIT_S) for f in held][0] == "big" and high.result(WAIT_S) == "big"
        spilled = [f for f in normal if f.decision.model == "small"]
        assert spilled and all(f.decision.reason.startswith("spilled: 'small' instead of 'big'") for f in spilled)
        assert all(f.result(WAIT_S) == f.decision.model for f in normal)


LOAD_AWARE_MISTAKES = {
    "LoadAware named as the policy": (
        TWO_MODELS + "policy: {use: LoadAware, args: {quality: {big: 1.0}}}\n",
        r"policy\.use: LoadAware wraps another policy: name that policy in 'use' and give LoadAware's settings under 'load_aware'",
    ),
    "no quality": (TWO_MODELS + "policy: {load_aware: {on_late: refuse}}\n", r"policy\.load_aware\.quality: Field required"),
    "quality of an undeclared model": (
        TWO_MODELS + "policy: {load_aware: {quality: {big: 0.9, huge: 0.95}}}\n",
        r"policy\.load_aware\.quality: names models not under 'models': \['huge'\]",
    ),
    "quality not finite": (
        TWO_MODELS + "policy: {load_aware: {quality: {big: .nan}}}\n",
        r"policy\.load_aware\.quality: quality\['big'\] must be a finite number, got nan",
    ),
    "unknown priority class": (
        TWO_MODELS + "policy: {load_aware: {quality: {big: 0.9}, weights: {urgent: {time_per_s: 1}}}}\n",
        r"policy\.load_aware\.weights\.urgent\.\[key\]: Input should be 'high' or 'normal'",
    ),
    "negative weight": (
        TWO_MODELS + "policy: {load_aware: {quality: {big: 0.9}, weights: {normal: {time_per_s: -1}}}}\n",
        r"policy\.load_aware\.weights\.normal: Value error, ClassWeights\.time_per_s must be a finite number >= 0, got -1",
    ),
    "misspelt weight": (
        TWO_MODELS + "policy: {load_aware: {quality: {big: 0.9}, weights: {normal: {time_per_second: 1}}}}\n",
        r"policy\.load_aware\.weights\.normal\.time_per_second: unknown key \(and 1 more problems\)",
    ),
    "unknown on_late": (
        TWO_MODELS + "policy: {load_aware: {quality: {big: 0.9}, on_late: drop}}\n",
        r"policy\.load_aware\.on_late: Input should be 'refuse' or 'fastest'",
    ),
}


def test_an_unchanged_load_aware_policy_is_kept_on_reload(tmp_path: Path) -> None:
    router = Router.from_config(write(tmp_path, LOAD_AWARE))
    with router:
        policy = router.policy
        router.reload(write(tmp_path, LOAD_AWARE, "same.yaml"))
        assert router.policy is policy
        router.reload(write(tmp_path, LOAD_AWARE.replace("on_late: fastest", "on_late: refuse"), "changed.yaml"))
        assert isinstance(router.policy, LoadAware) and router.policy.on_late == "refuse"


# -- the CUDA executor -----------------------------------------------------------------------

GPU_MODEL = """
models:
  net:
    modality: tabular
    versions: {"1": {factory: "config_models:make_net", kwargs: {inputs: 3, outputs: 2}, batched: true, device: "cuda:0"}}
"""
CUDA_EXECUTOR = "executor: {threads: 2, max_batch: 8, cuda: {}}\n"

CUDA_MISTAKES = {
    "a GPU model without the CUDA executor": (
        GPU_MODEL,
        r"models\.net\.versions\.1\.device: 'cuda:0' models run on the CUDA executor; add 'executor: \{cuda: \{\}\}'",
    ),
    "a GPU model on a plain executor": (
        GPU_MODEL + "executor: {threads: 2}\n",
        r"models\.net\.versions\.1\.device: 'cuda:0' models run on the CUDA executor",
    ),
    "a malformed CUDA device": (
        GPU_MODEL.replace('"cuda:0"', '"cuda0"') + CUDA_EXECUTOR,
        r"models\.net\.versions\.1\.device: device 'cuda0' is not 'cuda' or 'cuda:N'",
    ),
    "ray and cuda together": (
        TWO_MODELS + "executor: {ray: {}, cuda: {}}\n",
        r"executor: give 'ray' or 'cuda', not both",
    ),
    "unknown CUDA setting": (TWO_MODELS + "executor: {cuda: {streams: 4}}\n", r"executor\.cuda\.streams: unknown key"),
    "bad queue setting beside cuda": (
        TWO_MODELS + "executor: {max_batch: 0, cuda: {}}\n",
        r"executor\.max_batch: Input should be greater than or equal to 1",
    ),
}


@pytest.mark.parametrize("mistake", [*LOAD_AWARE_MISTAKES, *CUDA_MISTAKES])
def test_mistakes_name_the_key_and_the_fix_without_a_gpu_or_pytorch(tmp_path: Path, mistake: str) -> None:
    text, problem = {**LOAD_AWARE_MISTAKES, **CUDA_MISTAKES}[mistake]
    with pytest.raises(ConfigError, match=r"router\.yaml: " + problem):
        load_config(write(tmp_path, text))  # found by validation, before anything is imported


def test_the_cuda_section_parses_without_pytorch(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GPU_MODEL + CUDA_EXECUTOR))
    assert config.executor.cuda is not None and config.executor.max_batch == 8
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # as where the 'cuda' extra is not installed
        import fastroute
        try:
            fastroute.Router.from_config({str(write(tmp_path, TWO_MODELS + CUDA_EXECUTOR, "cpu.yaml"))!r})
        except fastroute.ConfigError as error:
            print(error)
        """
    )
    here = Path(__file__).parent  # config_models: importable from the working directory
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=here)
    assert "cpu.yaml: executor.cuda: CUDAExecutor needs PyTorch: pip install 'fastroute[cuda]'" in result.stdout


def test_the_cuda_section_builds_a_cuda_executor_with_the_queue_settings(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="needs the 'cuda' extra (PyTorch)")
    from fastroute.executors.cuda import CUDAExecutor

    router = Router.from_config(write(tmp_path, TWO_MODELS + CUDA_EXECUTOR))
    with router:
        assert isinstance(router.executor, CUDAExecutor) and isinstance(router.executor, CPUExecutor)
        assert (router.executor.config.threads, router.executor.config.max_batch) == (2, 8)
        assert router.submit(X).result(WAIT_S) in {"big", "small"}  # CPU models run in process as before
    with pytest.raises(ConfigError, match=r"router\.yaml: executor\.cuda: CUDA graphs per bucket are not implemented yet"):
        Router.from_config(write(tmp_path, TWO_MODELS + "executor: {cuda: {graphs: true}}\n"))


def test_a_gpu_model_without_a_gpu_is_refused_naming_the_version(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="needs the 'cuda' extra (PyTorch)")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: test_a_gpu_model_from_a_file_runs_on_the_gpu covers it")
    with pytest.raises(ConfigError, match=r"router\.yaml: models\.net\.versions\.1: no CUDA device here"):
        Router.from_config(write(tmp_path, GPU_MODEL + CUDA_EXECUTOR))


def test_a_gpu_model_from_a_file_runs_on_the_gpu(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="needs the 'cuda' extra (PyTorch)")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    router = Router.from_config(write(tmp_path, GPU_MODEL + CUDA_EXECUTOR))
    with router:
        xs = [np.full(3, float(i), dtype=np.float32) for i in range(16)]
        results = np.stack([f.result(WAIT_S) for f in [router.submit(x) for x in xs]])
        assert router.stats()["models"]["net/1"]["backend"]["device"].device == "cuda:0"
    with torch.no_grad():
        expected = config_models.make_net(3, 2)(torch.from_numpy(np.stack(xs))).numpy()
    np.testing.assert_allclose(results, expected, rtol=1e-5)
