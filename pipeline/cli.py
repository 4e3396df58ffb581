"""`lmpipe`: the command line.

Results go to stdout, progress to stderr. Exit status: 0 success, 1 failure (a component
failed, the root is in use), 2 usage or config error, or a path the command needs that
cannot be used (a directory where a file belongs, a damaged metadata store, a full disk, no
permission): one line on stderr naming the key or path, no traceback. Heavy libraries are
imported only by the commands that need them, so `lmpipe config`, `runs`, and cached
reruns start fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from pipeline.terminal import filter_native_stderr, quiet_environment


# Set before anything imports TensorFlow (a user's own setting wins). TensorFlow turns its
# oneDNN kernels on by default only on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX;
# on an AVX2-only CPU they ran the training step's matmuls 2-2.5x faster than TensorFlow's
# own kernels and the whole step faster (bench/NOTES.md, issue 26). Child processes (Beam
# workers, `lmpipe serve`, Vertex steps run as `lmpipe component`) inherit it.
TENSORFLOW_DEFAULTS = {"TF_ENABLE_ONEDNN_OPTS": "1"}


def tensorflow_defaults() -> None:
    """Put `TENSORFLOW_DEFAULTS` into the environment where the user has not set them."""
    for key, value in TENSORFLOW_DEFAULTS.items():
        os.environ.setdefault(key, value)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the command, and return the exit status."""
    quiet_environment()
    tensorflow_defaults()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    from pipeline.core.errors import LockedError, Terminated, UsageError
    from pipeline.local_runner import ComponentFailed

    if args.filter_stderr:
        filter_native_stderr()
    _SIGNALS.clear()
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_signal)  # left alone when ignored (a background job)
    try:
        return args.handler(args) or 0
    except UsageError as err:
        return _fail(str(err), 2)
    except LockedError as err:
        return _fail(str(err), 1)
    except ComponentFailed as err:
        if _SIGNALS:
            return _signalled()
        if isinstance(err.cause, UsageError):
            return _fail(f"{err.component}: {err.cause}", 2)
        where = getattr(err.cause, "log_path", None)
        detail = f" (traceback in {where})" if where else ""
        return _fail(f"{err.component} failed: {step_error(err.cause)}{detail}", 1)
    except BrokenPipeError:
        # The reader went away (`lmpipe runs | head`): stop quietly, as `cat` would. Python
        # would otherwise fail again flushing stdout at exit (its documented recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except Terminated:
        return _fail("terminated", 128 + signal.SIGTERM)
    except KeyboardInterrupt:
        return _signalled()
    except Exception:
        if _SIGNALS:
            return _signalled()
        raise


# The signals received. Beam re-raises an exception from inside a transform as a
# RuntimeError (after logging its traceback), so a Beam step stopped by Ctrl-C or SIGTERM
# fails as a component; this says it was the signal.
_SIGNALS: list[int] = []


def _on_signal(signum, frame):
    from pipeline.core.errors import Terminated

    _SIGNALS.append(signum)
    # The run is being torn down: Beam's log of the wrapped interrupt is noise.
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL + 1)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _signalled() -> int:
    """Exit status 143 (`terminated`) after SIGTERM, else 130 (`interrupted`)."""
    if signal.SIGTERM in _SIGNALS:
        return _fail("terminated", 128 + signal.SIGTERM)
    return _fail("interrupted", 130)


def step_error(err: BaseException) -> str:
    """A failed step's error as `Class: message` on one line.

    The message's first line, or, when the message is itself a whole traceback (what
    Beam's multi-process workers send back), its last line, which names the error; the
    whole text is in the step's log file.

    Args:
        err: the step's error.

    Returns:
        The line.
    """
    lines = str(err).strip().splitlines()
    if len(lines) > 1 and lines[0].startswith("Traceback (most recent call last)"):
        return lines[-1].strip()
    return f"{err.__class__.__name__}: {lines[0]}" if lines else err.__class__.__name__


