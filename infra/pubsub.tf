# Invalidations. replicate publishes one message per change on this topic (a
# PurgeRequest: the object and the oldest generation edges may keep). Every edge VM reads
# the topic through a subscription of its own, named after its instance: it creates it
# at start, before serving; deletes it on a clean stop (SIGTERM); a VM that vanished
# leaves one that Pub/Sub deletes after a day without a reader ([invalidation] in
# templates/meridian.toml.tftpl). Edges acknowledge a message only after purging.
#
# Only replicate may publish: IAM is what the purge token is over HTTP.

resource "google_pubsub_topic" "invalidations" {
  #checkov:skip=CKV_GCP_83:Messages are object names and generations, which every client of the CDN can see anyway; Google-managed encryption at rest applies. A customer-managed key would add a KMS key to run for no secrecy gained.
  name = "meridian-invalidations"
  # A message outlives no edge copy that matters: copies live an hour by default.
  message_retention_duration = "86400s"
}

resource "google_pubsub_topic_iam_member" "replicate_publishes_invalidations" {
  topic  = google_pubsub_topic.invalidations.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${google_service_account.meridian["replicate"].email}"
}

# Attaching a new subscription to the topic (pubsub.topics.attachSubscription).
resource "google_pubsub_topic_iam_member" "edges_subscribe_to_invalidations" {
  topic  = google_pubsub_topic.invalidations.id
  role   = "roles/pubsub.subscriber"
  member = "serviceAccount:${google_service_account.meridian["edge"].email}"
}

# Creating, reading and deleting subscriptions is checked on the project; this role
# holds exactly what an edge does with its own (granted in iam.tf).
resource "google_project_iam_custom_role" "edge_subscriptions" {
  role_id     = "meridianEdgeSubscriptions"
  title       = "Meridian edge invalidation subscriptions"
  description = "Create, read, consume and delete the subscription an edge VM reads invalidations from."
  permissions = [
    "pubsub.subscriptions.create",
    "pubsub.subscriptions.consume",
    "pubsub.subscriptions.delete",
    "pubsub.subscriptions.get",
  ]
}
