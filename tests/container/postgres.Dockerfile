# PostgreSQL for the compose test where the official postgres:16 cannot be pulled: Debian bookworm's
# PostgreSQL (15) on the same base as the other images, with the official image's interface as far as
# compose.yaml uses it: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB make the first cluster, the data
# lives in /var/lib/postgresql/data (the volume), pg_isready is on PATH, the command is `postgres ...`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

# No cluster at install time: the entrypoint makes one in the volume. Not pinned: bookworm's
# security updates replace the exact version, and this image exists only for the test.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-common \
    && sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
    && chmod 700 /var/lib/postgresql/data

ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
# The Debian package's user (its uid is chosen at install time).
# hadolint ignore=DL3066
USER postgres
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
CMD ["postgres"]
