# Inputs. project_id, image_tag and purge_public_key have no default; the rest describe
# the design's deployment (10 regions, e2-micro edges autoscaled at 80% CPU).

variable "project_id" {
  description = "Google Cloud project that holds the whole deployment."
  type        = string
}

variable "main_region" {
  description = "Region of the main bucket, the Cloud Run services, the Eventarc triggers and the Artifact Registry repository. Must be one of var.regions."
  type        = string
  default     = "europe-southwest1"
}

variable "regions" {
  description = "The regions: each gets a bucket (the main region's is the main bucket) and a managed instance group of edges. Keys are Google Cloud region names; lat/lon place them for boot's nearest-region ordering."
  type = map(object({
    city = string
    lat  = number
    lon  = number
  }))
  default = {
    "europe-southwest1"    = { city = "Madrid", lat = 40.4165, lon = -3.7026 }
    "europe-west2"         = { city = "London", lat = 51.5085, lon = -0.1257 }
    "europe-west3"         = { city = "Frankfurt", lat = 50.1155, lon = 8.6842 }
    "us-central1"          = { city = "Iowa", lat = 41.2619, lon = -95.8608 }
    "us-east1"             = { city = "South Carolina", lat = 32.9336, lon = -80.1026 }
    "us-west1"             = { city = "Oregon", lat = 45.5946, lon = -121.1787 }
    "southamerica-east1"   = { city = "São Paulo", lat = -23.5475, lon = -46.6361 }
    "australia-southeast1" = { city = "Sydney", lat = -33.8678, lon = 151.2073 }
    "asia-south1"          = { city = "Mumbai", lat = 19.0728, lon = 72.8826 }
    "asia-northeast1"      = { city = "Tokyo", lat = 35.6940, lon = 139.7536 }
  }

  validation {
    condition = alltrue([
      for r in values(var.regions) : r.lat >= -90 && r.lat <= 90 && r.lon >= -180 && r.lon <= 180
    ])
    error_message = "Every region's lat must be in -90..90 and lon in -180..180."
  }
}

variable "bucket_prefix" {
  description = "Buckets are named <prefix>-<region>. Bucket names are global across all of Cloud Storage, so another project may already own the default names."
  type        = string
  default     = "meridian"
}

variable "artifact_repository" {
  description = "Artifact Registry Docker repository (in main_region) that Cloud Build pushes the images to; created with gcloud, see docs/deploy.md."
  type        = string
  default     = "meridian"
}

variable "image_tag" {
  description = "Tag of the five images to run (Cloud Build tags them with the commit's short SHA). Apply with the tag Cloud Build last deployed, or Terraform puts the previous release back."
  type        = string
}

variable "purge_public_key" {
  description = "Public half of the replicator's Ed25519 purge-signing key (32 bytes, base64), with which edges check purges. The private half goes into the meridian-purge-key secret (docs/deploy.md)."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9+/]{43}=$", var.purge_public_key))
    error_message = "purge_public_key must be 32 bytes in standard base64 (44 characters ending in =)."
  }
}

variable "network" {
  description = "VPC network of the edge VMs. An auto-mode network (like \"default\") has a subnet in every region."
  type        = string
  default     = "default"
}

variable "edge_source_ranges" {
  description = "Who may reach the edges on 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "edge_machine_type" {
  description = "Machine type of the edge VMs."
  type        = string
  default     = "e2-micro"
}

variable "edge_boot_image" {
  description = "Boot image of the edge VMs: Container-Optimized OS, which ships Docker and the Artifact Registry credential helper."
  type        = string
  default     = "cos-cloud/cos-stable"
}

variable "edge_disk_cache_gb" {
  description = "Size of each edge VM's disk tier (GiB): its cache survives restarts and reboots there. The boot disk grows by as much."
  type        = number
  default     = 8

  validation {
    condition     = var.edge_disk_cache_gb >= 1
    error_message = "edge_disk_cache_gb must be at least 1."
  }
}

variable "edge_min_replicas" {
  description = "Fewest edge VMs per region."
  type        = number
  default     = 1
}

variable "edge_max_replicas" {
  description = "Most edge VMs per region."
  type        = number
  default     = 10
}

variable "edge_cpu_target" {
  description = "Average CPU utilisation (0..1) above which a region's group adds edges."
  type        = number
  default     = 0.8
}
