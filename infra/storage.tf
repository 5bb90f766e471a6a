# Buckets: the main bucket (publishers upload into it; its events drive replication) and
# one bucket per other region, which only the replicator writes and that region's edges
# read. None is public: edges read with their service account and serve the content.

locals {
  buckets = { for name in keys(var.regions) : name => "${var.bucket_prefix}-${name}" }
}

resource "google_storage_bucket" "region" {
  #checkov:skip=CKV_GCP_62:Usage logs need a log bucket of their own. Object reads and writes can be audited with Cloud Storage Data Access audit logs, turned on for the project when needed (every edge cache miss is a read, so they are not free).
  #checkov:skip=CKV_GCP_78:No Object Versioning: on a versioned bucket an overwrite or delete emits "archived" instead of "deleted", which the replicator does not receive, so deletions would never reach the regions. Soft delete (on by default, 7 days) keeps deleted objects recoverable, and regional buckets are copies that replication rebuilds.
  for_each = local.buckets

  name                        = each.value
  location                    = upper(each.key)
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  labels = {
    meridian-role   = each.key == var.main_region ? "main" : "replica"
    meridian-region = each.key
  }
}
