#!/bin/sh
# The image's entrypoint (under tini): the first argument picks what runs, and `exec` makes it the
# process tini signals, so SIGTERM reaches Node.
#   migrate ARGS…  → node dist/src/cli/main.js migrate ARGS…   (latest | down | status)
#   cli ARGS…      → node dist/src/cli/main.js ARGS…           (users, keys, migrate, sim)
#   sim ARGS…      → node dist/src/sim/cli.js ARGS…            (the vLLM simulator)
#   gateway, nothing, or anything else → node dist/src/main.js (the gateway on $PORT)
# For a shell: docker run --rm -it --entrypoint sh IMAGE
set -eu
# The image's WORKDIR; overridable only to try the script outside the image.
cd "${GATEWAY_APP_DIR:-/app}"

command="${1:-gateway}"
case "$command" in
  migrate)
    exec node dist/src/cli/main.js "$@"
    ;;
  cli)
    shift
    exec node dist/src/cli/main.js "$@"
    ;;
  sim)
    shift
    exec node dist/src/sim/cli.js "$@"
    ;;
  gateway)
    exec node dist/src/main.js
    ;;
  *)
    echo "gateway-entrypoint: \"$command\" is not migrate, cli or sim: starting the gateway" >&2
    exec node dist/src/main.js
    ;;
esac
