# One image for every role: `labelwise api`, `labelwise worker`, `labelwise migrate`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LABELWISE_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY alembic ./alembic
COPY service ./service
COPY workers ./workers
# torch from the CPU wheel index keeps the image small; build with
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 for CUDA workers.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" -e '.[image]'

RUN useradd --create-home labelwise && mkdir -p /data && chown labelwise /data
USER labelwise
VOLUME ["/data"]
EXPOSE 8000
CMD ["labelwise", "api", "--host", "0.0.0.0", "--port", "8000"]
