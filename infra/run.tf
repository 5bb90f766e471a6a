# The four Cloud Run services, all in the main region. Each runs as its own service
# account and reads the deployment config from the "config" secret, mounted as a file.
# boot, sign and delete are public (sign and delete check a bearer JWT themselves);
# replicate checks nothing itself, so only Eventarc's account may invoke it (eventarc.tf)
# and it takes no traffic from outside Google Cloud at all.
#
# Cloud Build deploys each release with `gcloud run deploy` (infra/scripts/deploy-services.sh)
# using the same account, ingress and invoker settings; with var.image_tag set to that
# release, applying this changes nothing.

locals {
  images = {
    for name in ["boot", "sign", "delete", "replicate", "edge"] :
    name => "${var.main_region}-docker.pkg.dev/${var.project_id}/${var.artifact_repository}/${name}:${var.image_tag}"
  }

  services = {
    boot = {
      public  = true
      env     = {}
      secrets = {}
    }
    sign = {
      public = true
      # Signs upload URLs with IAM signBlob as its own account (no key); it must not be
      # given MERIDIAN_HMAC_* or a key file, which would take precedence.
      env     = { MERIDIAN_SIGNING_SERVICE_ACCOUNT = google_service_account.meridian["sign"].email }
      secrets = { MERIDIAN_JWT_SECRET = "jwt" }
    }
    delete = {
      public  = true
      env     = {}
      secrets = { MERIDIAN_JWT_SECRET = "jwt" }
    }
    replicate = {
      public  = false
      env     = {}
      secrets = { MERIDIAN_PURGE_PRIVATE_KEY = "purge-key" }
    }
  }
}

resource "google_cloud_run_v2_service" "meridian" {
  for_each = local.services

  name                = "meridian-${each.key}"
  location            = var.main_region
  ingress             = each.value.public ? "INGRESS_TRAFFIC_ALL" : "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = false # stateless: everything here can be re-created from this file

  template {
    service_account = google_service_account.meridian[each.key].email

    containers {
      image = local.images[each.key]

      ports {
        container_port = 8080
      }

      env {
        name  = "MERIDIAN_CONFIG"
        value = "/etc/meridian/config.toml"
      }

      dynamic "env" {
        for_each = each.value.env
        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = each.value.secrets
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.meridian[env.value].secret_id
              version = "latest"
            }
          }
        }
      }

      volume_mounts {
        name       = "config"
        mount_path = "/etc/meridian"
      }
    }

    volumes {
      name = "config"
      secret {
        secret = google_secret_manager_secret.meridian["config"].secret_id
        items {
          # Pinned, so that a new config makes a new revision.
          version = google_secret_manager_secret_version.config.version
          path    = "config.toml"
        }
      }
    }
  }

  lifecycle {
    # gcloud records itself as the client of the revisions it deploys.
    ignore_changes = [client, client_version]
  }

  depends_on = [google_secret_manager_secret_iam_member.meridian]
}

# boot is the CDN's public entry point; sign and delete let anyone call them and then
# refuse every request without a valid bearer JWT of scope "publish".
resource "google_cloud_run_v2_service_iam_member" "public" {
  for_each = { for name, service in local.services : name => service if service.public }

  name     = google_cloud_run_v2_service.meridian[each.key].name
  location = var.main_region
  role     = "roles/run.invoker"
  member   = "allUsers"
}
