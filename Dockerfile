# modelserve's runtime image: the server and ONNX Runtime, no model. Serve a
# registry mounted at /opt/modelserve/registry, or give it to
# `modelserve build --base`, which then adds only a model layer.
#
#   CPU: docker build -t modelserve:cpu .
#   GPU: docker build --build-arg DEVICE=cuda --build-arg ORT_VERSION=1.29.0 \
#          --build-arg BASE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 -t modelserve:cuda .
#
# The base images are arguments: BUILDER needs Go with cgo (gcc, libc
# headers); BASE needs glibc and libstdc++ (and, for cuda, the CUDA 13 and
# cuDNN 9 runtime libraries). The build fetches ONNX Runtime from npm, or
# takes it from /root/.cache/modelserve when that is mounted.
ARG BUILDER=golang:1.26-bookworm
ARG BASE=debian:bookworm-slim

FROM ${BUILDER} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# DEVICE=cuda takes ONNX Runtime 1.29.0, whose CUDA provider libraries are
# published: say ORT_VERSION=1.29.0 with it. The build checks the two agree.
ARG DEVICE=cpu
ARG ORT_VERSION=1.30.0
RUN set -eu; mkdir -p /out/bin /out/lib; \
    CGO_ENABLED=1 CGO_CFLAGS="-O2 -g -Wno-deprecated-declarations" go build -trimpath -buildvcs=false -ldflags "-X main.version=${VERSION}" \
      -o /out/bin/modelserve ./cmd/modelserve; \
    case "${DEVICE}" in \
      cpu)  cp "$(scripts/fetch-onnxruntime.sh)" /out/lib/ ;; \
      cuda) cp "$(scripts/fetch-onnxruntime.sh --gpu)"/*.so* /out/lib/ ;; \
      *)    echo "DEVICE must be cpu or cuda, not ${DEVICE}" >&2; exit 1 ;; \
    esac; \
    chmod 0644 /out/lib/*; \
    got="$(MODELSERVE_ORT_LIB=/out/lib/libonnxruntime.so.1 /out/bin/modelserve version --onnxruntime)"; \
    if [ "${got}" != "${ORT_VERSION}" ]; then \
      echo "the ${DEVICE} libraries are ONNX Runtime ${got}: build with --build-arg ORT_VERSION=${got}" >&2; exit 1; \
    fi

FROM ${BASE}
ARG VERSION=dev
ARG DEVICE=cpu
ARG ORT_VERSION=1.30.0
COPY --from=build /out/ /opt/modelserve/
ENV PATH=/opt/modelserve/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    MODELSERVE_ORT_LIB=/opt/modelserve/lib/libonnxruntime.so.1 \
    MODELSERVE_REGISTRY=/opt/modelserve/registry \
    MODELSERVE_PORT=8080
# dev.modelserve.runtime tells `modelserve build` not to add a runtime layer.
LABEL dev.modelserve.runtime="${VERSION}+ort${ORT_VERSION}-${DEVICE}" \
      dev.modelserve.version="${VERSION}" \
      dev.modelserve.onnxruntime="${ORT_VERSION}" \
      dev.modelserve.device="${DEVICE}" \
      org.opencontainers.image.title="modelserve" \
      org.opencontainers.image.description="ONNX model server for SQL gateways and HTTP clients"
USER 1000:1000
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/opt/modelserve/bin/modelserve", "health"]
ENTRYPOINT ["/opt/modelserve/bin/modelserve"]
CMD ["serve"]
