# Flotilla: the control plane and traffic router, as compiled JavaScript on Node.js 20.
#   docker build -t flotilla:local .
#   docker run --rm flotilla:local --help
# The full stack (PostgreSQL, Redis, etcd, a coordinator, two proxies, a prober):
# docker-compose.yml, README "Full stack with Docker Compose".

# --- build: install every dependency, compile TypeScript to dist/, drop the dev dependencies --
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# No lifecycle scripts here: `prepare` would build before the sources are in.
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY machines ./machines
COPY src ./src
RUN npm run build \
  && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime: the compiled JavaScript, production dependencies, the example models -----------
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    FLOTILLA_HOST=0.0.0.0 \
    FLOTILLA_DATA_DIR=/data \
    FLOTILLA_MODEL_ROOTS=/app/examples:/models
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY examples ./examples
# State (replica records and logs, the embedded database without DATABASE_URL) and models are
# written by the unprivileged `node` user (uid 1000) of the base image, never by root.
RUN mkdir -p /data /models && chown node:node /data /models
USER node
VOLUME ["/data"]
# API, proxy.
EXPOSE 8080 8000
ENTRYPOINT ["node", "bin/flotilla.js"]
CMD ["serve"]
