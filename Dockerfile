# One image for the twinchat API; the same commands run without Docker (see README).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY twinchat ./twinchat
COPY ui ./ui
COPY prompts ./prompts
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir -e .
ENV ANONYMIZED_TELEMETRY=False GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 TWINCHAT_HOME=/data
EXPOSE 8000
CMD ["twinchat", "serve", "--host", "0.0.0.0", "--port", "8000"]
