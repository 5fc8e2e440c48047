# Production image of the operator. On machines without a Docker engine, `hack/operator-image.sh`
# assembles the same layout (the binary, the static nestplane-launch, Debian 12's glibc, CA
# certificates, user 65532).
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p nestplane
# Static: control-plane pods copy it into images that carry no libraries.
RUN RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -p nestplane-launch \
      --target "$(rustc -vV | sed -n 's/^host: //p')" \
    && cp target/*/release/nestplane-launch /src/nestplane-launch

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/nestplane /usr/local/bin/nestplane
COPY --from=build /src/nestplane-launch /usr/local/bin/nestplane-launch
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/nestplane"]
CMD ["run"]
