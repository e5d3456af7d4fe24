# asyncflow server image.
#
#   docker build -t asyncflow .
#   docker run -p 50051:50051 -v asyncflow-data:/var/lib/asyncflow asyncflow
#
# The default is the embedded setup (SQLite file in the volume, in-process
# cache): run one container. For MySQL/MariaDB and Redis, override the config
# with environment variables, e.g.
#   -e ASYNCFLOW_STORE_BACKEND=mysql -e ASYNCFLOW_STORE_MYSQL_HOST=db
#   -e ASYNCFLOW_STORE_MYSQL_PASSWORD=... -e ASYNCFLOW_CACHE_BACKEND=redis
#   -e ASYNCFLOW_CACHE_REDIS_URL=redis://redis:6379/0
# or mount your own file over /etc/asyncflow/config.toml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# pyproject.toml names README.md as the package description, and maps the
# asyncflow.v1 subpackage onto generated/asyncflow/v1 (package-dir), so the
# generated code must be copied along with asyncflow/. The image runs the
# server, so it installs the `server` extra (the SDK alone does without it).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY asyncflow/ asyncflow/
COPY generated/ generated/
RUN pip install '.[server]' \
    && cd / && rm -rf /src \
    && python -c "import asyncflow.v1.task_service_pb2_grpc, asyncflow.cli"

# The shipped config, changed to listen on every interface and to keep the
# SQLite file in the data volume. The build fails if the edit did not apply.
COPY config.toml /etc/asyncflow/config.toml
RUN sed -i \
        -e 's|^host = "127.0.0.1"|host = "0.0.0.0"|' \
        -e 's|^sqlite_path = "data/asyncflow.db"|sqlite_path = "/var/lib/asyncflow/asyncflow.db"|' \
        /etc/asyncflow/config.toml \
    && grep -q '^host = "0.0.0.0"' /etc/asyncflow/config.toml \
    && grep -q '^sqlite_path = "/var/lib/asyncflow/asyncflow.db"' /etc/asyncflow/config.toml \
    && useradd --system --uid 10001 --home-dir /var/lib/asyncflow --create-home asyncflow

USER asyncflow
WORKDIR /var/lib/asyncflow
VOLUME ["/var/lib/asyncflow"]
EXPOSE 50051 8080

# grpc.health.v1 check of the whole server (NOT_SERVING while it drains).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["python", "-c", "import os, sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; port = os.environ.get('ASYNCFLOW_SERVER_PORT', '50051'); reply = g.HealthStub(grpc.insecure_channel('127.0.0.1:' + port)).Check(h.HealthCheckRequest(), timeout=3); sys.exit(0 if reply.status == h.HealthCheckResponse.SERVING else 1)"]

# SIGTERM (docker stop): health shows NOT_SERVING for
# server.shutdown_delay_seconds (5 s) while everything is still served, then
# streams end and in-flight calls get up to server.grace_seconds (10 s) each;
# give `docker stop -t` more than delay + 2 x grace (e.g. -t 30) for a full drain.
STOPSIGNAL SIGTERM
ENTRYPOINT ["asyncflow"]
CMD ["serve", "--config", "/etc/asyncflow/config.toml"]
