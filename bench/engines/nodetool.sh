#!/usr/bin/env bash
# Cassandra's nodetool from the jars fetched by setup.sh, against a node's JMX port (the node's
# native port + 100 with cassandra-node.sh, e.g. 9142 for a node on 9042).
#   bench/engines/nodetool.sh ENGINES_DIR JMX_PORT COMMAND...   e.g. ... 9142 status | flush | repair aetn
set -euo pipefail
ENG=$(cd "$1" && pwd); PORT=$2; shift 2
here=$(cd "$(dirname "$0")" && pwd)
exec java -Xmx256m $(grep -v '^#' "$here/jvm17.options") -Dlogback.configurationFile="$here/logback-tool.xml" \
  -cp "$ENG/cassandra/lib/*" org.apache.cassandra.tools.NodeTool -h 127.0.0.1 -p "$PORT" "$@"
