# PostgreSQL from Debian, started like the official image: a cluster is
# created in the volume on first start from POSTGRES_USER, POSTGRES_PASSWORD
# and POSTGRES_DB, then postgres runs in the foreground as the postgres user.
# Its client tools (psql, pg_dump, pg_restore) are on PATH for one-off
# containers: `docker run --rm IMAGE pg_dump -h db -U app app`.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PACKAGES
# Debian's package would create and start a "main" cluster in the image;
# the entrypoint creates the one cluster, in the volume, instead.
RUN mkdir -p /etc/postgresql-common \
 && echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.conf \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${PACKAGES} \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)" /usr/lib/postgresql/bin \
 && mkdir -p /var/lib/postgresql/data /run/postgresql \
 && chown postgres:postgres /var/lib/postgresql/data /run/postgresql
ENV PATH=/usr/lib/postgresql/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY entrypoint.sh /usr/local/bin/postgres-entrypoint
VOLUME /var/lib/postgresql/data
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]
CMD ["postgres"]