def _fail(message: str, status: int) -> int:
    print(f"lmpipe: error: {message}", file=sys.stderr, flush=True)
    return status


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lmpipe", description="Train, tune, evaluate and serve a Transformer LM.")
    parser.set_defaults(command=None, filter_stderr=True)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    _add_local_commands(sub)
    _add_generate(sub)
    _add_serve(sub)
    _add_step_and_vertex_commands(sub)
    return parser


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="pipeline YAML file (e.g. pipeline.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key; VALUE is YAML (repeatable)")


def _add_local_commands(sub) -> None:
    """run, config, runs, lineage, tune: the pipeline on this machine and its records."""
    run = sub.add_parser("run", help="run the pipeline locally")
    _config_args(run)
    run.add_argument("--until", metavar="COMPONENT", help="stop after this component")
    run.add_argument("--no-cache", action="store_true", help="run every component again")
    run.set_defaults(handler=cmd_run)

    config = sub.add_parser("config", help="print the resolved config")
    _config_args(config)
    config.set_defaults(handler=cmd_config)

    runs = sub.add_parser("runs", help="the retraining history of a pipeline root: date, data "
                                       "size, metrics, blessed or not, pushed version")
    where = runs.add_mutually_exclusive_group(required=True)
    where.add_argument("--root", help="the pipeline root")
    where.add_argument("--config", help="take the root from this config")
    runs.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a key of --config's file; VALUE is YAML (repeatable)")
    runs.add_argument("--limit", type=int, default=20, help="newest N runs (default 20)")
    runs.set_defaults(handler=cmd_runs)

    lineage = sub.add_parser("lineage", help="show what inputs and config made an artifact")
    lineage.add_argument("path", help="an artifact directory, a serving version, a serving "
                                      "directory (its latest version), or a file inside one")
    lineage.set_defaults(handler=cmd_lineage)

    tune = sub.add_parser("tune", help="run the hyperparameter sweep alone and print its trials")
    _config_args(tune)
    tune.set_defaults(handler=cmd_tune)


# `lmpipe generate`'s sampling defaults, which `lmpipe serve` gives a request that leaves
# them out (keyed by the `generate` signature's input names).
GENERATE_DEFAULTS = {"max_new_tokens": 64, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                     "seed": 0, "stream_chunk": 8}


def _add_generate(sub) -> None:
    """generate: text from an exported or pushed model."""
    generate = sub.add_parser("generate", help="generate text with an exported or pushed model")
    generate.add_argument("--model", required=True,
                          help="a SavedModel directory, a model artifact (its saved_model/), "
                               "or a serving directory (its latest version)")
    prompts = generate.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompt", help="the prompt text")
    prompts.add_argument("--prompts-file", help="a file with one prompt per line")
    d = GENERATE_DEFAULTS
    generate.add_argument("--max-tokens", type=int, default=d["max_new_tokens"],
                          help="new tokens per prompt (default %(default)s)")
    generate.add_argument("--temperature", type=float, default=d["temperature"],
                          help="0 is greedy (default %(default)s)")
    generate.add_argument("--top-k", type=int, default=d["top_k"],
                          help="sample from the k likeliest tokens; 0 keeps all (default)")
    generate.add_argument("--top-p", type=float, default=d["top_p"],
                          help="nucleus sampling's probability mass (default %(default)s)")
    generate.add_argument("--seed", type=int, default=d["seed"],
                          help="the same seed repeats the same sample (default %(default)s)")
    generate.add_argument("--stream-chunk", type=int, default=d["stream_chunk"],
                          help="new tokens per model call while streaming (0: as many as one "
                               "call can make; default %(default)s)")
    generate.set_defaults(handler=cmd_generate)


