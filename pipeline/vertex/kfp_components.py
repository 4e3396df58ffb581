"""kfp components for the steps: containers for Vertex AI, Python functions for kfp.local.

Both run the same arguments (`steps.config_argv` + `steps.artifact_argv`); the container
runs `lmpipe component <name>` in the project's image, the Python function (kfp.local's
subprocess runner only runs Python-function components) parses them with the same CLI parser
and calls `pipeline.entrypoint.run_component`.
"""

from __future__ import annotations

import inspect
import linecache

from kfp import dsl

from pipeline.vertex.steps import Step, artifact_argv

# lmpipe artifact types that have a matching kfp system type; the rest are system.Artifact.
KFP_TYPES = {"Documents": "Dataset", "Examples": "Dataset", "Model": "Model"}


def kfp_type(kind: str) -> str:
    """The kfp artifact class name for an lmpipe artifact type."""
    return KFP_TYPES.get(kind, "Artifact")


def component_for(step: Step, target: str, vertex):
    """The kfp component of `step`: a Python function for kfp.local, else a container
    (a Vertex CustomJob for the training steps).

    Args:
        step: the task.
        target: `vertex` or `local`.
        vertex: the `VertexConfig`.

    Returns:
        The component.
    """
    from pipeline.vertex.checks import TRAINING_STEPS

    if target == "local":
        return python_component(step)
    component = container_component(step, vertex.image)
    if step.name in TRAINING_STEPS:
        machine = getattr(vertex, TRAINING_STEPS[step.name])
        component = custom_job_component(component, step, machine, vertex)
    return component


def container_component(step: Step, image: str):
    """A kfp container component that runs `lmpipe component <name>` for `step`.

    Args:
        step: the task.
        image: the container image (`vertex.image`).

    Returns:
        The component (callable with the upstream artifacts as keyword arguments).
    """
    names = [*step.inputs, *step.outputs]
    annotations = {name: dsl.Input[getattr(dsl, kfp_type(step.input_types[name]))]
                   for name in step.inputs}
    annotations.update({name: dsl.Output[getattr(dsl, kfp_type(kind))]
                        for name, kind in step.outputs.items()})

    def body(*channels):
        by_name = dict(zip(names, channels))
        attribute = "uri" if step.use_uris else "path"

        def ref(io: str, name: str):
            return getattr(by_name[name], attribute)

        return dsl.ContainerSpec(image=image, command=["lmpipe", "component", step.name],
                                 args=[*step.argv, *artifact_argv(step.inputs, step.outputs, ref)])

    # kfp reads a component's interface from its signature; ours depends on the DAG.
    body.__signature__ = inspect.Signature([
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotations[name])
        for name in names])
    body.__name__ = step.name
    body.__doc__ = f"lmpipe component {step.name}"
    return dsl.container_component(body)


_PYTHON_STEP = '''def {function}({parameters}):
    from pipeline.vertex.local_step import run_step
    run_step({name!r}, dag, argv, {{{inputs}}}, {{{outputs}}})
'''


def python_component(step: Step):
    """A kfp Python-function component that runs `step` through `run_component`.

    kfp ships a Python component as its source text, and reads its interface from the
    signature, so the function is generated per step (its parameters are the step's
    artifacts) and its source is registered with `linecache` for `inspect.getsource`.

    Args:
        step: the task.

    Returns:
        The component; call it with `dag`, `argv` and the upstream artifacts.
    """
    parameters = ["dag: str", "argv: List[str]"]
    parameters += [f"{name}: Input[{kfp_type(kind)}]" for name, kind in step.input_types.items()]
    parameters += [f"{name}: Output[{kfp_type(kind)}]" for name, kind in step.outputs.items()]
    source = _PYTHON_STEP.format(
        function=step.name, parameters=", ".join(parameters), name=step.name,
        inputs=", ".join(f"{n!r}: {n}" for n in step.inputs),
        outputs=", ".join(f"{n!r}: {n}" for n in step.outputs))
    filename = f"<lmpipe kfp step {step.name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict = {}
    exec("from typing import *\nfrom kfp.dsl import *\n", namespace)
    # dont_inherit: this module's `from __future__ import annotations` would turn the
    # annotations kfp reads into strings.
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)
    return dsl.component(namespace[step.name], base_image="python:3.11",
                         install_kfp_package=False)


def custom_job_component(component, step: Step, machine, vertex):
    """Wrap a container component as a Vertex CustomJob with its worker pools.

    Uses google-cloud-pipeline-components' `create_custom_training_job_from_component`:
    worker pool 0 holds the chief, pool 1 the `replica_count - 1` workers (same machine),
    and Vertex sets `TF_CONFIG` (chief/worker) in each replica, which the `multi_worker`
    strategy reads.

    Args:
        component: the step's container component.
        step: the task.
        machine: its `VertexMachineConfig` (`vertex.train` or `vertex.tune`).
        vertex: the `VertexConfig` (service account, labels).

    Returns:
        The CustomJob component, with the same artifact inputs and outputs.
    """
    from google_cloud_pipeline_components.v1.custom_job import (
        create_custom_training_job_from_component,
    )

    job = create_custom_training_job_from_component(
        component, display_name=f"lmpipe-{step.name}", replica_count=machine.replica_count,
        machine_type=machine.machine_type, accelerator_type=machine.accelerator_type or "",
        accelerator_count=machine.accelerator_count if machine.accelerator_type else 0,
        boot_disk_size_gb=machine.boot_disk_size_gb, service_account=vertex.service_account or "",
        labels=vertex.label_dict() or None)
    if machine.tpu_topology:
        # The helper has no TPU topology argument; multi-host TPU slices need it.
        for pool in job.component_spec.inputs["worker_pool_specs"].default:
            pool["machine_spec"]["tpu_topology"] = machine.tpu_topology
    return job
