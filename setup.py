"""lmpipe: raw text -> a trained, tuned, evaluated, servable Transformer LM on the TensorFlow stack.

Exact versions of everything (direct and transitive) live in requirements/constraints.txt;
install with `pip install -c requirements/constraints.txt -e .` (what `make setup` does).
This file is also what Beam ships to Dataflow workers (`--setup_file=./setup.py`).
"""

from setuptools import find_packages, setup

setup(
    name="lmpipe",
    version="0.1.0",
    description="Raw text to a trained, tuned, evaluated and servable Transformer language model",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["pipeline*", "components*", "models*", "tuning*"]),
    install_requires=[
        "tensorflow==2.21.0",
        "tensorflow-text==2.21.1",
        "keras==3.15.1",
        "keras-hub==0.32.0",
        "apache-beam[gcp]==2.77.0",
        "pyarrow==25.0.1",  # ingest reads Parquet and Arrow (save_to_disk) inputs (Beam's pin)
        "tensorflow-model-analysis==0.52.0",
        "tf-keras==2.21.0",
        "keras-tuner==1.4.8",
        "scikit-learn==1.9.1",  # KerasTuner's Bayesian optimization (tuning.algorithm: bayesian)
        "scipy==1.17.1",  # the Halton sequence of tuning.sampler: quasi_random
        "kfp==2.17.3",
        "google-cloud-aiplatform==1.165.1",
        "google-cloud-pipeline-components==2.22.0",
        "sentencepiece==0.2.3",
        "tensorboard==2.21.0",
        "matplotlib==3.11.2",
        "rouge-score==0.1.2",
        "sacrebleu==2.6.0",
        "PyYAML==6.0.4",
        "aiohttp==3.14.5",  # lmpipe serve: asyncio HTTP server (batching, server-sent events)
    ],
    extras_require={"dev": ["pytest==9.2.0", "pytest-timeout==2.4.0", "pytest-xdist==3.8.0"]},
    entry_points={"console_scripts": ["lmpipe=pipeline.cli:main_entry"]},
)
