# The Django app base: Debian's Django, psycopg2, gunicorn and whitenoise on
# the locally built Debian base. Apps build FROM it and add only their code.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PACKAGES
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${PACKAGES} \
 && rm -rf /var/lib/apt/lists/*
# Python output straight to the container log; no .pyc files in layers.
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
