# Portcullis broker image: a release build on Debian bookworm, stripped, run
# as an unprivileged user.
#
#   docker build -t portcullis .
#   docker run -p 127.0.0.1:1883:1883 -e PORTCULLIS_USERNAME=alice \
#     -e PORTCULLIS_PASSWORD="$(openssl rand -hex 16)" portcullis
#
# The image's config (etc/docker/image.toml) admits clients from any address
# with a username and password from the password file
# /var/lib/portcullis/passwd, and nobody anonymously: a published port is
# not loopback. The entrypoint (etc/docker/entrypoint.sh) writes that file
# from PORTCULLIS_USERNAME and PORTCULLIS_PASSWORD (or
# PORTCULLIS_PASSWORD_FILE, e.g. a Docker secret); or mount a Mosquitto-format
# password file there. Without either the broker refuses to start (exit 2).
# Another config: `-v $PWD/my.toml:/etc/portcullis/my.toml:ro` and the
# arguments `--config /etc/portcullis/my.toml`.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# No debug info and a stripped binary: about 22 MB instead of 173 MB.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked --bin portcullis \
    && install -m 755 target/release/portcullis /usr/local/bin/portcullis

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/portcullis --create-home portcullis \
    && install -d -m 700 -o portcullis -g portcullis /var/lib/portcullis/data
COPY --from=build /usr/local/bin/portcullis /usr/local/bin/portcullis
COPY etc/ /etc/portcullis/
USER portcullis
WORKDIR /var/lib/portcullis
# The durable store (`[persistence]`, strict by default, dir "data" relative
# to this working directory) and the built-in user store live here: a
# volume, so that they outlive the container (docker-compose.yml names it
# portcullis-data).
VOLUME ["/var/lib/portcullis/data"]
# MQTT, MQTT over TLS, WebSocket, secure WebSocket.
EXPOSE 1883 8883 8083 8084
# Healthy while the MQTT listener accepts connections (bash's /dev/tcp: the
# slim image has no nc or curl). Another config may listen elsewhere: set
# PORTCULLIS_HEALTH_PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORTCULLIS_HEALTH_PORT:-1883}"]
ENTRYPOINT ["/etc/portcullis/docker/entrypoint.sh"]
CMD ["--config", "/etc/portcullis/docker/image.toml"]
