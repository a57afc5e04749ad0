"""The ``fastroute`` command (also ``python -m fastroute``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import FastrouteError

__all__ = ["main"]

_DESCRIPTION = "Route every machine-learning request to the model best suited for it."


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 1 failure, 2 usage)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except FastrouteError as error:
        print(f"fastroute: error: {error}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as error:
        extra = _EXTRAS.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"fastroute: error: {args.command} needs {error.name!r}: pip install \"fastroute[{extra}]\"", file=sys.stderr)
        return 1


# Third-party modules a command may need, and the extra that installs each.
_EXTRAS = {"tqdm": "learn", "starlette": "serve", "uvicorn": "serve", "prometheus_client": "serve", "yaml": "config",
           "pydantic": "config", "sklearn": "demo", "PIL": "demo"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastroute", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"fastroute {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve a router over HTTP", description=_serve_description())
    _config_arguments(serve)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port to listen on; 0 picks a free one (default 8000)")
    serve.add_argument("--max-body-bytes", type=_positive_int, default=64 << 20, help="largest request body (default 64 MiB)")
    serve.add_argument("--max-in-flight", type=_positive_int, default=4096,
                       help="most requests served at once; beyond, 503 with Retry-After (default 4096)")
    serve.add_argument("--body-timeout", type=_positive_float, default=30.0,
                       help="seconds to wait for a request body before 408 (default 30)")
    serve.add_argument("--drain-timeout", type=_positive_float, default=30.0,
                       help="seconds SIGTERM waits for requests in flight (default 30)")
    serve.add_argument("--decision-log", type=Path, metavar="PATH",
                       help="write a decision record per routed request: JSON lines, or Parquet for a .parquet path")
    serve.add_argument("--decision-log-max-bytes", type=_positive_int, default=64 << 20,
                       help="rotate the decision log past this size (default 64 MiB; 3 older files kept)")
    serve.add_argument("--admin", action="store_true", help="enable POST /admin/reload (off by default)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(run=_serve)

    check = commands.add_parser("check", help="validate a config file without serving",
                                description="Build the router a config file describes (imports, warm-ups and all), "
                                "report its models and policy, and exit: 0 when valid, 1 with the problem when not.")
    _config_arguments(check)
    check.set_defaults(run=_check)

    route = commands.add_parser("route", help="decide which model serves each input",
                                description="Print one JSON line per input with the chosen model, version and reason. "
                                "Each FILE's bytes are one input ('-' or no FILE: standard input).")
    route.add_argument("files", nargs="*", metavar="FILE", help="input files; '-' reads standard input")
    route.add_argument("-c", "--config", required=True, type=Path, help="the router's YAML or TOML config file")
    _app_dir_argument(route)
    route.set_defaults(run=_route)

    fit = commands.add_parser("fit", help="learn a routing policy from decision logs",
                              description="Learn a tree or forest from decision logs (fastroute serve --decision-log) "
                              "whose decisions got a reward through /feedback: each logged reward is the chosen "
                              "model's outcome on that input; the other models count as not run.")
    _logs_argument(fit)
    fit.add_argument("--policy", choices=["tree", "forest"], default="forest", help="what to fit (default forest)")
    fit.add_argument("--max-depth", type=_positive_int, default=8, help="tree depth limit (default 8)")
    fit.add_argument("--trees", type=_positive_int, default=100, help="trees in a forest (default 100)")
    fit.add_argument("-o", "--output", type=Path, required=True, help="where to save the policy (.npz, the tree format)")
    fit.set_defaults(run=_fit)

    evaluate = commands.add_parser("evaluate", help="estimate a policy's reward on logged decisions",
                                   description="Off-policy estimates (IPS and self-normalised IPS, 95% intervals) "
                                   "of the mean reward POLICY would have earned on the logged decisions, from their "
                                   "propensities and rewards, beside the logging policy's own mean reward.")
    _logs_argument(evaluate)
    evaluate.add_argument("policy", type=Path, metavar="POLICY", help="a saved policy (.npz or .json)")
    evaluate.set_defaults(run=_evaluate)

    demo = commands.add_parser("demo", help="train small models, route a mixed stream, report",
                               description="Train four small models on data that ships with scikit-learn, route a "
                               "mixed stream of arrays, strings and file bytes to them, and report.")
    demo.add_argument("--seed", type=_non_negative_int, default=0, help="random seed, >= 0 (default 0)")
    demo.add_argument("--repeat", type=_positive_int, default=3, help="copies of the test stream to route, >= 1 (default 3)")
    demo.set_defaults(run=_demo)
    return parser


def _serve_description() -> str:
    return ("Serve the router a config file describes over HTTP: Open Inference Protocol v2 "
            "(/v2/health/live, /v2/health/ready, /v2/models/NAME/infer, /v2/models/router/infer), "
            "POST /route and Prometheus metrics at /metrics. SIGTERM drains and stops; SIGHUP reloads the config.")


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, metavar="CONFIG", help="the router's YAML or TOML config file")
    _app_dir_argument(parser)


def _app_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--app-dir", default=".", help="directory added to the import path for the config's "
                        "'module:object' paths (default: current directory)")


def _logs_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("logs", nargs="+", type=Path, metavar="LOG", help="decision logs (.jsonl or .parquet)")


# -- commands ---------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from .serving import DecisionLog, ServingSettings, serve

    _add_import_path(args.app_dir)
    settings = ServingSettings(max_body_bytes=args.max_body_bytes, max_in_flight=args.max_in_flight,
                               body_timeout_s=args.body_timeout, admin=args.admin)
    log = DecisionLog(args.decision_log, max_bytes=args.decision_log_max_bytes) if args.decision_log else None
    serve(args.config, host=args.host, port=args.port, settings=settings,
          drain_timeout_s=args.drain_timeout, log_level=args.log_level, decision_log=log)
    return 0


def _check(args: argparse.Namespace) -> int:
    from .router import Router

    _add_import_path(args.app_dir)
    with Router.from_config(args.config) as router:
        specs = router.models.list()
        print(f"{args.config}: valid; policy {type(router.policy).__name__}; "
              f"{len(router.models)} models, {len(specs)} versions")
        for spec in specs:
            aliases = [alias for alias, version in router.models.aliases(spec.name).items() if version == spec.version]
            print(f"  {spec.name}/{spec.version}  {spec.modality}" + (f"  aliases: {', '.join(aliases)}" if aliases else ""))
    return 0


def _route(args: argparse.Namespace) -> int:
    from .router import Router

    _add_import_path(args.app_dir)
    failed = False
    with Router.from_config(args.config) as router:
        for label, data in _inputs(args.files):
            try:
                decision = router.route(data)
            except FastrouteError as error:
                failed = True
                print(json.dumps({"input": label, "error": f"{type(error).__name__}: {error}"}))
                continue
            print(json.dumps({"input": label, "model": decision.model, "version": decision.version,
                              "modality": decision.modality, "reason": decision.reason}))
    return 1 if failed else 0


def _fit(args: argparse.Namespace) -> int:
    from .analyzer import FEATURE_NAMES
    from .decision import Forest, Tree

    if args.output.suffix != ".npz":
        raise _InputError(f"trees and forests are saved as npz (never pickle): name the output {args.output.stem}.npz")
    data = _replayed(args.logs)
    policy = Tree(max_depth=args.max_depth) if args.policy == "tree" else Forest(n_trees=args.trees, max_depth=args.max_depth)
    print(f"fitting a {args.policy} on {len(data.rewards)} rewarded decisions ({data.skipped} without reward) "
          f"over models {list(data.models)}", file=sys.stderr)
    user = data.feature_names[len(FEATURE_NAMES):]
    if user:
        print(f"with the user features {list(user)} (serve the policy with them: Router.add_features)", file=sys.stderr)
    policy.fit(data.features, data.outcomes(), models=list(data.models), feature_names=data.feature_names)
    policy.save(args.output)
    print(f"saved {args.output}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .decision import load
    from .decision.offpolicy import ips, snips

    data = _replayed(args.logs)
    policy = load(args.policy)
    chosen = policy.decide_batch(data.columns(tuple(policy.feature_names))).names()
    models = list(data.models) + sorted(set(chosen) - set(data.models))  # models the log never chose add columns
    target = np.array([models.index(name) for name in chosen], dtype=np.int64)
    print(f"{len(data.rewards)} rewarded decisions ({data.skipped} without reward); "
          f"the policy agrees with the logged choice on {np.mean(target == data.actions):.1%}")
    print(f"logging policy   mean reward {data.rewards.mean():.4f}")
    for name, estimate in (("IPS", ips), ("SNIPS", snips)):
        result = estimate(data.actions, data.propensities, data.rewards, target)
        print(f"{args.policy.name} {name:<6} {result.value:.4f}  95% [{result.low:.4f}, {result.high:.4f}]  "
              f"effective n {result.effective_n:.0f}")
    return 0


def _replayed(paths: list[Path]) -> Any:
    """The logs' rewarded decisions as arrays, read with a progress bar on standard error."""
    from tqdm import tqdm

    from .serving.decision_log import read_log
    from .serving.replay import replay

    with tqdm(desc="reading decision logs", unit=" records", file=sys.stderr, disable=None) as bar:
        return replay(read_log(paths, progress=bar.update))


