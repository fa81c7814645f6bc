# syntax=docker/dockerfile:1
# TaskGrid: one image for every component; the command picks it (nameservice, dispatcher, worker <type>,
# monitoring, or any client command). docker-compose.yml and docker-compose.generated.yml run it.

# --- build: compile TypeScript and better-sqlite3's native addon, then drop the dev dependencies ---
FROM node:20-bookworm-slim AS build
# better-sqlite3 falls back to compiling from source when no prebuilt binary matches: it needs these.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Manifests first, so that the dependency layer is rebuilt only when they change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY worker_types ./worker_types
RUN npx tsc -p tsconfig.build.json \
 && npm prune --omit=dev --no-audit --no-fund

# --- runtime: the same base image, so the native addon matches its libc ---
FROM node:20-bookworm-slim
WORKDIR /app
# The state directory exists and belongs to `node` before a volume is mounted on it, so that Docker
# copies that ownership into a fresh named volume and the dispatcher can write its store there.
RUN mkdir -p /var/lib/taskgrid && chown node:node /var/lib/taskgrid
ENV TASKGRID_HOME=/var/lib/taskgrid \
    TASKGRID_BIND=0.0.0.0
# Code stays owned by root: the process, running as `node`, cannot modify what it runs.
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# worker_types/*.ts import ../src/worker/*.ts, so the sources come too: a worker can then load the
# TypeScript modules through tsx as it does locally, or the compiled ones in dist/worker_types/.
COPY src ./src
COPY worker_types ./worker_types
COPY workers.json package.json ./
USER node
EXPOSE 5001/udp 4000/udp 6000/udp 8080/tcp
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["nameservice"]
