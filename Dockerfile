# syntax=docker/dockerfile:1.7
# Meridian's container images: one builder stage compiles the five deployable binaries
# once, then one small runtime stage per binary, each holding only its own binary.
#
#   docker build --target boot -t meridian-boot .
#
# Targets: boot, sign, delete, replicate (Cloud Run services) and edge (the edge VMs).
# Building needs BuildKit (Docker Engine 23+ uses it by default; otherwise set
# DOCKER_BUILDKIT=1) for the cache mounts below. Building a second target reuses the
# builder stage from the layer cache, so five targets compile the workspace once.

# --- builder ---------------------------------------------------------------------------
# Debian 12 (bookworm), like the runtime images below, so the binaries link against the
# same glibc they run with. 1.89 is the workspace's rust-version: the images are built
# with the oldest toolchain the code promises to support.
FROM rust:1.89-slim-bookworm AS builder
WORKDIR /src
# Only what cargo needs reaches the context (.dockerignore drops target/, .git/, docs...).
COPY . .
# The crate registry and target folder are BuildKit cache mounts: rebuilding on the same
# machine recompiles only what changed. Cache mounts are not part of the image, so the
# binaries are copied out to /out in the same step. rust:*-slim ships gcc and libc6-dev,
# all that the crates' C code (aws-lc, ring) needs.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        --bin meridian-boot --bin meridian-sign --bin meridian-delete \
        --bin meridian-replicate --bin meridian-edge \
 && mkdir -p /out \
 && for bin in meridian-boot meridian-sign meridian-delete meridian-replicate meridian-edge; do \
        cp "target/release/$bin" /out/; \
    done

# --- runtime base ------------------------------------------------------------------------
# distroless/cc: glibc, libgcc, CA certificates (the TLS clients verify against the system
# store) and nothing else: no shell, no package manager. The :nonroot tag runs as
# uid 65532 (user nonroot); USER repeats it numerically so that platforms checking
# run-as-non-root can see it without the image's /etc/passwd.
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
USER 65532:65532

# --- Cloud Run services: listen on $PORT (Cloud Run sets it; 8080 by default) -------------
FROM runtime AS boot
COPY --from=builder /out/meridian-boot /usr/local/bin/meridian-boot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/meridian-boot"]

FROM runtime AS sign
COPY --from=builder /out/meridian-sign /usr/local/bin/meridian-sign
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/meridian-sign"]

FROM runtime AS delete
COPY --from=builder /out/meridian-delete /usr/local/bin/meridian-delete
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/meridian-delete"]

FROM runtime AS replicate
COPY --from=builder /out/meridian-replicate /usr/local/bin/meridian-replicate
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/meridian-replicate"]

# --- edge: listens on $PORT, 8443 by default (a non-root user cannot bind 443; the VM
# publishes host port 443 to it). Needs --region / MERIDIAN_EDGE_REGION. ------------------
FROM runtime AS edge
COPY --from=builder /out/meridian-edge /usr/local/bin/meridian-edge
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/meridian-edge"]
