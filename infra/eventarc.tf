# Storage events of the main bucket → replicate. Eventarc delivers them as CloudEvents
# over HTTP, at least once, signed in as the "eventarc" service account: the only account
# that may invoke replicate, which has no authentication of its own.

locals {
  storage_events = {
    finalized = "google.cloud.storage.object.v1.finalized"
    deleted   = "google.cloud.storage.object.v1.deleted"
  }
}

# Cloud Storage publishes the events through Pub/Sub as its own service agent.
data "google_storage_project_service_account" "gcs" {}

resource "google_project_iam_member" "gcs_publishes_events" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"
}

resource "google_cloud_run_v2_service_iam_member" "eventarc_invokes_replicate" {
  name     = google_cloud_run_v2_service.meridian["replicate"].name
  location = var.main_region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.meridian["eventarc"].email}"
}

resource "google_eventarc_trigger" "main_bucket" {
  for_each = local.storage_events

  name            = "meridian-main-${each.key}"
  location        = var.main_region # a Cloud Storage trigger lives where its bucket does
  service_account = google_service_account.meridian["eventarc"].email

  matching_criteria {
    attribute = "type"
    value     = each.value
  }

  matching_criteria {
    attribute = "bucket"
    value     = google_storage_bucket.region[var.main_region].name
  }

  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.meridian["replicate"].name
      region  = var.main_region
      path    = "/"
    }
  }

  depends_on = [
    google_project_iam_member.gcs_publishes_events,
    google_project_iam_member.meridian,
    google_cloud_run_v2_service_iam_member.eventarc_invokes_replicate,
  ]
}
