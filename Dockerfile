# skelkit on a CUDA-enabled PyTorch image: prep, pre-training and evaluation in one container.
#   docker build -t skelkit .
#   docker run --gpus all -v $DATA:/data skelkit skelprep build --dataset ntu60 \
#       --raw /data/nturgb+d_skeletons --out /data/ntu60.zarr
#   docker run --gpus all --shm-size 8g -v $DATA:/data skelkit skeltrain run cmd ...
#   docker run --gpus all -v $DATA:/data skelkit skeleval knn --emb /data/run.h5
# The base image already holds torch (CUDA build), which is the README's first install step; the
# second is the same editable install of the project that scripts/install.sh runs.
ARG BASE_IMAGE=pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A non-root user whose caches live in its home: numba cannot write its cache next to the
# root-owned sources, so it gets NUMBA_CACHE_DIR; matplotlib likewise needs MPLCONFIGDIR.
ARG USER_ID=1000
ARG GROUP_ID=1000
RUN groupadd --gid ${GROUP_ID} skelkit \
 && useradd --uid ${USER_ID} --gid ${GROUP_ID} --create-home --shell /bin/bash skelkit \
 && mkdir -p /data /workspace /home/skelkit/.cache/numba /home/skelkit/.cache/matplotlib \
 && chown -R skelkit:skelkit /data /workspace /home/skelkit/.cache
ENV HOME=/home/skelkit \
    NUMBA_CACHE_DIR=/home/skelkit/.cache/numba \
    MPLCONFIGDIR=/home/skelkit/.cache/matplotlib

# Project sources in /opt/skelkit, installed editable exactly as scripts/install.sh does.
WORKDIR /opt/skelkit
COPY pyproject.toml README.md ./
COPY skelkit ./skelkit
COPY scripts ./scripts
COPY tests ./tests
RUN python -c "import sys; assert sys.version_info >= (3, 11), sys.version" \
 && python -m pip install -e ".[dev]" \
 && python -c "import torch, skelkit; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

USER skelkit
# The three CLIs must be on PATH for the non-root user (fails the build otherwise).
RUN skelprep --help >/dev/null && skeltrain --help >/dev/null && skeleval --help >/dev/null

WORKDIR /workspace
VOLUME ["/data"]
CMD ["skeleval", "--help"]
