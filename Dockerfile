# B-OTC: one image for every peer; the command picks the role (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rfq ./rfq
COPY bus ./bus
COPY peers ./peers
COPY tui ./tui
RUN pip install .

# The network directory (made by `botc init ./net`) is mounted here.
VOLUME ["/net"]
ENTRYPOINT ["botc", "--log-level", "info"]
CMD ["--help"]
