#!/usr/bin/env bash
# Deploys one release of the four Cloud Run services, with the service account, ingress
# and invoker settings that infra/run.tf gives them (Terraform creates the services and
# their config; this only moves them to a new image). Each `gcloud run deploy` waits
# until the new revision is serving; a revision that does not start leaves the previous
# one serving and fails the step.
#
# Run by cloudbuild.yaml. By hand:
#   PROJECT_ID=my-project REGION=europe-southwest1 \
#   IMAGE_PREFIX=europe-southwest1-docker.pkg.dev/my-project/meridian TAG=0123abc \
#   infra/scripts/deploy-services.sh
# DEPLOY=false (Cloud Build's _DEPLOY) makes it a no-op, for builds that only push.
set -euo pipefail

: "${PROJECT_ID:?set PROJECT_ID}" "${REGION:?set REGION}"
: "${IMAGE_PREFIX:?set IMAGE_PREFIX}" "${TAG:?set TAG (the image tag to deploy)}"

if [ "${DEPLOY:-true}" != "true" ]; then
  echo "deploy-services: DEPLOY=${DEPLOY}, not deploying"
  exit 0
fi

# deploy NAME INGRESS INVOKER-FLAG
deploy() {
  local name=$1 ingress=$2 invoker=$3
  echo "deploy-services: meridian-$name <- $IMAGE_PREFIX/$name:$TAG"
  gcloud run deploy "meridian-$name" \
    --project="$PROJECT_ID" \
    --region="$REGION" \
    --image="$IMAGE_PREFIX/$name:$TAG" \
    --service-account="meridian-$name@$PROJECT_ID.iam.gserviceaccount.com" \
    --ingress="$ingress" \
    "$invoker" \
    --quiet
}

# replicate first: it must understand whatever the others start doing.
# It has no authentication of its own: only Eventarc's account may invoke it
# (infra/eventarc.tf), and only from inside Google Cloud.
deploy replicate internal --no-allow-unauthenticated
# boot is public; sign and delete check a bearer JWT on every request themselves.
deploy boot all --allow-unauthenticated
deploy sign all --allow-unauthenticated
deploy delete all --allow-unauthenticated
echo "deploy-services: all four services serve $TAG"
