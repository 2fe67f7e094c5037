# One image for the API, the worker and the one-shot `intake migrate`
# (docker-compose.yml picks the command).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 intake
WORKDIR /app

COPY pyproject.toml ./
COPY config.py connections.py worker.py cli.py devstack.py observability.py codec.py payload_compression.py request_context.py certs.py insight_cli.py wecom.py branches_cli.py ./
COPY domain ./domain
COPY workflows ./workflows
COPY activities ./activities
COPY store ./store
COPY background ./background
COPY api ./api
COPY migrations ./migrations
COPY policies ./policies

# Installed in place (-e): the migration runner reads /app/migrations next to the code, and
# INTAKE_POLICY_FILE=policies/... resolves against /app.
RUN pip install -e .
# The code stays owned by root: the service user runs it, it cannot change it. Recordings go to a
# volume mounted here; a new named volume takes this folder's owner, so the service user can write.
RUN mkdir -p /var/lib/intake/recordings && chown intake:intake /var/lib/intake/recordings

USER intake
EXPOSE 8000
CMD ["intake", "api"]
