# msgcapi in a container: `docker build -t msgcapi .`, then
#   docker run --rm -e MSGCAPI_ACCESS_TOKEN msgcapi send --mapping ... INPUT...
# docs/deploy/ runs this image as a Kubernetes CronJob and as an Airflow DAG.
#
# Both stages use the same Debian release (trixie), so the binary built against the builder's
# glibc runs on the runtime image's. Rust: the crate's `rust-version` (Cargo.toml), edition 2024.

ARG RUST_VERSION=1.90

FROM rust:${RUST_VERSION}-slim-trixie AS build
WORKDIR /src

# 1. Dependencies, in a layer of their own: it is rebuilt only when Cargo.toml or Cargo.lock
#    change, not when the code does. A stand-in main.rs and lib.rs let cargo build them.
#    (The slim image has gcc and libc6-dev, which the bundled C code needs: SQLite, zstd,
#    mimalloc, ring. No OpenSSL: TLS is rustls.)
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin msgcapi \
    && rm -r src

# 2. msgcapi itself. COPY keeps the files' own modification times, which can be older than
#    the stand-ins' build: touch the crate roots so cargo rebuilds instead of keeping the
#    stand-in binary.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin msgcapi \
    && cp target/release/msgcapi /usr/local/bin/msgcapi


# The runtime image: Debian slim with the CA certificates (msgcapi verifies TLS against the
# system's roots) and a shell with `date` (the CronJob in docs/deploy/ computes the night's
# date with it). Nothing else.
FROM debian:trixie-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid, so Kubernetes' `runAsNonRoot` can check it.
RUN groupadd --system --gid 10001 msgcapi \
    && useradd --system --uid 10001 --gid msgcapi --home-dir /home/msgcapi --create-home \
        --shell /usr/sbin/nologin msgcapi

COPY --from=build /usr/local/bin/msgcapi /usr/local/bin/msgcapi

# Fails the build if the binary cannot start on this image (a glibc mismatch, say).
RUN ["/usr/local/bin/msgcapi", "--version"]

USER 10001:10001
WORKDIR /home/msgcapi
# Reports, summaries and state files msgcapi creates are mode 0600, owned by this user.
# The token comes from the environment (MSGCAPI_ACCESS_TOKEN) or --access-token-file, never
# from argv. SIGTERM (docker stop, a pod's deletion) ends a send cleanly, exit 130: in-flight
# requests get --grace (10 s) to finish, the remaining rows are reported `not_attempted`.
ENTRYPOINT ["/usr/local/bin/msgcapi"]
CMD ["--help"]
