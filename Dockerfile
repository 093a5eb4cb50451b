FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY router ./router
COPY channels ./channels
RUN pip install --no-cache-dir .
COPY config ./config
ENV SUPPORTROUTER_CONFIG_DIR=/app/config \
    SUPPORTROUTER_LOG_FORMAT=json
EXPOSE 8080 2525
ENTRYPOINT ["supportrouter"]
CMD ["run"]
