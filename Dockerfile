# Production image of the operator. On machines without a Docker engine, `hack/operator-image.sh`
# assembles the same layout (the binary, Debian 12's glibc, CA certificates, user 65532).
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p nestplane

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/nestplane /usr/local/bin/nestplane
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/nestplane"]
CMD ["run"]
