#!/usr/bin/env bash
# make image-smoke: build both images for real with buildah, from the repo root, with the
# unmodified Dockerfiles; in each, import the entry module as the image's user, start CMD, and
# answer one HTTP request.
#
# No Docker daemon and no registry here: Debian's buildah builds as root with chroot isolation
# (the OCI runtime fails in this sandbox), and the base is a stand-in made with mmdebstrap
# (Debian's python3 + pip + venv), passed as BASE_IMAGE (a local image cannot be named by the
# digest the Dockerfile pins). The stand-in is built once and kept (about 45 s).
#
# Exit codes: 0 built and answered, or skipped with the reason (SMOKE_REQUIRED=1 makes a skip
# fail); 1 a build, import or start failed.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=(coordinator worker)
SUITE="${SMOKE_SUITE:-bookworm}"
# python3 + pip + venv as in the issue; libstdc++6 because grpcio's extension needs it (the real
# python:3.11-slim has it; the essential variant does not).
INCLUDE="python3,python3-pip,python3-venv,ca-certificates,libstdc++6"
# Tagged by what makes it, so a changed recipe makes a new base instead of reusing a stale one.
BASE_TAG=$(printf '%s' "$SUITE $INCLUDE v1" | sha256sum | cut -c1-12)
BASE_IMAGE="${SMOKE_BASE_IMAGE:-localhost/prediction-smoke-base:$BASE_TAG}"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
export BUILDAH_ISOLATION=chroot

skip() {
  echo "image-smoke: SKIPPED: $*" >&2
  if [[ "${SMOKE_REQUIRED:-0}" == 1 ]]; then exit 1; fi
  exit 0
}
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }

[[ $(id -u) == 0 ]] || skip "buildah with chroot isolation needs root here"
if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then
  # Debian packages; install them where apt can (CI on a fresh machine), else skip.
  command -v apt-get >/dev/null || skip "buildah/mmdebstrap missing and no apt-get to install them"
  echo "image-smoke: installing buildah and mmdebstrap with apt-get"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah mmdebstrap; } \
    >/tmp/image-smoke-apt.log 2>&1 \
    || skip "apt-get install buildah mmdebstrap failed (log: /tmp/image-smoke-apt.log)"
fi

mirror() {
  # The Debian mirror this machine's apt uses (deb822 or one-line sources).
  local uri
  uri=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1 || true)
  [[ -n "$uri" ]] || uri=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    | awk '{print $2}' | grep -v security | head -1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

WORK=$(mktemp -d /tmp/image-smoke.XXXXXX)
SERVER_PID=""
CTR=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ -n "$CTR" ]]; then buildah rm "$CTR" >/dev/null 2>&1 || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

if ! buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
  command -v mmdebstrap >/dev/null || skip "mmdebstrap is not installed (apt-get install mmdebstrap)"
  t0=$(now)
  echo "image-smoke: making the stand-in base $BASE_IMAGE with mmdebstrap ($SUITE, $(mirror))"
  # Debian's python refuses pip installs into the system (EXTERNALLY-MANAGED, PEP 668) and has
  # no `python`; python:3.11-slim has neither problem, so the stand-in mimics it.
  mmdebstrap --quiet --variant=essential --mode=root \
    --include="$INCLUDE" \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    --customize-hook='ln -sf python3 "$1"/usr/bin/python' \
    --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
    "$SUITE" "$WORK/base.tar" "$(mirror)"
  CTR=$(buildah from scratch)
  buildah add --quiet "$CTR" "$WORK/base.tar" / >/dev/null
  buildah config --env PATH=/usr/local/bin:/usr/bin:/bin "$CTR"
  buildah commit --quiet "$CTR" "$BASE_IMAGE" >/dev/null
  buildah rm "$CTR" >/dev/null
  CTR=""
  rm -f "$WORK/base.tar"
  echo "image-smoke: base ready in $(since "$t0") s"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

for svc in "${SERVICES[@]}"; do
  image="localhost/prediction-${svc}:smoke"
  t0=$(now)
  # The repo root is the context and images/<service>.Dockerfile the Dockerfile, as in the cloud.
  # The CA bundle: the package proxy here re-signs TLS, so pip inside RUN must trust the host's.
  buildah build --quiet --isolation chroot --pull=never --layers --force-rm \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" \
    -v "$CA_BUNDLE:$CA_BUNDLE:ro" \
    -t "$image" -f "images/${svc}.Dockerfile" . >/dev/null
  build_s=$(since "$t0")

  mapfile -t cmd < <(buildah inspect --type image --format '{{range .OCIv1.Config.Cmd}}{{println .}}{{end}}' "$image" | sed '/^$/d')
  user=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$image")
  [[ -n "$user" && "$user" != root && "$user" != 0* ]] || { echo "image-smoke: $svc runs as root" >&2; exit 1; }
  module=$(python3 -c 'import re,sys; m=re.search(r"([A-Za-z_][\w.]*):[A-Za-z_]\w*", sys.argv[1]); print(m.group(1))' "${cmd[*]}")

  CTR=$(buildah from --pull=never "$image")
  # Import the entry module the way CMD would, as the image's (non-root) user, from WORKDIR.
  buildah run "$CTR" -- python -c "import $module" \
    || { echo "image-smoke: importing $module failed in $image" >&2; exit 1; }

  port=$(free_port)
  # The services need their env contract; emulator hosts keep the Google clients offline
  # (nothing is called: only /healthz is requested).
  buildah run \
    --env "PORT=$port" --env GCP_PROJECT_ID=smoke --env REQUEST_TOPIC=smoke-request \
    --env READY_TOPIC=smoke-ready --env COORDINATOR_API_KEY=smoke \
    --env FIRESTORE_EMULATOR_HOST=127.0.0.1:9 --env PUBSUB_EMULATOR_HOST=127.0.0.1:9 \
    "$CTR" -- "${cmd[@]}" >"$WORK/$svc.log" 2>&1 &
  SERVER_PID=$!
  t1=$(now)
  if ! body=$(python3 - "$port" "$SERVER_PID" <<'EOF'
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            print(r.status, r.read().decode())
            sys.exit(0)
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            sys.exit("the server exited")
        time.sleep(0.2)
sys.exit("no answer within 60 s")
EOF
  ); then
    echo "image-smoke: $svc did not answer on port $port; its log:" >&2
    cat "$WORK/$svc.log" >&2
    exit 1
  fi
  answer_s=$(since "$t1")
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
  buildah rm "$CTR" >/dev/null
  CTR=""
  echo "image-smoke: $svc: built in ${build_s} s; user $user; CMD answered /healthz in ${answer_s} s: $body"
done
echo "image-smoke: ok"