def _demo(args: argparse.Namespace) -> int:
    from .tools.demo import run_demo

    run_demo(seed=args.seed, repeat=args.repeat)
    return 0


# -- helpers ----------------------------------------------------------------------------


def _inputs(files: list[str]) -> Iterator[tuple[str, bytes]]:
    """(label, bytes) per input file; standard input for '-' or no file."""
    for name in files or ["-"]:
        if name == "-":
            yield "<stdin>", sys.stdin.buffer.read()
            continue
        try:
            yield name, Path(name).read_bytes()
        except OSError as error:
            raise _InputError(f"cannot read {name}: {error.strerror}") from None


class _InputError(FastrouteError):
    """A file named on the command line cannot be read or written as asked."""


def _add_import_path(directory: str) -> None:
    resolved = str(Path(directory).resolve())
    if resolved not in sys.path:
        sys.path.insert(0, resolved)


def _checked(convert: Callable[[str], Any], accept: Callable[[Any], bool], what: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _checked(int, lambda v: v >= 1, "an integer >= 1")
_non_negative_int = _checked(int, lambda v: v >= 0, "an integer >= 0")
_port = _checked(int, lambda v: 0 <= v <= 65535, "a port number in [0, 65535]")
_positive_float = _checked(float, lambda v: 0 < v < float("inf"), "a positive number")