def _add_serve(sub) -> None:
    """serve: an HTTP server (TF Serving's REST API, Vertex AI's container contract)."""
    serve = sub.add_parser("serve", help="serve an exported or pushed model over HTTP "
                                         "(TF Serving's REST API)")
    serve.add_argument("--model", required=True,
                       help="a SavedModel directory, a model artifact, or a serving directory "
                            "(its newest version, watched for new ones)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on "
                                                           "(default %(default)s)")
    serve.add_argument("--port", type=int, default=None,
                       help="port (default: $AIP_HTTP_PORT, else 8501; 0 picks a free one)")
    serve.add_argument("--name", default="lmpipe",
                       help="the model's name in the routes (default %(default)s)")
    serve.add_argument("--max-batch-size", type=int, default=16,
                       help="most rows in one model call (default %(default)s)")
    serve.add_argument("--batch-timeout-ms", type=float, default=5.0,
                       help="longest a request waits for others to batch with "
                            "(default %(default)s)")
    serve.add_argument("--max-queue", type=int, default=64,
                       help="most rows waiting; beyond, requests get 503 (default %(default)s)")
    serve.add_argument("--poll-seconds", type=float, default=2.0,
                       help="how often a serving directory is checked for a new version "
                            "(default %(default)s)")
    serve.set_defaults(handler=cmd_serve)


def _add_step_and_vertex_commands(sub) -> None:
    """component (one step alone, as Vertex runs it), compile, submit, schedule."""
    component = sub.add_parser(
        "component", help="run one component alone (what a Vertex AI pipeline step executes)")
    component.add_argument("name", help="the component, e.g. transform")
    _config_args(component)
    component.add_argument("--input", action="append", default=[], metavar="NAME=URI",
                           help="an input artifact's location (repeatable)")
    component.add_argument("--output", action="append", default=[], metavar="NAME=URI",
                           help="where to write an output artifact (repeatable)")
    component.set_defaults(handler=cmd_component)

    compile_ = sub.add_parser("compile", help="write the Vertex AI pipeline spec (kfp v2)")
    compile_.add_argument("--target", choices=["vertex"], default="vertex",
                          help="where the pipeline runs (default and only: vertex)")
    _config_args(compile_)
    compile_.add_argument("--output", required=True, metavar="PATH", help="the spec file (YAML)")
    compile_.set_defaults(handler=cmd_compile)

    for name, handler, text in (("submit", cmd_submit, "run the pipeline once on Vertex AI"),
                                ("schedule", cmd_schedule, "run the pipeline on Vertex AI on schedule.cron")):
        cloud = sub.add_parser(name, help=text)
        cloud.add_argument("--target", choices=["vertex"], default="vertex",
                           help="where the pipeline runs (default and only: vertex)")
        _config_args(cloud)
        cloud.add_argument("--dry-run", action="store_true",
                           help="print the request instead of sending it (no credentials needed)")
        cloud.set_defaults(handler=handler)


def cmd_run(args) -> int:
    from pipeline.core.configio import load_config
    from pipeline.local_runner import run_pipeline

    config = load_config(args.config, args.set)
    _require_root(config.pipeline.root)
    record = run_pipeline(config, until=args.until, no_cache=args.no_cache)
    print(format_run(record, os.path.abspath(config.pipeline.root)))
    return 0


def _require_root(root: str) -> None:
    """Create `pipeline.root`, or say in one line why it cannot be used."""
    from pipeline.core.errors import UsageError

    if os.path.exists(root) and not os.path.isdir(root):
        raise UsageError(f"pipeline.root: {root} is a file, not a directory")
    try:
        os.makedirs(root, exist_ok=True)
    except OSError as err:
        raise UsageError(f"pipeline.root: cannot create directory {root} "
                         f"({err.strerror or err.__class__.__name__})") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise UsageError(f"pipeline.root: directory {root} is not writable")


