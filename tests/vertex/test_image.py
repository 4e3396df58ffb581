"""The Dockerfile that builds `vertex.image` agrees with what the project pins and ships.

No image is built here (no registry access); these are the facts a build relies on.
"""

from __future__ import annotations

import fnmatch
import re
import sys

from tests.conftest import REPO


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements" / "constraints.txt").read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep:
            pins[name.strip().lower()] = version.strip()
    return pins


def test_base_image_is_the_beam_sdk_of_the_pinned_beam_and_python():
    # Dataflow runs the image as its SDK worker: Beam and Python must match the launcher's.
    dockerfile = (REPO / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.M)
    python = re.search(r'python_requires=">=(\d+\.\d+)', (REPO / "setup.py").read_text()).group(1)
    assert base == f"apache/beam_python{python}_sdk:{_pins()['apache-beam']}"
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == python


def test_image_installs_the_pinned_tensorflow_and_the_project():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert f'"${{TENSORFLOW}}=={_pins()["tensorflow"]}"' in dockerfile
    assert "-c requirements/constraints.txt ." in dockerfile


def test_image_copies_every_package_and_dockerignore_keeps_them():
    dockerfile = (REPO / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY\s+(\S+)\s", dockerfile, flags=re.M))
    packages = re.search(r"find_packages\(include=\[([^\]]*)\]", (REPO / "setup.py").read_text()).group(1)
    for package in re.findall(r'"(\w+)\*"', packages):
        assert package in copied, package
    ignored = [line for line in (REPO / ".dockerignore").read_text().splitlines()
               if line and not line.startswith("#")]
    for path in copied:
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), path
