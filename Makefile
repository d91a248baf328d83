# modelserve: `make serve` and `make test` are all a newcomer needs.

GO       ?= go
BIN      := bin/modelserve
OUT      := out
PORT     ?= 8080
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# The same sources give the same binary in any checkout: images built with
# it get the same digest.
GOBUILD  := $(GO) build -trimpath -buildvcs=false -ldflags "$(LDFLAGS)"
DOCKER   ?= docker
PYTHON   := /usr/bin/python3
# go-nvml's cgo wrappers call functions NVML marks deprecated; the warnings
# say nothing about modelserve.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
IRIS_FEATURES := sepal_length,sepal_width,petal_length,petal_width

.PHONY: all serve test bench fuzz soak gpu-check gpu-bundle build ort ort-gpu image example fmt vet proto clean

all: build

## serve: fetch what is missing, build, register the iris example, serve it on $(PORT)
serve: build example
	$(BIN) serve --model iris --port $(PORT)

## test: the whole suite, race detector on, against the real ONNX Runtime;
## then the throughput runs the race detector would slow tenfold. The
## image tests build offline, from the modules and libraries fetched here.
test: ort ort-gpu
	@scripts/check-tracked.sh
	@scripts/deps.sh test
	$(GO) mod download
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(GO) test -count=1 -run 'TestGatewaySimulator_millionRows' ./server/

## bench: raw ONNX Runtime vs /predict rows/s; writes $(OUT)/bench.md
bench: build
	@scripts/deps.sh bench
	$(GO) run ./bench --binary $(BIN) --out $(OUT)/bench.md

## fuzz: every fuzz target for FUZZTIME (default 1m) each; writes $(OUT)/fuzz.md
fuzz: ort
	scripts/fuzz.sh

## soak: a real server under a mixed, partly hostile load for SOAK (default
## 10m), reporting memory, goroutines and descriptors each minute; writes
## $(OUT)/soak.md
soak: build
	@scripts/deps.sh serve
	@mkdir -p $(OUT)
	$(GO) run ./bench --binary $(BIN) --only soak --soak $${SOAK:-10m} --out $(OUT)/soak.md

## gpu-check: doctor --run on the encoder and the DLRM-like model, on the
## device serve would choose (DEVICE=cpu to rehearse on the CPU); writes
## $(OUT)/gpu-check.md
DEVICE ?= auto
gpu-check: build
	@scripts/deps.sh serve
	@$(PYTHON) scripts/models.py $(OUT)/models encoder dlrm >/dev/null
	$(BIN) doctor --run --device $(DEVICE) --model-file $(OUT)/models/encoder.onnx \
		--model-file $(OUT)/models/dlrm.onnx --out $(OUT)/gpu-check.md

## gpu-bundle: the same check for an offline GPU machine, in parts of at
## most 60 MiB under .gpu/ (see README, GPUs)
gpu-bundle:
	scripts/gpu-bundle.sh .gpu

build: ort
	$(GOBUILD) -o $(BIN) ./cmd/modelserve

ort:
	@scripts/fetch-onnxruntime.sh >/dev/null

## ort-gpu: ONNX Runtime with its CUDA provider libraries, for modelserve build --gpu
ort-gpu:
	@scripts/fetch-onnxruntime.sh --gpu >/dev/null

## image: the runtime image from the Dockerfile (DOCKER=podman works too)
image:
	$(DOCKER) build --build-arg VERSION=$(VERSION) -t modelserve:$(VERSION) .

## example: generate the iris model and register it (a no-op once done)
example: build
	@scripts/deps.sh serve
	@$(PYTHON) scripts/models.py $(OUT)/models iris >/dev/null
	$(BIN) registry log --name iris --version 1 --file $(OUT)/models/iris.onnx \
		--function predict=label --function predict_proba=probabilities \
		--features $(IRIS_FEATURES) --comment "softmax regression on Fisher's iris data"

fmt:
	gofmt -w .

## proto: regenerate oip/ from oip/inference.proto (the generated code is committed; needs protoc from apt's protobuf-compiler)
proto:
	$(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	$(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
	cd oip && PATH="$$($(GO) env GOPATH)/bin:$$PATH" protoc --go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative inference.proto

vet:
	$(GO) vet ./...

clean:
	rm -rf bin $(OUT)
