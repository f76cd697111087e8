# Portcullis broker image: a release build on Debian bookworm, run as an
# unprivileged user. Build: `docker build -t portcullis .`
# Run:   `docker run -p 1883:1883 -v $PWD/etc:/etc/portcullis portcullis`
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin portcullis \
    && install -m 755 target/release/portcullis /usr/local/bin/portcullis

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/portcullis --create-home portcullis
COPY --from=build /usr/local/bin/portcullis /usr/local/bin/portcullis
COPY etc/ /etc/portcullis/
USER portcullis
WORKDIR /var/lib/portcullis
# MQTT, MQTT over TLS, WebSocket, secure WebSocket.
EXPOSE 1883 8883 8083 8084
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["--config", "/etc/portcullis/portcullis.toml"]
