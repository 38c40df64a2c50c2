#!/usr/bin/env bash
# Command 1: set up, build, start `clrk dev` with the word-count example, send the guide's
# request and print the answer. The server keeps running in the background.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "dev: building clrk (release)…"
cargo build --release -q -p clrk
clrk=$PWD/target/release/clrk
export CLRK_DIR=${CLRK_DIR:-$HOME/.clrk}
mkdir -p "$CLRK_DIR"
log=$CLRK_DIR/dev.log

if [ -f "$CLRK_DIR/dev.json" ] && "$clrk" agents list >/dev/null 2>&1; then
  echo "dev: a clrk dev server is already running; applying the example to it"
  "$clrk" apply -f examples/word-count/taskagent-host.yaml --local
else
  nohup "$clrk" dev -f examples/word-count/taskagent-host.yaml >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do
    [ -f "$CLRK_DIR/dev.json" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "dev: clrk dev exited" >&2; exit 1; }
    sleep 0.1
  done
  echo "dev: clrk dev running (pid $pid), log: $log"
fi

ingress=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ingress"])' "$CLRK_DIR/dev.json")
echo "dev: curl $ingress/ -H 'X-Clrk-TaskAgent: default/word-count' …"
curl -sS "$ingress/" \
  -H 'X-Clrk-TaskAgent: default/word-count' \
  -H 'X-Clrk-Trigger: http' \
  -H 'content-type: application/json' \
  --data '{"text":"hello world from clrk"}'
echo "dev: try 'target/release/clrk agents invocations word-count' and 'target/release/clrk agents logs word-count'"
echo "dev: stop the server with: kill \$(pgrep -f 'clrk dev')"
