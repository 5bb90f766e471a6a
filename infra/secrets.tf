# Secret Manager: what the services and edges read at start, each readable only by the
# accounts that use it. Terraform writes only the config (nothing secret in it); the
# secret values are added with gcloud (docs/deploy.md), so they never enter Terraform state.

locals {
  secrets = {
    # The deployment config (regions, buckets, backend), as a file: MERIDIAN_CONFIG.
    config = ["boot", "sign", "delete", "replicate", "edge"]
    # HS256 secret of publishers' bearer tokens, which sign and delete check.
    jwt = ["sign", "delete"]
    # The replicator's Ed25519 purge-signing key (PKCS#8, base64). Edges check purges
    # with its public half, which is in the config (var.purge_public_key).
    purge-key = ["replicate"]
    # Certificate chain and private key the edges serve HTTPS with.
    edge-tls-cert = ["edge"]
    edge-tls-key  = ["edge"]
  }

  secret_readers = merge([
    for secret, accounts in local.secrets : {
      for account in accounts : "${secret}/${account}" => { secret = secret, account = account }
    }
  ]...)

  config_toml = templatefile("${path.module}/templates/meridian.toml.tftpl", {
    main_region = var.main_region
    project_id  = var.project_id
    regions     = var.regions
    buckets     = local.buckets
    purge_key   = var.purge_public_key
    # The disk tier's budget, a little under its share of the boot disk (file system
    # overhead).
    edge_disk_bytes = floor(var.edge_disk_cache_gb * 0.9 * 1024 * 1024 * 1024)
    # The topic's short name: the config names topics within [pubsub] project.
    invalidation_topic = google_pubsub_topic.invalidations.name
  })
}

resource "google_secret_manager_secret" "meridian" {
  for_each = local.secrets

  secret_id = "meridian-${each.key}"
  labels    = { meridian-secret = each.key }

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "config" {
  secret      = google_secret_manager_secret.meridian["config"].id
  secret_data = local.config_toml
}

resource "google_secret_manager_secret_iam_member" "meridian" {
  for_each = local.secret_readers

  secret_id = google_secret_manager_secret.meridian[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.meridian[each.value.account].email}"
}
