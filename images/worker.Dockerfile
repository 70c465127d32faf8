# The prediction-worker image. Build from the REPO ROOT (the service imports shared/):
#   docker build -f images/worker.Dockerfile .
# A source deploy from the service directory (services/worker as the context) once shipped
# an image without shared/; `platform images check` catches that.

# The base, pinned by digest. A build argument so a local stand-in can be passed
# (--build-arg BASE_IMAGE=...): a local image cannot be named by digest.
ARG BASE_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8080

WORKDIR /app

# Dependencies first (a layer that only changes with the pins). requirements.txt pins the
# whole closure with hashes, generated from uv.lock (see requirements.in).
COPY services/worker/requirements.txt /app/requirements.txt
RUN python -m pip install --require-hashes -r /app/requirements.txt

COPY shared/ /app/shared/
COPY services/__init__.py /app/services/__init__.py
COPY services/worker/ /app/services/worker/

# Non-root: a numeric uid needs no passwd entry in the base image.
USER 10001:10001
EXPOSE 8080

# Cloud Run sets PORT; the shell form expands it, exec keeps uvicorn as PID 1 for signals.
CMD ["sh", "-c", "exec uvicorn services.worker.main:app --host 0.0.0.0 --port ${PORT:-8080} --no-access-log"]
