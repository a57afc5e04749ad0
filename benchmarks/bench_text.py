"""Text routing: fastroute's hashed n-grams and Linear policy vs scikit-learn, on real prompts.

Speed (each beside its baseline in one group):
- hashing a batch of real prompts (RouterDC + GSM8K questions): HashedNgrams
  vs HashingVectorizer.transform, word (1, 2) and char_wb (2, 4) n-grams;
- hashing one prompt: HashedNgrams.hash vs HashingVectorizer.transform([p]);
- routing one prompt end to end: Router.route(text) (analyze, hash, score)
  and Linear.route(text) vs a scikit-learn pipeline (HashingVectorizer + the
  same ridge model) predicting one prompt.

Quality (``record``; scenarios run once inside ``benchmark.pedantic``):
- RouterDC 7-LLM: train on the five train sets, average test score over the
  five benchmarks vs the single best model and the oracle;
- RouteLLM GSM8K: APGR and CPT(50%), CPT(80%) over 5-fold CV x seeds.

Needs the real logs in ../shared/data (or FASTROUTE_SHARED_DATA); ``--quick``
uses fewer prompts and one seed.

Run: python -m pytest benchmarks/bench_text.py --benchmark-only
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import Ridge

from fastroute import HashedNgrams, Linear, Router
from fastroute.tools.datasets import load_gsm8k, load_routerdc
from fastroute.tools.text_routing import gsm8k_quality, routerdc_quality

DATA = Path(os.environ.get("FASTROUTE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
if not DATA.is_dir():
    pytest.skip(f"needs the real routing logs in {DATA} (see ../shared/data/README.md)", allow_module_level=True)

WORD = {"analyzer": "word", "ngram_range": (1, 2), "n_features": 2**18}
CHAR = {"analyzer": "char_wb", "ngram_range": (2, 4), "n_features": 2**18}


@pytest.fixture(scope="module")
def train():
    return load_routerdc(DATA / "routerdc-7llm", "train")


@pytest.fixture(scope="module")
def test_split():
    return load_routerdc(DATA / "routerdc-7llm", "test")


@pytest.fixture(scope="module")
def prompts(test_split, quick):
    """10,000 real prompts (1,000 in quick mode): RouterDC's test questions, then GSM8K's."""
    texts = test_split.prompts + load_gsm8k(DATA / "routellm-gsm8k" / "gsm8k_responses.csv").prompts
    return texts[: 1_000 if quick else 10_000]


@pytest.fixture(scope="module")
def fitted(train):
    """A Linear policy fitted on RouterDC's train sets, and the same ridge as a scikit-learn pipeline."""
    policy = Linear(HashedNgrams(**WORD), alpha=10.0).fit(train.prompts, train.outcomes, models=train.models)
    vectorizer = HashingVectorizer(**WORD)
    ridge = Ridge(alpha=10.0).fit(vectorizer.transform(train.prompts), train.outcomes)
    return policy, vectorizer, ridge


# ---- batch hashing -----------------------------------------------------------------


@pytest.mark.parametrize("setting", [WORD, CHAR], ids=["word-1-2", "char_wb-2-4"])
@pytest.mark.benchmark(group="text: hash a batch of real prompts")
def test_batch_hashing_vectorizer(benchmark, prompts, setting):
    benchmark.group = f"text: hash {len(prompts)} real prompts, {setting['analyzer']} {setting['ngram_range']}"
    benchmark.extra_info["baseline"] = True
    vectorizer = HashingVectorizer(**setting)
    benchmark(vectorizer.transform, prompts)


@pytest.mark.parametrize("setting", [WORD, CHAR], ids=["word-1-2", "char_wb-2-4"])
@pytest.mark.parametrize("threads", [1, 0], ids=["1-thread", "all-cores"])
def test_batch_hashed_ngrams(benchmark, prompts, setting, threads):
    benchmark.group = f"text: hash {len(prompts)} real prompts, {setting['analyzer']} {setting['ngram_range']}"
    hasher = HashedNgrams(**setting, threads=threads)
    benchmark(hasher.hash_batch, prompts)


# ---- one prompt --------------------------------------------------------------------


@pytest.mark.benchmark(group="text: hash one prompt (word 1-2)")
def test_one_prompt_hashing_vectorizer(benchmark, prompts):
    benchmark.extra_info["baseline"] = True
    vectorizer = HashingVectorizer(**WORD)
    cycle = itertools.cycle(prompts)
    benchmark(lambda: vectorizer.transform([next(cycle)]))


@pytest.mark.benchmark(group="text: hash one prompt (word 1-2)")
def test_one_prompt_hashed_ngrams(benchmark, prompts):
    hasher = HashedNgrams(**WORD)
    cycle = itertools.cycle(prompts)
    benchmark(lambda: hasher.hash(next(cycle)))


@pytest.mark.benchmark(group="text: route one prompt (7 LLMs, word 1-2 ridge)")
def test_route_one_prompt_sklearn_pipeline(benchmark, prompts, fitted):
    benchmark.extra_info["baseline"] = True
    _, vectorizer, ridge = fitted
    cycle = itertools.cycle(prompts)
    benchmark(lambda: int(np.argmax(ridge.predict(vectorizer.transform([next(cycle)]))[0])))


@pytest.mark.benchmark(group="text: route one prompt (7 LLMs, word 1-2 ridge)")
def test_route_one_prompt_linear(benchmark, prompts, fitted):
    policy = fitted[0]
    cycle = itertools.cycle(prompts)
    benchmark(lambda: policy.route(next(cycle)))


@pytest.mark.benchmark(group="text: route one prompt (7 LLMs, word 1-2 ridge)")
def test_route_one_prompt_router(benchmark, prompts, fitted):
    policy = fitted[0]
    router = Router(policy=policy)
    for name in policy.models:
        router.register(name, lambda x: x, modality="text")
    cycle = itertools.cycle(prompts)
    chosen = [router.route(p).model for p in prompts[:50]]
    assert chosen == [policy.models[i] for i in policy.predict(prompts[:50])]
    benchmark(lambda: router.route(next(cycle)))


# ---- quality on the real logs ------------------------------------------------------


@pytest.mark.parametrize("balanced", [False, True], ids=["plain", "balanced"])
def test_quality_routerdc(benchmark, record, quick, balanced):
    benchmark.group = "text quality: RouterDC 7-LLM"
    text = HashedNgrams(**{**WORD, "n_features": 2**16 if quick else 2**18})
    figures = benchmark.pedantic(routerdc_quality, args=(DATA / "routerdc-7llm", text),
                                 kwargs={"balanced": balanced}, rounds=1, iterations=1)
    record("text quality: RouterDC 7-LLM (test score, points; RouterDC paper: +2.76)",
           f"Linear word 1-2 ridge{' balanced' if balanced else ''}", **figures)


def test_quality_gsm8k(benchmark, record, quick):
    benchmark.group = "text quality: RouteLLM GSM8K"
    figures = benchmark.pedantic(gsm8k_quality, args=(DATA / "routellm-gsm8k" / "gsm8k_responses.csv", HashedNgrams(**WORD)),
                                 kwargs={"seeds": 1 if quick else 5}, rounds=1, iterations=1)
    record("text quality: RouteLLM GSM8K (5-fold CV; RouteLLM best published APGR 0.622)",
           "Linear word 1-2 ridge", **figures)
