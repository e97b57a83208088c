# The service image (deploy/compose.yaml, deploy/k8s/). Not built on machines without a Docker engine.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY service ./service
RUN pip install --no-cache-dir .
USER 65534
EXPOSE 8080
ENV HEALTH_HOST=0.0.0.0 HEALTH_PORT=8080
CMD ["contact-service"]
