output "boot_url" {
  description = "boot: GET /v1/edges."
  value       = google_cloud_run_v2_service.meridian["boot"].uri
}

output "sign_url" {
  description = "sign: POST /v1/uploads with a publish token."
  value       = google_cloud_run_v2_service.meridian["sign"].uri
}

output "delete_url" {
  description = "delete: DELETE /v1/objects/{name} with a publish token."
  value       = google_cloud_run_v2_service.meridian["delete"].uri
}

output "main_bucket" {
  description = "The main bucket (publishers upload into it)."
  value       = google_storage_bucket.region[var.main_region].name
}

output "regional_buckets" {
  description = "The other regions' buckets, by region."
  value       = { for name, bucket in google_storage_bucket.region : name => bucket.name if name != var.main_region }
}
