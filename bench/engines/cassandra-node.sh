#!/usr/bin/env bash
# Starts one Cassandra 5.0 node in the foreground from the jars fetched by setup.sh.
#   bench/engines/cassandra-node.sh ENGINES_DIR NODE_DIR ADDR SEEDS [NATIVE_PORT] [HEAP]
# e.g. bench/engines/cassandra-node.sh .cache/engines .cache/cass1 127.0.0.1 127.0.0.1:7000 9042 2G
# A 3-node cluster on one host: addresses 127.0.0.1-3 (same ports), the same SEEDS for all.
# CASSANDRA_JVM_EXTRA adds JVM flags, e.g. -Dcassandra.sai.vector.allow_custom_parameters=true.
set -euo pipefail
ENG=$(cd "$1" && pwd); NODE=$2; ADDR=$3; SEEDS=$4; PORT=${5:-9042}; HEAP=${6:-2G}
here=$(cd "$(dirname "$0")" && pwd)
LIB=$ENG/cassandra/lib
[ -d "$LIB" ] || { echo "no Cassandra jars in $LIB: run bench/engines/setup.sh $1 first" >&2; exit 2; }
mkdir -p "$NODE"/{data,commitlog,saved_caches,hints,cdc_raw,logs}
NODE=$(cd "$NODE" && pwd)
sed -e "s#@DIR@#$NODE#g" -e "s#@ADDR@#$ADDR#g" -e "s#@SEEDS@#$SEEDS#g" -e "s#@NATIVE_PORT@#$PORT#g" "$here/cassandra.yaml" > "$NODE/cassandra.yaml"
JAMM=$(ls "$LIB"/jamm-*.jar | head -1)
exec java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 -XX:G1HeapRegionSize=16m \
  -XX:MaxGCPauseMillis=300 -Xss256k \
  -javaagent:"$JAMM" $(grep -v '^#' "$here/jvm17.options") \
  -Dcassandra.config="file://$NODE/cassandra.yaml" -Dcassandra.logdir="$NODE/logs" -Dcassandra.storagedir="$NODE" \
  -Dlogback.configurationFile="$here/logback.xml" -Dcassandra-foreground=yes -Dcassandra.jmx.local.port=$((PORT + 100)) \
  -Dcassandra.skip_wait_for_gossip_to_settle=0 ${CASSANDRA_JVM_EXTRA:-} \
  -cp "$LIB/*" org.apache.cassandra.service.CassandraDaemon
