# syntax=docker/dockerfile:1
# The Mycelium image: the `mycelium` command (workers, migrations, webhook receiver) in a venv,
# installed non-editable, without test dependencies, run as a non-root user.
#
#   docker build -t mycelium .                                   # CPU torch
#   docker build -t mycelium:gpu --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#
# CUDA torch wheels carry their CUDA runtime; the host needs the NVIDIA driver and the NVIDIA
# container toolkit (docker compose's GPU worker reserves the device).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/mycelium
ENV PATH=/opt/mycelium/bin:$PATH
# torch first, from the chosen index (CPU or CUDA), so the project install keeps it.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
WORKDIR /src
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY workers ./workers
COPY labeling ./labeling
COPY training ./training
COPY migrations ./migrations
# Non-editable, runtime dependencies only (the test extra stays out).
RUN pip install . && pip check

FROM ${PYTHON_IMAGE}
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin mycelium
COPY --from=build /opt/mycelium /opt/mycelium
ENV PATH=/opt/mycelium/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MYCELIUM_HOME=/home/mycelium/.mycelium \
    HF_HOME=/home/mycelium/.cache/huggingface
USER mycelium
WORKDIR /home/mycelium
ENTRYPOINT ["mycelium"]
CMD ["--help"]
