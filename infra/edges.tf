# Edge servers: per region, a regional managed instance group of e2-micro VMs that
# autoscales on CPU and replaces VMs that stop answering /healthz.
#
# The VMs run Container-Optimized OS and start the edge image from a cloud-init unit
# (templates/edge-cloud-init.yaml.tftpl) rather than a "container declaration": that
# startup agent is deprecated, and the unit lets the non-root container serve host
# port 443 (docker publishes it to 8443) and fetch its secrets into memory first. COS
# ships Docker and the Artifact Registry credential helper, has a read-only root and
# updates itself.
#
# One template serves every region; what differs per region (and per release) is in each
# group's all-instances config: the region, the image, the config version, the labels boot
# will discover edges by. Cloud Build rolls a release by changing the image there
# (infra/scripts/roll-edges.sh); the proactive update policy then replaces the VMs, a
# surge of new ones first, none taken away before its replacement is up.

locals {
  edge_tag = "meridian-edge"
  # Where Google's health checks come from.
  health_check_ranges = ["35.191.0.0/16", "130.211.0.0/22"]
}

resource "google_compute_instance_template" "edge" {
  #checkov:skip=CKV_GCP_40:Edges are the CDN's front door: clients connect to them directly (boot hands out their addresses), with no load balancer in front.
  name_prefix  = "meridian-edge-"
  description  = "Meridian edge server (Container-Optimized OS + the edge image)"
  machine_type = var.edge_machine_type
  tags         = [local.edge_tag]

  labels = {
    meridian-role = "edge"
  }

  disk {
    source_image = var.edge_boot_image
    boot         = true
    auto_delete  = true
    disk_type    = "pd-balanced"
    # The system's 10 GB, plus the edge's disk tier (under /var, which COS keeps across
    # reboots; a VM replaced by an update or autohealing starts with an empty one).
    disk_size_gb = 10 + var.edge_disk_cache_gb
  }

  network_interface {
    network = var.network
    access_config {} # an external address: clients reach edges directly
  }

  service_account {
    email  = google_service_account.meridian["edge"].email
    scopes = ["cloud-platform"] # what it may do is decided by its IAM roles
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  metadata = {
    user-data = templatefile("${path.module}/templates/edge-cloud-init.yaml.tftpl", {
      config_secret   = google_secret_manager_secret.meridian["config"].secret_id
      tls_cert_secret = google_secret_manager_secret.meridian["edge-tls-cert"].secret_id
      tls_key_secret  = google_secret_manager_secret.meridian["edge-tls-key"].secret_id
    })
    google-logging-enabled = "true"
    block-project-ssh-keys = "true"
    enable-oslogin         = "true"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_health_check" "edge" {
  name                = "meridian-edge"
  check_interval_sec  = 10
  timeout_sec         = 5
  healthy_threshold   = 2
  unhealthy_threshold = 3

  https_health_check {
    port         = 443
    request_path = "/healthz"
  }
}

resource "google_compute_region_instance_group_manager" "edge" {
  for_each = var.regions

  name               = "meridian-edge-${each.key}"
  region             = each.key
  base_instance_name = "meridian-edge"

  version {
    instance_template = google_compute_instance_template.edge.id
  }

  all_instances_config {
    metadata = {
      meridian-region         = each.key
      meridian-edge-image     = local.images["edge"]
      meridian-config-version = google_secret_manager_secret_version.config.version
    }
    labels = {
      meridian-region = each.key
    }
  }

  named_port {
    name = "https"
    port = 443
  }

  auto_healing_policies {
    health_check      = google_compute_health_check.edge.id
    initial_delay_sec = 300 # boot, image pull and start on an e2-micro
  }

  update_policy {
    type                           = "PROACTIVE"
    minimal_action                 = "REPLACE"
    most_disruptive_allowed_action = "REPLACE"
    replacement_method             = "SUBSTITUTE"
    max_surge_fixed                = 3 # a regional group's surge is 0 or at least its zone count
    max_unavailable_fixed          = 0
  }

  # The autoscaler sets the size.
  wait_for_instances = false

  depends_on = [
    google_secret_manager_secret_iam_member.meridian,
    google_artifact_registry_repository_iam_member.meridian,
    google_storage_bucket_iam_member.meridian,
  ]
}

resource "google_compute_region_autoscaler" "edge" {
  for_each = var.regions

  name   = "meridian-edge-${each.key}"
  region = each.key
  target = google_compute_region_instance_group_manager.edge[each.key].id

  autoscaling_policy {
    min_replicas    = var.edge_min_replicas
    max_replicas    = var.edge_max_replicas
    cooldown_period = 180 # a new VM needs about this long before its CPU means anything

    cpu_utilization {
      target = var.edge_cpu_target
    }
  }
}

resource "google_compute_firewall" "edge_https" {
  name          = "meridian-edge-https"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = var.edge_source_ranges
  target_tags   = [local.edge_tag]

  allow {
    protocol = "tcp"
    ports    = ["443"]
  }
}

# Health checks probe 443 too; a rule of their own keeps autohealing working when
# var.edge_source_ranges is narrowed.
resource "google_compute_firewall" "edge_health_checks" {
  name          = "meridian-edge-health-checks"
  network       = var.network
  direction     = "INGRESS"
  source_ranges = local.health_check_ranges
  target_tags   = [local.edge_tag]

  allow {
    protocol = "tcp"
    ports    = ["443"]
  }
}
