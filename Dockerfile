# The aetn application image: one image, several processes (serve, realtime, batch jobs).
# hnswlib-node and lmdb compile native code at install, and so does our OpenBLAS GEMM addon
# (native/gemm, the training and embedding matmuls), hence the build stage with a toolchain.
FROM node:20-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 g++ make libopenblas-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json buf.yaml buf.gen.yaml tsconfig.json ./
COPY proto ./proto
COPY src ./src
COPY services ./services
COPY bench ./bench
COPY bin ./bin
COPY native ./native
RUN npm ci && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libopenblas0-pthread && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production AETN_STORE_DIR=/data/store
WORKDIR /app
COPY --from=build /app /app
RUN ln -s /app/bin/aetn.js /usr/local/bin/aetn
VOLUME ["/data"]
EXPOSE 50051 9464
USER node
ENTRYPOINT ["aetn"]
CMD ["--help"]