def format_run(record: dict, root: str) -> str:
    """The human summary of a run, for stdout."""
    from pipeline.core.contracts.blessing import METRICS_FILE

    lines = [f"run {record['run_id']}: {record['status']}"]
    for name, entry in record["components"].items():
        lines.append(f"  {name:<10} {entry['status']:<9} {entry['seconds']:>8.1f}s")
    metrics = {k: v for k, v in record["metrics"].items() if v is not None}
    if metrics:
        lines.append("metrics:")
        lines.extend(f"  {k}: {_show_metric(v)}" for k, v in metrics.items())
    model = record["components"].get("train", {}).get("outputs", {}).get("model")
    if model:
        lines.append(f"model: {model}")
    evaluation = record["components"].get("evaluate", {}).get("outputs", {}).get("evaluation")
    if evaluation:
        lines.append(f"metrics file: {os.path.join(evaluation, METRICS_FILE)}")
        report = os.path.join(evaluation, "report.html")
        if os.path.exists(report):
            lines.append(f"report: {report}")
    lines.append(f"pushed model: {record['pushed_model'] or 'none'}")
    lines.append(f"run record: {os.path.join(root, 'latest_run.json')}")
    return "\n".join(lines)


def _show_metric(value) -> str:
    """Rates and counts as whole numbers with separators, other floats to 4 digits."""
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def cmd_config(args) -> int:
    from pipeline.core.configio import dump_yaml, load_config

    sys.stdout.write(dump_yaml(load_config(args.config, args.set)))
    return 0


def cmd_runs(args) -> int:
    from pipeline.core.errors import UsageError
    from pipeline.history import format_runs

    if not 1 <= args.limit < 2**63:  # SQLite's LIMIT is a signed 64-bit integer
        raise UsageError(f"--limit {args.limit}: expected a positive number of runs")
    if args.config:
        from pipeline.core.configio import load_config

        root = load_config(args.config, args.set).pipeline.root
    else:
        root = args.root
    print(format_runs(os.path.abspath(root), args.limit))
    return 0


def cmd_lineage(args) -> int:
    from pipeline.history import format_lineage

    print(format_lineage(args.path))
    return 0


def cmd_generate(args) -> int:
    from pipeline.serving import generate_cli

    return generate_cli(args)


def cmd_serve(args) -> int:
    from pipeline.core.errors import UsageError
    from pipeline.serve import serve_cli

    if args.port is None:  # the Vertex AI container contract names the port
        port = os.environ.get("AIP_HTTP_PORT", "8501")
        if not port.isascii() or not port.isdigit():
            raise UsageError(f"AIP_HTTP_PORT={port!r}: not a port number")
        args.port = int(port)
    return serve_cli(args, GENERATE_DEFAULTS)


def cmd_tune(args) -> int:
    from pipeline.core.configio import load_config
    from pipeline.tune_command import tune

    print(tune(load_config(args.config, [*args.set, "tuning.enabled=true"])))
    return 0


def cmd_component(args) -> int:
    from pipeline.core.configio import load_config
    from pipeline.entrypoint import run_component, parse_pairs

    config = load_config(args.config, args.set)
    result = run_component(args.name, config, parse_pairs(args.input, "--input"),
                           parse_pairs(args.output, "--output"))
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def cmd_compile(args) -> int:
    from pipeline.core.configio import load_config
    from pipeline.vertex_runner import compile_pipeline

    path = compile_pipeline(load_config(args.config, args.set), args.output)
    print(path)
    return 0


def cmd_submit(args) -> int:
    from pipeline.vertex_runner import submit

    return _vertex_request(args, submit)


def cmd_schedule(args) -> int:
    from pipeline.vertex_runner import schedule

    return _vertex_request(args, schedule)


def _vertex_request(args, action) -> int:
    """Run `submit` or `schedule`; a cloud-side failure is one line and exit status 1."""
    from pipeline.core.configio import load_config
    from pipeline.core.gcloud import CloudError

    config = load_config(args.config, args.set)
    try:
        result = action(config, dry_run=args.dry_run)
    except CloudError as err:
        return _fail(str(err), 1)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def main_entry() -> None:
    """The `lmpipe` console script."""
    sys.exit(main())


if __name__ == "__main__":
    main_entry()
