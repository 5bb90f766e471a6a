# Terraform and provider versions. State is local unless you add a backend (a "gcs"
# backend in a bucket of its own is the usual choice for a team; see docs/deploy.md).
terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.20"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.main_region
}
