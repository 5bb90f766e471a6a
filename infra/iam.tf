# Service accounts, one per workload, and the roles each holds (bucket, secret and Cloud
# Run invoker grants sit beside what they grant access to: storage.tf's buckets are
# granted here, secrets in secrets.tf, invokers in run.tf and eventarc.tf).

locals {
  service_accounts = {
    boot      = "Meridian boot: answers which edges are nearest"
    sign      = "Meridian sign: signs upload URLs into the main bucket"
    delete    = "Meridian delete: deletes objects from the main bucket"
    replicate = "Meridian replicate: copies main-bucket changes to the regions"
    edge      = "Meridian edge VMs: serve their region's bucket"
    eventarc  = "Meridian Eventarc triggers: deliver main-bucket events to replicate"
    deployer  = "Meridian Cloud Build: tests, builds and rolls out releases"
  }

  # Project-wide roles, "account/role".
  project_roles = {
    # boot lists the RUNNING edge VMs (label meridian-role=edge) from the Compute Engine
    # API ([boot.discovery] in templates/meridian.toml.tftpl).
    "boot/roles/compute.viewer" = { account = "boot", role = "roles/compute.viewer" }
    # Edge VMs send their container logs to Cloud Logging.
    "edge/roles/logging.logWriter" = { account = "edge", role = "roles/logging.logWriter" }
    # Edge VMs manage their own invalidation subscription (pubsub.tf).
    "edge/meridianEdgeSubscriptions" = { account = "edge", role = google_project_iam_custom_role.edge_subscriptions.id }
    # Eventarc requires the trigger's identity to hold this to receive direct events.
    "eventarc/roles/eventarc.eventReceiver" = { account = "eventarc", role = "roles/eventarc.eventReceiver" }
    # Deploys Cloud Run revisions and sets who may invoke them (--[no-]allow-unauthenticated
    # changes the service's IAM policy, which run.developer may not).
    "deployer/roles/run.admin" = { account = "deployer", role = "roles/run.admin" }
    # Updates the edge groups' all-instances config and starts their rolling updates.
    "deployer/roles/compute.instanceAdmin.v1" = { account = "deployer", role = "roles/compute.instanceAdmin.v1" }
    # Build logs (the build runs with logging CLOUD_LOGGING_ONLY).
    "deployer/roles/logging.logWriter" = { account = "deployer", role = "roles/logging.logWriter" }
  }

  # Bucket roles, "account/bucket-region".
  bucket_roles = merge(
    {
      # Uploads through signed URLs act with sign's identity. Overwriting an existing
      # name needs storage.objects.delete besides create, hence the custom role rather
      # than roles/storage.objectCreator (which cannot replace objects).
      "sign/${var.main_region}"      = { account = "sign", region = var.main_region, role = google_project_iam_custom_role.object_writer.id }
      "delete/${var.main_region}"    = { account = "delete", region = var.main_region, role = "roles/storage.objectAdmin" }
      "replicate/${var.main_region}" = { account = "replicate", region = var.main_region, role = "roles/storage.objectViewer" }
    },
    { for name in keys(var.regions) : "replicate/${name}" => { account = "replicate", region = name, role = "roles/storage.objectAdmin" } if name != var.main_region },
    # Every edge reads its own region's bucket; one account serves all regions, so it may
    # read them all (their content is public through the edges anyway).
    { for name in keys(var.regions) : "edge/${name}" => { account = "edge", region = name, role = "roles/storage.objectViewer" } },
  )

  # Grants on service accounts themselves, "member-account/role/target-account".
  account_roles = merge(
    # Cloud Build deploys the services and edge groups as these accounts.
    { for target in ["boot", "sign", "delete", "replicate", "edge"] :
      "deployer/roles/iam.serviceAccountUser/${target}" => { member = "deployer", role = "roles/iam.serviceAccountUser", target = target }
    },
    # sign signs upload URLs with IAM signBlob as itself (MERIDIAN_SIGNING_SERVICE_ACCOUNT,
    # run.tf), so it holds no key.
    { "sign/roles/iam.serviceAccountTokenCreator/sign" = { member = "sign", role = "roles/iam.serviceAccountTokenCreator", target = "sign" } },
  )
}

resource "google_service_account" "meridian" {
  for_each = local.service_accounts

  account_id   = "meridian-${each.key}"
  display_name = each.value
}

resource "google_project_iam_member" "meridian" {
  for_each = local.project_roles

  project = var.project_id
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.meridian[each.value.account].email}"
}

resource "google_project_iam_custom_role" "object_writer" {
  role_id     = "meridianObjectWriter"
  title       = "Meridian object writer"
  description = "Create objects and replace existing ones (uploads through sign's signed URLs)."
  permissions = ["storage.objects.create", "storage.objects.delete"]
}

resource "google_storage_bucket_iam_member" "meridian" {
  for_each = local.bucket_roles

  bucket = google_storage_bucket.region[each.value.region].name
  role   = each.value.role
  member = "serviceAccount:${google_service_account.meridian[each.value.account].email}"
}

resource "google_service_account_iam_member" "meridian" {
  for_each = local.account_roles

  service_account_id = google_service_account.meridian[each.value.target].name
  role               = each.value.role
  member             = "serviceAccount:${google_service_account.meridian[each.value.member].email}"
}

# The Artifact Registry repository is created with gcloud before the first build
# (docs/deploy.md): Cloud Build pushes to it, edge VMs pull from it. Cloud Run pulls with
# its own service agent, which may read its project's repositories already.
resource "google_artifact_registry_repository_iam_member" "meridian" {
  for_each = {
    deployer = "roles/artifactregistry.writer"
    edge     = "roles/artifactregistry.reader"
  }

  project    = var.project_id
  location   = var.main_region
  repository = var.artifact_repository
  role       = each.value
  member     = "serviceAccount:${google_service_account.meridian[each.key].email}"
}
