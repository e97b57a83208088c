# The service image (deploy/compose/compose.yaml, deploy/k8s/). Built where a Docker engine runs;
# CI lints it offline (deploy/validate.sh).

# --- build: a virtualenv holding the dependencies, then the project ---
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, read from the two pyproject.toml files alone: this layer is rebuilt when they
# change, not on every code edit (every dependency ships wheels, so no compiler is needed). The
# service's own requirement on contact-service-contracts is left out: that is built from contracts/.
COPY pyproject.toml ./
COPY contracts/pyproject.toml ./contracts/
RUN python -c "import tomllib; deps = [d for f in ('contracts/pyproject.toml', 'pyproject.toml') for d in tomllib.load(open(f, 'rb'))['project']['dependencies']]; print('\n'.join(d for d in deps if not d.startswith('contact-service-contracts')))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt
# Then the code, installed without touching the dependencies: the contract's distribution first,
# then the service that requires it (README.md files: each pyproject's readme).
COPY README.md ./
COPY contracts ./contracts
COPY service ./service
RUN pip install --no-cache-dir --no-deps ./contracts \
    && pip install --no-cache-dir --no-deps . \
    && pip check \
    && python -m compileall -q /opt/venv

# --- runtime: the virtualenv alone, run as an unprivileged user ---
FROM python:3.11-slim
# Numeric UID/GID so Kubernetes' runAsNonRoot can verify it; no home, no shell.
RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
# Bytecode was compiled at build time: the root filesystem can be read-only (deploy/k8s/).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTH_HOST=0.0.0.0 \
    HEALTH_PORT=8080
USER 10001:10001
EXPOSE 8080
# Ready = broker and store answer (/readyz); the standard library only, no curl in the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('HEALTH_PORT', '8080'), timeout=3)"]
# SIGTERM: stop consuming, finish the batches in flight, commit, exit (give it 45 s).
STOPSIGNAL SIGTERM
# No arguments: run the service; `contact-service ops ...`: the operators' CLI.
ENTRYPOINT ["contact-service"]
