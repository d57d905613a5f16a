# syntax=docker/dockerfile:1
# The gateway's image: built with dev dependencies, run with production ones only, as a non-root
# user under tini. One image for the gateway, its migrations, the CLI and the vLLM simulator:
#   docker run IMAGE                    the gateway on $PORT (8080)
#   docker run IMAGE migrate latest     apply the migrations (also: down, status)
#   docker run IMAGE cli users list     any CLI command (users, keys, migrate)
#   docker run IMAGE sim --host 0.0.0.0 the vLLM simulator
# Targets: `runtime` (the default, last stage) and `dev` (all dependencies and tsx, for compose's dev file).

ARG NODE_IMAGE=node:20-bookworm-slim

# --- base: Node on glibc (@node-rs/argon2 ships glibc and musl binaries; glibc is the safe one) + tini
FROM ${NODE_IMAGE} AS base
ENV NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false
# tini is PID 1: it forwards SIGTERM to Node (which drains in-flight streams) and reaps zombies.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app

# --- build: every dependency from the lock file, then TypeScript → dist/src
FROM base AS build
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- production dependencies only (no package in the lock file has an install script but esbuild, a dev dependency)
FROM base AS production-dependencies
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

# --- dev: the build stage with its dev dependencies (tsx), for docker-compose.dev.yml
FROM build AS dev
ENV NODE_ENV=development \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/app/data
COPY migrations ./migrations
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/gateway-entrypoint
RUN mkdir -p /app/data && chown 1000:1000 /app/data
USER 1000:1000
EXPOSE 8080
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/gateway-entrypoint"]
CMD ["gateway"]

# --- runtime: what production runs. The package root (package.json) is where migrations/ is read from.
FROM base AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/app/data
COPY --from=production-dependencies /app/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY migrations ./migrations
COPY --from=build /app/dist/src ./dist/src
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/gateway-entrypoint
# DATA_DIR is only written with the embedded database (no DATABASE_URL); it must then be a volume.
RUN mkdir -p /app/data && chown 1000:1000 /app/data
# The image's `node` user, by number so Kubernetes' runAsNonRoot can check it.
USER 1000:1000
EXPOSE 8080
# No curl in the slim image: Node's own fetch asks the liveness probe.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health/live').then((r)=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/gateway-entrypoint"]
CMD ["gateway"]
