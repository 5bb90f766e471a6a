#!/usr/bin/env bash
# Rolls a new edge image out to every region's managed instance group (the groups named
# meridian-edge-*; Terraform creates them, infra/edges.tf). For each group it sets the
# image in the group's all-instances config, which the VMs' startup reads, then starts a
# proactive rolling update that replaces every VM: new VMs first (surge 3), none removed
# before its replacement passes the /healthz health check.
#
# The canary region goes first, alone, and must become stable before the others start
# (together); a release whose VMs never become healthy stops there, with the old VMs
# still serving, and fails the step.
#
# Run by cloudbuild.yaml. By hand:
#   PROJECT_ID=my-project CANARY_REGION=europe-southwest1 \
#   IMAGE=europe-southwest1-docker.pkg.dev/my-project/meridian/edge:0123abc \
#   infra/scripts/roll-edges.sh
# DEPLOY=false (Cloud Build's _DEPLOY) makes it a no-op. ROLL_TIMEOUT_SECONDS (default
# 1200) bounds each wait.
set -euo pipefail

: "${PROJECT_ID:?set PROJECT_ID}" "${IMAGE:?set IMAGE (the edge image to roll out)}"
: "${CANARY_REGION:?set CANARY_REGION}"
timeout=${ROLL_TIMEOUT_SECONDS:-1200}

if [ "${DEPLOY:-true}" != "true" ]; then
  echo "roll-edges: DEPLOY=${DEPLOY}, not rolling"
  exit 0
fi

mig() {
  gcloud compute instance-groups managed "$@" --project="$PROJECT_ID"
}

# start REGION: points the region's group at $IMAGE and starts replacing its VMs.
start() {
  local region=$1 group="meridian-edge-$1" template
  template=$(mig describe "$group" --region="$region" --format='value(versions[0].instanceTemplate)')
  echo "roll-edges: $group <- $IMAGE"
  mig all-instances-config update "$group" --region="$region" \
    --metadata="meridian-edge-image=$IMAGE"
  mig rolling-action start-update "$group" --region="$region" \
    --version="template=$template" \
    --type=proactive \
    --minimal-action=replace \
    --most-disruptive-allowed-action=replace \
    --replacement-method=substitute \
    --max-surge=3 \
    --max-unavailable=0
}

# wait_stable REGION: until every VM of the group runs the new config and is healthy.
wait_stable() {
  mig wait-until "meridian-edge-$1" --region="$1" --stable --timeout="$timeout"
}

listing=$(mig list --filter='name ~ ^meridian-edge-' --format='value(region.basename())' | sort)
regions=()
while IFS= read -r region; do
  if [ -n "$region" ]; then regions+=("$region"); fi
done <<<"$listing"
if [ "${#regions[@]}" -eq 0 ]; then
  echo "roll-edges: no meridian-edge-* instance groups in $PROJECT_ID (run terraform apply first)" >&2
  exit 1
fi
if ! printf '%s\n' "${regions[@]}" | grep -qx "$CANARY_REGION"; then
  echo "roll-edges: no edge group in the canary region $CANARY_REGION" >&2
  exit 1
fi

start "$CANARY_REGION"
wait_stable "$CANARY_REGION"
echo "roll-edges: canary $CANARY_REGION is stable; rolling the other regions"

rest=()
for region in "${regions[@]}"; do
  [ "$region" = "$CANARY_REGION" ] || rest+=("$region")
done
for region in "${rest[@]}"; do
  start "$region"
done
failed=()
for region in "${rest[@]}"; do
  wait_stable "$region" || failed+=("$region")
done
if [ "${#failed[@]}" -ne 0 ]; then
  echo "roll-edges: not stable within ${timeout}s: ${failed[*]}" >&2
  exit 1
fi
echo "roll-edges: all ${#regions[@]} regions run $IMAGE"
