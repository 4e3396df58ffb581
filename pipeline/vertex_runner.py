"""The Vertex AI runner: the DAG of `pipeline.dag.create_pipeline` as a kfp v2 pipeline.

The same steps compile to a Vertex AI Pipelines spec (container steps in `vertex.image`,
Beam steps on Dataflow, `tune`/`train` as Vertex training jobs) and run on this machine
through kfp.local (Python-function steps, no container), so the entry points and argument
passing that Vertex uses are exercised by the tests. TFX analogue: `kubeflow_v2_runner.py`.
"""

from __future__ import annotations

import contextlib
import os
from typing import Literal

from pipeline.core.errors import UsageError, first_line
from pipeline.vertex.steps import DEFAULT_DAG, plan_steps, resolve_dag

# What kfp's compiler writes a spec to (.json is deprecated there and refuses some specs).
SPEC_SUFFIXES = (".yaml", ".yml")

Target = Literal["vertex", "local"]


def create_kfp_pipeline(config, *, target: Target = "vertex", dag: str = DEFAULT_DAG):
    """The kfp pipeline of the config's DAG.

    Args:
        config: the resolved `LmpipeConfig`.
        target: `vertex` (container steps for Vertex AI) or `local` (kfp.local steps).
        dag: `module:function` returning the DAG for a config (tests give their own).

    Returns:
        A kfp pipeline (a `GraphComponent`): compile it, or call it under `kfp.local`.
    """
    from kfp import dsl

    from pipeline.vertex import kfp_components
    from pipeline.vertex.checks import TRAINING_STEPS, check_vertex
    from pipeline.vertex.dataflow import dataflow_args
    from pipeline.vertex.jobs import vertex_name

    nodes = resolve_dag(dag)(config)
    vertex = config.vertex
    beam_args = None
    if target == "vertex":
        check_vertex(config, nodes)
        beam_args = dataflow_args(config)
    steps = plan_steps(config, nodes, lambda name: beam_args if name in vertex.dataflow.steps else None)
    components = {step.name: kfp_components.component_for(step, target, vertex) for step in steps}

    @dsl.pipeline(name=vertex_name(config.pipeline.name),
                  pipeline_root=vertex.pipeline_root if target == "vertex" else None)
    def lmpipe_pipeline():
        launched = {}
        for step in steps:
            arguments = {name: launched[upstream].outputs[output]
                         for name, (upstream, output) in step.inputs.items()}
            if target == "local":
                arguments.update(dag=dag, argv=list(step.argv))
            kfp_step = components[step.name](**arguments)
            if target == "local":
                kfp_step.set_env_variable("PYTHONPATH", _local_pythonpath())
            kfp_step.set_display_name(step.name)
            for upstream in step.after:
                kfp_step.after(launched[upstream])
            kfp_step.set_caching_options(step.caching and vertex.enable_caching)
            if target == "vertex" and step.name not in TRAINING_STEPS:
                if vertex.cpu_limit:
                    kfp_step.set_cpu_limit(vertex.cpu_limit)
                if vertex.memory_limit:
                    kfp_step.set_memory_limit(vertex.memory_limit)
            launched[step.name] = kfp_step

    return lmpipe_pipeline


def _local_pythonpath() -> str:
    """PYTHONPATH for kfp.local's step processes: this checkout first, whatever the working
    directory or installed copy (a step imports its component, and a test's DAG, by name)."""
    from pipeline.core.component import PROJECT_ROOT

    return os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))


