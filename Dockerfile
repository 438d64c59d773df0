# One image for every role; the command picks the role's bundle:
#   docker run IMAGE                             -> gpu-worker (default)
#   docker run IMAGE dist/producer/main.js       -> HTTP API on $PORT (set HOST=0.0.0.0, and INTERFLEET_API_KEYS_FILE or INTERFLEET_AUTH=none)
#   docker run IMAGE dist/scheduler/main.js      -> control loops (one leader via a Redis lease)
#   docker run IMAGE dist/launcher/main.js       -> everything in one process tree (embedded default)
# The roles run as JavaScript bundled at build time (bin/build, esbuild), not
# through tsx: tsx's loader costs each process ~30 MiB of RSS. bin/start execs
# node with the role's V8 flags (see it), so SIGTERM reaches the app directly
# (graceful drain) and nothing writes an npm cache at run time. tini is PID 1:
# it forwards signals and reaps the training runners' child processes.
FROM node:20-bookworm-slim

RUN apt-get update \
  && apt-get install -y --no-install-recommends tini ca-certificates \
  && rm -rf /var/lib/apt/lists/*

ENV NODE_ENV=production
WORKDIR /app

COPY package.json package-lock.json ./
# --ignore-scripts: nothing needs its install script (node-llama-cpp and esbuild
# ship prebuilt binaries as optional packages; node-llama-cpp's postinstall
# would otherwise try to build llama.cpp from source when no prebuilt fits).
# This installs every prebuilt node-llama-cpp backend (CUDA, Vulkan, arm: ~600 MB),
# although the embedded backend runs on the CPU (GPU inference goes to vLLM/TGI over HTTP).
# For a ~670 MB smaller image, replace the line below with:
#   RUN npm ci --omit=dev --omit=optional --ignore-scripts \
#     && npm i --no-save --omit=dev --omit=optional --ignore-scripts \
#          @node-llama-cpp/linux-x64@3.21.1 @esbuild/linux-x64@0.28.2 \
#     && npm cache clean --force
# (node_modules 860 MB -> 188 MB; keep both versions in step with package-lock.json.
# @esbuild/linux-x64 is needed because esbuild's binary, which bin/build and tsx use, is an optional package.)
RUN CI=true npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

COPY . .
RUN bin/build

USER node
# producer HTTP API, gpu-worker /metrics /healthz /readyz
EXPOSE 8080 9100
ENTRYPOINT ["tini", "--", "bin/start"]
CMD ["dist/gpu-worker/main.js"]
