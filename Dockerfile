# syntax=docker/dockerfile:1
#
# process-start-worker image: one image for every role, chosen by the command
# (docker-compose.yml):
#   celery -A worker worker -Q startproc.jobs --pool threads --concurrency 16 -E
#   celery -A worker beat
#   startproc serve --host 0.0.0.0 --port 8080
#   startproc sandbox all --host 0.0.0.0 --port 8088
#
# Nothing secret is baked in: targets come from a mounted file
# (STARTPROC_TARGETS, default /app/config/targets.toml) and credentials from
# the environment at run time (${VAR} references in that file).

# ---- build: install the project and its dependencies into a virtualenv ------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Dependencies from the committed lock (hashes checked), then the project
# itself without resolving anything again.
COPY requirements/main.txt ./requirements/main.txt
RUN pip install --require-hashes -r requirements/main.txt
# README* may be absent: setuptools only warns about a missing readme.
COPY pyproject.toml LICENSE README* ./
COPY worker ./worker
RUN pip install --no-deps --no-build-isolation .

# ---- runtime: the virtualenv only, no source tree, no build tools -----------
FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STARTPROC_TARGETS=/app/config/targets.toml \
    STARTPROC_SCHEDULES=/app/config/schedules.toml

RUN groupadd --system --gid 10001 startproc \
    && useradd --system --uid 10001 --gid startproc --create-home \
       --home-dir /home/startproc --shell /usr/sbin/nologin startproc \
    && mkdir -p /app/config /var/lib/startproc \
    && chown startproc:startproc /var/lib/startproc

COPY --from=build /opt/venv /opt/venv

# /app holds only the mounted config; celery beat keeps its schedule state in
# /var/lib/startproc (a volume in docker-compose.yml).
WORKDIR /app
USER 10001:10001

# Celery's warm shutdown: SIGTERM lets running start jobs finish.
STOPSIGNAL SIGTERM
CMD ["celery", "-A", "worker", "worker", "-Q", "startproc.jobs", "--pool", "threads", "--concurrency", "16", "-E"]
