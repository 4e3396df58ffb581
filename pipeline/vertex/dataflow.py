"""The Beam options that send a Beam step (ingest, transform, evaluate) to Dataflow."""

from __future__ import annotations

from pipeline.core.errors import ConfigError


def dataflow_args(config) -> tuple[str, ...] | None:
    """The Beam options of the steps in `vertex.dataflow.steps`: `pipeline.beam_args` + Dataflow's.

    Unset locations derive from `vertex`: project and region from `vertex.project` and
    `vertex.location`, temp and staging under `vertex.pipeline_root`, the worker image from
    `vertex.image` (the Dockerfile builds on the Beam SDK image, so one image serves both)
    unless `setup_file` ships the package instead.

    Args:
        config: the resolved `LmpipeConfig`.

    Returns:
        The options, or None when `vertex.dataflow.runner` keeps Beam inside the step
        (the steps then run with `pipeline.beam_args` alone).
    """
    vertex, dataflow = config.vertex, config.vertex.dataflow
    if dataflow.runner != "DataflowRunner":
        return None
    project = dataflow.project or vertex.project
    if project is None:
        raise ConfigError("vertex.project", "is required for Beam steps on Dataflow "
                          "(or set vertex.dataflow.project)")
    temp, staging = dataflow.temp_location, dataflow.staging_location
    if vertex.pipeline_root is None and (temp is None or staging is None):
        raise ConfigError("vertex.pipeline_root", "is required for Dataflow's temp and staging "
                          "locations (or set vertex.dataflow.temp_location and staging_location)")
    base = (vertex.pipeline_root or "").rstrip("/")
    args = [
        "--runner=DataflowRunner",
        f"--project={project}",
        f"--region={dataflow.region or vertex.location}",
        f"--temp_location={temp or base + '/dataflow/tmp'}",
        f"--staging_location={staging or base + '/dataflow/staging'}",
    ]
    if dataflow.setup_file:
        args.append(f"--setup_file={dataflow.setup_file}")
    else:
        args.append(f"--sdk_container_image={dataflow.sdk_container_image or vertex.image}")
    args += [f"--machine_type={dataflow.machine_type}",
             f"--max_num_workers={dataflow.max_num_workers}"]
    account = dataflow.service_account_email or vertex.service_account
    if account:
        args.append(f"--service_account_email={account}")
    return (*config.pipeline.beam_args, *args, *dataflow.extra_args)
