# syntax=docker/dockerfile:1
#
# Fault-tolerant assistant: two stages on node:24-slim.
#   build:   full install (TypeScript and the other dev tools), `npm run build` -> dist/
#   runtime: production dependencies only, dist/, the knowledge base and .env.production
#
# No secret is baked in: HF_TOKEN is not an ARG or ENV here; give it at run time
# (Kubernetes Secret, `docker run -e HF_TOKEN`, docker compose's `${HF_TOKEN:-}`).

FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY nest-cli.json tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && rm -f dist/.tsbuildinfo

FROM node:24-slim AS runtime
# Selects .env.production for the defaults; variables set at run time (ConfigMap, -e) win over it.
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The shipped knowledge base (KNOWLEDGE_DIR=./data/knowledge, relative to /app) and the production defaults.
COPY data ./data
COPY .env.production ./
# Files stay root-owned and read-only to the app, which writes nothing: the root filesystem can be read-only.
# `node` is uid/gid 1000 in the official image (Kubernetes sets runAsUser: 1000 to match, see deploy/k8s).
USER node
EXPOSE 3000
# Used by `docker run` and docker compose; Kubernetes ignores it and uses its own probes.
# The slim image has no curl or wget: Node's own fetch asks the readiness route.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself (readiness 503, drain SHUTDOWN_DRAIN_SECONDS, exit 0).
# The heap for the Deployment's 512 Mi limit: old space 256 MB (the embedded answer cache takes at most 64 MB of it),
# young generation 16 MB a semi-space; code, stacks and sockets fit in the rest. Raise both with the limit.
CMD ["node", "--max-old-space-size=256", "--max-semi-space-size=16", "dist/main.js"]