def compile_pipeline(config, output: str, *, dag: str = DEFAULT_DAG) -> str:
    """Write the Vertex AI pipeline spec (kfp v2 IR YAML) to `output`.

    Args:
        config: the resolved `LmpipeConfig`.
        output: a .yaml or .yml file to write (missing parent directories are made).
        dag: `module:function` returning the DAG.

    Returns:
        The path written.

    Raises:
        UsageError: `output` cannot be a spec file, or kfp refused a value of the config.
    """
    from kfp import compiler

    check_output(output)
    with kfp_errors_as_usage("kfp cannot compile the pipeline"):
        pipeline = create_kfp_pipeline(config, target="vertex", dag=dag)
    # kfp writes as it goes: compile next to `output` and rename, so that a failed compile
    # leaves the previous spec (or none), never a cut one. The suffix stays: kfp picks the
    # format by it.
    directory, name = os.path.split(os.path.abspath(output))
    partial = os.path.join(directory, f".{name}.partial-{os.getpid()}{os.path.splitext(name)[1]}")
    try:
        os.makedirs(directory, exist_ok=True)
        with kfp_errors_as_usage("kfp cannot compile the pipeline"):
            compiler.Compiler().compile(pipeline, package_path=partial)
        os.replace(partial, output)
    except OSError as err:
        raise UsageError(f"--output {output}: cannot write it ({err.strerror or err})") from None
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return output


def check_output(output: str) -> None:
    """Raise a `UsageError` naming `--output` unless a spec file can be written at `output`.

    Args:
        output: the path given to `lmpipe compile --output`.
    """
    if os.path.isdir(output):
        raise UsageError(f"--output {output}: is a directory; give a file such as "
                         f"{os.path.join(output, 'pipeline.yaml')}")
    if not output.endswith(SPEC_SUFFIXES):
        raise UsageError(f"--output {output}: must end with .yaml or .yml (kfp writes the spec "
                         f"as YAML)")
    parent = os.path.dirname(os.path.abspath(output))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise UsageError(f"--output {output}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--output {output}: cannot write in {parent}")


@contextlib.contextmanager
def kfp_errors_as_usage(what: str):
    """Turn a ValueError of kfp or aiplatform (a value they refuse) into one `UsageError` line.

    The config checks mirror their rules; this catches whatever a newer version adds.

    Args:
        what: what was being done, for the message.
    """
    try:
        yield
    except ValueError as err:
        raise UsageError(f"{what}: {first_line(err)}") from None


def run_kfp_local(config, *, dag: str = DEFAULT_DAG, pipeline_root: str | None = None) -> str:
    """Run the pipeline through kfp.local's subprocess runner in this Python environment.

    Args:
        config: the resolved `LmpipeConfig`.
        dag: `module:function` returning the DAG.
        pipeline_root: where kfp.local writes artifacts; `<pipeline.root>/kfp_local` if unset.

    Returns:
        The kfp.local pipeline root.

    Raises:
        RuntimeError: a step failed (kfp.local's own error).
    """
    from kfp import local

    root = pipeline_root or os.path.join(os.path.abspath(config.pipeline.root), "kfp_local")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root,
               workspace_root=os.path.join(root, "workspace"))
    create_kfp_pipeline(config, target="local", dag=dag)()
    return root


def submit(config, *, dry_run: bool = False) -> dict:
    """Compile the pipeline and create a Vertex AI `PipelineJob` for one run.

    Args:
        config: the resolved `LmpipeConfig`.
        dry_run: build the request with anonymous credentials and send nothing.

    Returns:
        The request for a dry run, else the created job's name and console link.

    Raises:
        CloudError: no credentials, or Vertex AI refused or could not be reached.
    """
    from pipeline.vertex import jobs

    return _with_spec(config, lambda spec: jobs.submit(config, spec, dry_run=dry_run))


def schedule(config, *, dry_run: bool = False) -> dict:
    """Compile the pipeline and create a Vertex AI `PipelineJobSchedule` on `schedule.cron`.

    Args:
        config: the resolved `LmpipeConfig`.
        dry_run: build the request with anonymous credentials and send nothing.

    Returns:
        The request for a dry run, else the created schedule's name.

    Raises:
        CloudError: no credentials, or Vertex AI refused or could not be reached.
    """
    from pipeline.vertex import jobs

    jobs.schedule_arguments(config)
    return _with_spec(config, lambda spec: jobs.schedule(config, spec, dry_run=dry_run))


def _with_spec(config, action):
    import tempfile

    from pipeline.vertex.jobs import require_submit_fields

    require_submit_fields(config)
    with tempfile.TemporaryDirectory() as tmp:
        spec = compile_pipeline(config, os.path.join(tmp, "pipeline.yaml"))
        with kfp_errors_as_usage("Vertex AI refuses the request"):
            return action(spec)
