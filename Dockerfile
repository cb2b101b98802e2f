# Training Studio in one container: the web studio (8501), the MLflow UI (5000) and the job scheduler.
#   docker build -t training-studio .
#   docker run --rm -p 8501:8501 -p 5000:5000 -e STUDIO_PASSWORD='choose a password' \
#       -v studio-data:/data -v studio-mlruns:/app/mlruns training-studio
# then open http://localhost:8501 and log in as "admin" (or the name in STUDIO_USER). The container
# listens on every address, so it always asks for a login; without STUDIO_PASSWORD and without a user
# in the volume it refuses to start and says so. The password is stored as a salted hash in
# /data/users (more users: docker exec -it CONTAINER python -m studio users add NAME); the MLflow UI on
# 5000 asks for the same user name and password.
# Data sets and jobs live in /data, MLflow runs and models in /app/mlruns.
# torch comes from the default package index; for a smaller CPU-only image pass an index that has a CPU
# build of the pinned version: --build-arg PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
FROM python:3.11-slim

ARG PIP_EXTRA_INDEX_URL=
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STUDIO_HOME=/data \
    STUDIO_USER=admin \
    MLFLOW_TRACKING_URI=sqlite:////app/mlruns/mlflow.db \
    MLFLOW_DISABLE_TELEMETRY=true

# tini as PID 1 forwards docker stop's SIGTERM to serve and reaps the detached scheduler's workers.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# PYTHONDONTWRITEBYTECODE=1 above: no process writes bytecode at run time, so the studio's own modules are
# compiled once here; otherwise every process (each job's worker among them) compiles them from source
# again, ~1.5 CPU-s each.
RUN python -m compileall -q studio lightning_modules
RUN useradd --create-home --uid 1000 studio \
    && mkdir -p /data /app/mlruns \
    && chown -R studio:studio /data /app/mlruns
USER studio

EXPOSE 8501 5000
VOLUME ["/data", "/app/mlruns"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"

ENTRYPOINT ["tini", "--"]
CMD ["python", "-m", "studio", "serve", "--host", "0.0.0.0", "--port", "8501", "--mlflow-port", "5000"]
