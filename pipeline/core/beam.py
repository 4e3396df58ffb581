"""Beam pipeline options from `pipeline.beam_args`: the one place that builds them, for every
Beam step (ingest, labels, transform, and TFMA's in evaluate)."""

from __future__ import annotations

DEFAULT_DIRECT_MODE = "--direct_running_mode=in_memory"


def pipeline_options(beam_args: tuple[str, ...] | list[str]):
    """Build `PipelineOptions`, giving the DirectRunner an explicit running mode.

    Without a running mode Beam 2.77's DirectRunner first tries the Prism runner, which
    downloads a binary at run time (docs/architecture.md, quirks), so one is always set.

    Args:
        beam_args: Beam command-line options, passed through verbatim.

    Returns:
        `apache_beam.options.pipeline_options.PipelineOptions`.
    """
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    args = list(beam_args)
    runner = PipelineOptions(args).view_as(StandardOptions).runner
    direct = runner is None or runner in ("DirectRunner", "direct")
    if direct and not any(a.startswith("--direct_running_mode") for a in args):
        args.append(DEFAULT_DIRECT_MODE)
    return PipelineOptions(args)


def single_process(beam_args: tuple[str, ...] | list[str]) -> bool:
    """Whether Beam runs everything in this one process (the DirectRunner's `in_memory`
    mode, the default here), so a DoFn may use the machine's other cores itself."""
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    options = pipeline_options(beam_args)
    runner = options.view_as(StandardOptions).runner
    direct = runner is None or runner in ("DirectRunner", "direct")
    return direct and options.view_as(DirectOptions).direct_running_mode == "in_memory"
