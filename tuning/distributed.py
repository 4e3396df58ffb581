"""KerasTuner's parallel mode: one chief runs the oracle, workers run trials.

KerasTuner reads three environment variables: `KERASTUNER_TUNER_ID` (`chief`, or a unique
name per worker), `KERASTUNER_ORACLE_IP` and `KERASTUNER_ORACLE_PORT` (where the chief
serves the oracle over gRPC). Vertex AI sets `TF_CONFIG` (and `CLUSTER_SPEC`) in every
replica of a training job instead, so `keras_tuner_env` derives the three from those: the
chief (`chief`, or `workerpool0`) serves on its own port from the cluster spec, every
other replica is a worker named after its task (`worker0`, `worker1`, ...). Variables the
user set win; a one-replica cluster (or none) is a plain single-process sweep.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping

CHIEF_TASKS = ("chief", "workerpool0")
TUNER_ID = "KERASTUNER_TUNER_ID"
ORACLE_IP = "KERASTUNER_ORACLE_IP"
ORACLE_PORT = "KERASTUNER_ORACLE_PORT"


def keras_tuner_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The KerasTuner variables this process should get from its cluster spec.

    Args:
        environ: the process environment (`TF_CONFIG`, `CLUSTER_SPEC`, `KERASTUNER_*`).

    Returns:
        {KERASTUNER_TUNER_ID, KERASTUNER_ORACLE_IP, KERASTUNER_ORACLE_PORT}, or {} when
        they are already set or there is no cluster of more than one replica.
    """
    if ORACLE_IP in environ:
        return {}
    cluster, task_type, index = _cluster(environ)
    replicas = sum(len(addresses) for addresses in cluster.values())
    if replicas < 2 or task_type is None:
        return {}
    chief_type = next((t for t in CHIEF_TASKS if cluster.get(t)), "worker")
    host, _, port = cluster[chief_type][0].rpartition(":")
    is_chief = task_type == chief_type and index == 0
    return {TUNER_ID: "chief" if is_chief else f"{task_type}{index}",
            # The chief listens on every interface; workers dial its cluster address.
            ORACLE_IP: "0.0.0.0" if is_chief else host,
            ORACLE_PORT: port}


def _cluster(environ: Mapping[str, str]) -> tuple[dict, str | None, int]:
    for name in ("TF_CONFIG", "CLUSTER_SPEC"):
        try:
            spec = json.loads(environ.get(name) or "{}")
        except ValueError:
            continue
        cluster, task = spec.get("cluster") or {}, spec.get("task") or {}
        if cluster and task.get("type"):
            return cluster, task["type"], int(task.get("index", 0))
    return {}, None, 0


def role(environ: Mapping[str, str]) -> str:
    """`chief`, `worker` or `single` (no parallel tuning), as KerasTuner will see it.

    Raises:
        UsageError: the variables cannot make a parallel sweep (KerasTuner would fail
            inside the chief, listen on another port, or have a worker wait an hour).
    """
    check_variables(environ)
    if ORACLE_IP not in environ:
        return "single"
    return "chief" if "chief" in environ.get(TUNER_ID, "") else "worker"


def check_variables(environ: Mapping[str, str]) -> None:
    """Refuse KerasTuner variables that are missing, empty or out of range, by name."""
    from pipeline.core.errors import UsageError

    if ORACLE_IP not in environ:
        # Without the chief's address KerasTuner runs a sweep of its own: a worker whose
        # export was forgotten would run every trial again, and fight the chief's lock.
        for name in (ORACLE_PORT, TUNER_ID):
            if name in environ:
                raise UsageError(f"{name} is set but {ORACLE_IP} is not: a parallel sweep "
                                 f"needs {ORACLE_IP}, {ORACLE_PORT} and {TUNER_ID}")
        return
    for name in (ORACLE_IP, ORACLE_PORT, TUNER_ID):
        if not environ.get(name, "").strip():
            raise UsageError(f"{name} is not set: a parallel sweep needs {ORACLE_IP}, "
                             f"{ORACLE_PORT} and {TUNER_ID} (chief, or a worker's name)")
    port = environ[ORACLE_PORT]
    if not (port.isdigit() and 1 <= int(port) <= 65535):
        raise UsageError(f"{ORACLE_PORT}={port}: expected a port number, 1 to 65535")


@contextlib.contextmanager
def waiting_for_chief(environ: Mapping[str, str], seconds: float):
    """Run a worker's search waiting at most `seconds` for each answer of the chief.

    KerasTuner's client waits an hour (a module constant, read at each call) for a chief
    that may still be starting; when none answers, the gRPC error becomes one line that
    names the address.

    Args:
        environ: the process environment (`KERASTUNER_ORACLE_IP/PORT`).
        seconds: `tuning.chief_wait_seconds`.

    Raises:
        UsageError: no chief answered in time.
    """
    import grpc
    from keras_tuner.src.distribute import oracle_client

    from pipeline.core.errors import UsageError

    waited, oracle_client.TIMEOUT = oracle_client.TIMEOUT, seconds
    try:
        yield
    except grpc.RpcError as error:
        if error.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE):
            raise
        raise UsageError(
            f"no chief answered at {environ[ORACLE_IP]}:{environ[ORACLE_PORT]} within "
            f"{seconds:g} s (tuning.chief_wait_seconds): start the chief (KERASTUNER_TUNER_ID="
            f"chief) or fix {ORACLE_IP}/{ORACLE_PORT}") from None
    finally:
        oracle_client.TIMEOUT = waited


@contextlib.contextmanager
def serving_as_chief(environ: Mapping[str, str]):
    """Run the chief's search, turning a server that cannot listen into one line.

    KerasTuner's chief serves on `KERASTUNER_ORACLE_IP:PORT`; an address not on this
    machine, or a port another process holds, fails inside gRPC with a RuntimeError.

    Args:
        environ: the process environment (`KERASTUNER_ORACLE_IP/PORT`).

    Raises:
        UsageError: the chief could not listen there.
    """
    from pipeline.core.errors import UsageError

    try:
        yield
    except RuntimeError as error:
        if not str(error).startswith("Failed to bind to address"):
            raise
        raise UsageError(
            f"the chief cannot listen on {environ[ORACLE_IP]}:{environ[ORACLE_PORT]} (not an "
            f"address of this machine, or the port is taken): fix {ORACLE_IP}/{ORACLE_PORT}"
        ) from None
