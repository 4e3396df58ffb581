# The lmpipe image: every Vertex AI pipeline step, every Vertex training replica and every
# Dataflow worker runs it. It starts from the Apache Beam SDK image of the pinned Beam
# version and Python, so Dataflow can use it as --sdk_container_image (its entrypoint,
# /opt/apache/beam/boot, is kept; Vertex steps give their own command).
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/lmpipe:TAG .
#   docker build --build-arg TENSORFLOW=tensorflow -t ...   # CPU only, about 3 GB smaller
FROM apache/beam_python3.11_sdk:2.77.0

# tensorflow[and-cuda] brings the CUDA libraries for the GPU machines of vertex.train.
ARG TENSORFLOW="tensorflow[and-cuda]"

ENV PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KERAS_BACKEND=tensorflow

WORKDIR /app

# Dependencies first, from setup.py and the pinned constraints alone, so this layer is
# reused while only the code changes. The packages themselves come from /app (PYTHONPATH).
COPY requirements/constraints.txt requirements/constraints.txt
COPY setup.py setup.py
RUN pip install --no-cache-dir -c requirements/constraints.txt "${TENSORFLOW}==2.21.0" \
    && pip install --no-cache-dir -c requirements/constraints.txt . \
    && pip check

COPY pipeline pipeline
COPY components components
COPY models models
COPY tuning tuning
COPY configs configs
COPY pipeline.yaml pipeline.yaml
