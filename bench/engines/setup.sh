#!/usr/bin/env bash
# Fetches the distributed engines that bench/engine-ann.ts compares, into ENGINES_DIR (default
# .cache/engines, which git ignores). Everything comes from the ordinary registries:
#   cassandra/lib/   Apache Cassandra 5.0.9 and its dependencies (Maven Central, via mvn)
#   weaviate-server  Weaviate v1.35.2 built from its Go module (Go module proxy; a long compile)
#   node/            the CQL client cassandra-driver (npm), kept out of the project's package.json
# Needs Java 17 + Maven, Go, npm. Re-running skips what is already there.
#   bench/engines/setup.sh [ENGINES_DIR] [cassandra|cassandra-jars|weaviate|all]
# cassandra-jars fetches only the jars (the project's own tests: the driver is in package.json).
set -euo pipefail
ENG=${1:-.cache/engines}; WHAT=${2:-all}
mkdir -p "$ENG"; ENG=$(cd "$ENG" && pwd)
CASSANDRA_VERSION=${CASSANDRA_VERSION:-5.0.9}
WEAVIATE_VERSION=${WEAVIATE_VERSION:-v1.35.2}
if [[ $WHAT == all || $WHAT == cassandra || $WHAT == cassandra-jars ]]; then
  if [ ! -f "$ENG/cassandra/lib/cassandra-all-$CASSANDRA_VERSION.jar" ]; then
    mkdir -p "$ENG/cassandra"
    cat > "$ENG/cassandra/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>aetn.bench</groupId><artifactId>cassandra-jars</artifactId><version>1</version>
<dependencies><dependency><groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId><version>$CASSANDRA_VERSION</version></dependency></dependencies>
</project>
POM
    (cd "$ENG/cassandra" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib)
  fi
  if [[ $WHAT != cassandra-jars && ! -d "$ENG/node/node_modules/cassandra-driver" ]]; then
    mkdir -p "$ENG/node" && echo '{"name":"aetn-engines","private":true}' > "$ENG/node/package.json"
    (cd "$ENG/node" && npm install --no-audit --no-fund cassandra-driver@4)
  fi
fi
if [[ $WHAT == all || $WHAT == weaviate ]]; then
  if [ ! -x "$ENG/weaviate-server" ]; then
    dir=$(go mod download -json "github.com/weaviate/weaviate@$WEAVIATE_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    (cd "$dir" && GOFLAGS=-buildvcs=false go build -o "$ENG/weaviate-server" ./cmd/weaviate-server)
  fi
fi
echo "engines in $ENG"
