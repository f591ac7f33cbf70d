# syntax=docker/dockerfile:1
#
# The barbacane gateway image.
#
#   docker build -t barbacane .
#   docker run --rm -p 8080:8080 barbacane            # serves the petstore example (mock only)
#   docker run --rm -p 8080:8080 -v "$PWD/api:/srv/api:ro" barbacane \
#       serve --spec /srv/api/spec.yaml --listen 0.0.0.0:8080
#
# The built-in Proxy-Wasm plugins (plugins/) are built for wasm32-wasip1 by host/build.rs and
# embedded in the binary, hence the target in the builder stage.

FROM rust:1.95-bookworm AS builder
RUN rustup target add wasm32-wasip1 && rustup component add llvm-tools
# The binary is built with profile-guided optimisation (scripts/build-pgo), whose training load is
# bench/run: nginx and wrk serve and drive it, openssl and htpasswd make its credentials. They stay
# in this stage; pinning their versions would break the build at each Debian point release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx wrk openssl apache2-utils \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The cache mounts keep the registry and target/ between builds; the binary is copied out of the
# cached target/ because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    binary=$(scripts/build-pgo) \
    && install -D -m 0755 "$binary" /out/barbacane

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/barbacane /usr/local/bin/barbacane
COPY spec-examples/ /srv/spec-examples/
# distroless's nonroot user, numerically: Kubernetes' runAsNonRoot can only verify a numeric uid.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/barbacane"]
CMD ["serve", "--spec", "/srv/spec-examples/petstore/petstore.yaml", "--listen", "0.0.0.0:8080"]
