# syntax=docker/dockerfile:1
# oneup: the service and its three CRM connectors in one small image.
#
#   docker build -t oneup .
#   docker compose up            (with Postgres; see compose.yaml and docs/operations.md)
#
# Stage 1 builds the host (release) and the connectors (wasm32-wasip2) with `cargo xtask
# dist`; stage 2 is a distroless image (glibc, no shell) running as a non-root user, with
# the connectors baked in under /opt/oneup/connectors.

FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo xtask dist \
 && mkdir -p /out/state \
 && cp dist/bin/oneup /out/oneup \
 && cp -r dist/connectors /out/connectors

FROM gcr.io/distroless/cc-debian12:nonroot
# The nonroot user of distroless images (uid and gid 65532).
COPY --from=build /out/oneup /usr/local/bin/oneup
COPY --from=build /out/connectors /opt/oneup/connectors
# The state folder: the compile cache, and the SQLite file and master key file when no
# DATABASE_URL / ONEUP_MASTER_KEY is given. Mount a volume here.
COPY --from=build --chown=65532:65532 /out/state /var/lib/oneup
USER 65532:65532
WORKDIR /var/lib/oneup
ENV ONEUP_BIND=0.0.0.0:8080 \
    ONEUP_CONNECTORS_DIR=/opt/oneup/connectors \
    ONEUP_CACHE_DIR=/var/lib/oneup/cache \
    ONEUP_MASTER_KEY_FILE=/var/lib/oneup/oneup.key \
    ONEUP_LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/var/lib/oneup"]
HEALTHCHECK --interval=10s --timeout=6s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/oneup", "probe", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["/usr/local/bin/oneup"]
CMD ["serve"]
